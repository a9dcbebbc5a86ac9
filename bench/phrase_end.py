"""Keys and pedal left down: from the last note-on to the first answer note, through cadenza-play on JACK.

    python bench/phrase_end.py [--tempo 120] [--phrase-gap 2] [--pedal-hold-bars 4] [--model FILE]

The three cases of support/phrase_end.py, as tests/test_phrase_end_process.py plays them (held keys,
a stuck pedal, a reversed pedal, then a second phrase once it is recognised), with the instrument's
defaults and the bundled model; and
`cadenza-play --render` of each case's phrase: its bound in simulated time and how long it took.
Writes bench/out/phrase_end.json and prints it as one line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from bench import jackrig  # noqa: E402
from cadenza.player.bundle import default_model_path  # noqa: E402
from cadenza.player.events import MAX_NOTE_TICKS, TICKS_PER_BEAT  # noqa: E402
from support.phrase_end import CASES, call_response, expected_beats, phrase_file  # noqa: E402

RENDER_BEATS = 16


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tempo", type=float, default=120.0)
    ap.add_argument("--phrase-gap", type=float, default=2.0, help="beats (the config's default)")
    ap.add_argument("--pedal-hold-bars", type=int, default=4, help="the config's default")
    ap.add_argument("--model", default=str(default_model_path()))
    args = ap.parse_args(argv)
    beat = 60.0 / args.tempo
    result: dict = {
        "tempo": args.tempo,
        "phrase_gap_beats": args.phrase_gap,
        "pedal_hold_bars": args.pedal_hold_bars,
        "model": args.model,
        "call_response": {},
        "render": {},
    }
    folder = Path(tempfile.mkdtemp(prefix="cadenza-phrase-end-"))
    with jackrig.jack(realtime=False):
        for i, case in enumerate(CASES):
            delays, err, code = call_response(
                args.model,
                folder / case,
                case,
                tempo=args.tempo,
                phrase_gap=args.phrase_gap,
                hold_bars=args.pedal_hold_bars,
                answer_bars=1,
                client=f"bpe{i}",
            )
            want = [b * beat for b in expected_beats(case, args.phrase_gap, args.pedal_hold_bars)]
            result["call_response"][case] = {
                "last_note_on_to_answer_s": [round(d, 3) for d in delays],
                "expected_s": [round(w, 3) for w in want],
                "exit_code": code,
                "reversed_logged": err.count("treating it as reversed"),
            }
    # --render: the bound is the phrase's last event + max(MAX_NOTE_TICKS, pedal hold) + gap + answer + a bar
    hold = max(MAX_NOTE_TICKS, args.pedal_hold_bars * 4 * TICKS_PER_BEAT) / TICKS_PER_BEAT
    bound_beats = hold + args.phrase_gap + RENDER_BEATS + 4
    result["render_bound_beats_after_last_event"] = bound_beats
    result["render_bound_s_after_last_event"] = round(bound_beats * beat, 3)
    for case in CASES:
        seed = phrase_file(folder / f"{case}.mid", case)
        t0 = time.perf_counter()
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "cadenza.player",
                "--render",
                str(folder / f"{case}-out.mid"),
                "--model",
                args.model,
                "--seed-file",
                str(seed),
                "--beats",
                str(RENDER_BEATS),
                "--tempo",
                str(args.tempo),
                "--seed",
                "1",
                "--phrase-gap",
                str(args.phrase_gap),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=jackrig.REPO,
        )
        result["render"][case] = {"exit_code": r.returncode, "wall_s": round(time.perf_counter() - t0, 2)}
    jackrig.OUT.mkdir(parents=True, exist_ok=True)
    (jackrig.OUT / "phrase_end.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
