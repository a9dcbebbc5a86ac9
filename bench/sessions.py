"""Record sessions as a musician would: phrases played into cadenza-play on JACK with recording on.

    python bench/sessions.py [--sessions 16] [--phrases 4] [--tempo 160] [--model models/folk.cadenza]
                             [--out bench/out/sessions]

Each session is one run of `cadenza-play` in call-response with `[record] enabled = true`: a keyboard client
(libjack, in this process) plays --phrases phrases in real time, waiting after each for the answer; a synth
stand-in takes the answers; SIGTERM ends the session and the player writes its recording. The recordings
(bench/out/sessions/session-*.mid) are then a corpus for `cadenza-train --corpus DIR --from RUN`.

The musician (seeded): a player of blues-pentatonic riffs in swung eighths (long-short, 2:1), in four keys
(A, D, E and G), two bars a phrase. A riff is a motif of three or four notes of the minor pentatonic with the
blue fifth, stated, then varied (a step up or down the scale), ending on the key's root, low, on beat 1 of
the second bar, held. Velocities accent the beat. This is neither Bach nor the folk corpora, and no music21
corpus is read. Prints one JSON line (sessions, phrases, notes played, seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from bench import jackrig  # noqa: E402
from support.daemon import Player, write_config  # noqa: E402
from support.jack import JackReceiver, JackSender  # noqa: E402

KEYS = {"A": 57, "D": 62, "E": 64, "G": 55}
SCALE = [0, 3, 5, 6, 7, 10, 12, 15]  # minor pentatonic with the blue fifth, and the octave


def riff(rng: random.Random) -> list[tuple[float, float, int, int]]:
    """(start beat, length in beats, pitch, velocity) of one two-bar phrase."""
    root = KEYS[rng.choice(list(KEYS))]
    motif = [rng.randrange(len(SCALE) - 2) for _ in range(rng.choice((3, 4)))]
    shift = rng.choice((-1, 1))
    degrees = motif + [min(max(d + shift, 0), len(SCALE) - 1) for d in motif]
    out, beat = [], 0.0
    for k, d in enumerate(degrees):
        long = k % 2 == 0  # swung eighths: 2/3 of a beat, then 1/3
        length = 2 / 3 if long else 1 / 3
        out.append((beat, length * 0.9, root + 12 + SCALE[d], 96 if long else 70))
        beat += length
    out.append((4.0, 2.0, root, 100))  # the root, low, on the second bar's downbeat
    return out


def play_phrase(keys: JackSender, notes, beat_s: float) -> None:
    t0 = time.monotonic()
    timeline = sorted(
        [(s * beat_s, mido.Message("note_on", note=p, velocity=v)) for s, _, p, v in notes]
        + [((s + length) * beat_s, mido.Message("note_off", note=p)) for s, length, p, _ in notes],
        key=lambda e: e[0],
    )
    for t, msg in timeline:
        wait = t0 + t - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        keys.send(msg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--phrases", type=int, default=4)
    ap.add_argument("--tempo", type=float, default=160.0)
    ap.add_argument("--model", default="models/folk.cadenza")
    ap.add_argument("--out", type=Path, default=jackrig.OUT / "sessions")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    work = args.out.parent / "sessions-work"
    beat_s = 60.0 / args.tempo
    played = 0
    t_start = time.monotonic()
    with jackrig.jack(64):
        for k in range(args.sessions):
            cfg = write_config(
                work,
                Path(args.model).resolve(),
                client=f"cs{k}",
                mode="call-response",
                input="virtual",
                tempo=args.tempo,
                seed=k,
                output=f"synth-s{k}",
                extra=f'[record]\nenabled = true\ndirectory = "{args.out.resolve()}"\n',
                name=f"s{k}.toml",
            )
            text = cfg.read_text().replace("[play]\n", "[play]\nphrase_gap = 1.0\nanswer_bars = 1\n", 1)
            cfg.write_text(text)
            rx = JackReceiver(None, client=f"synth-s{k}")
            player = Player(cfg)
            try:
                player.start()
                player.wait_ready()
                with JackSender(f"cs{k}", client=f"keys-s{k}") as keys:
                    time.sleep(0.5)
                    for _ in range(args.phrases):
                        notes = riff(rng)
                        play_phrase(keys, notes, beat_s)
                        played += len(notes)
                        time.sleep((1.0 + 4.0 + 1.0) * beat_s)  # the gap, the one-bar answer, a breath
                player.stop(signal.SIGTERM, timeout=20)
            finally:
                player.close()
                rx.close()
    shutil.rmtree(work, ignore_errors=True)
    files = sorted(args.out.glob("session-*.mid"))
    result = {
        "sessions": len(files),
        "phrases": args.sessions * args.phrases,
        "notes_played": played,
        "tempo": args.tempo,
        "seconds": round(time.monotonic() - t_start, 1),
        "out": str(args.out),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
