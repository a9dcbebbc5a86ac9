"""Steering: does the answer stay in the key of the phrase? 24 keys, Krumhansl–Schmuckler.

    python bench/steering.py --model models/bach.cadenza [--seeds 3] [--beats 16]

Each phrase (a scale up an octave, then a I-IV-V-I cadence in block chords; the
harmonic minor for minor keys) is played into the same input path as a keyboard
(player.render: call-response on a SimClock), and the model's answer is rendered.
Reported: the share of answers whose estimated key equals the phrase's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from cadenza.player import events as ev  # noqa: E402
from cadenza.player import keys  # noqa: E402
from cadenza.player.render import render  # noqa: E402
from support.keyphrases import phrase_notes  # noqa: E402


def chorale_phrases(beats: float) -> dict:
    """{(tonic, mode): notes}: the openings of test chorales, one per key of the 24.

    The test split's chorales in order; an opening whose estimated key's mode is still
    wanted is transposed (by the smallest interval) to the first tonic of that mode not
    yet covered, until all 24 keys have a phrase.
    """
    from cadenza.train.config import TrainConfig
    from cadenza.train.corpus import splits_for

    _train, _val, test = splits_for(TrainConfig())
    cut = int(beats * ev.TICKS_PER_BEAT)
    openings = []
    for piece in test:
        opening = [n for n in ev.decode_notes(piece.tokens) if n.start < cut]
        if keys.estimate(opening) is not None:
            openings.append(opening)
    out: dict = {}
    for _ in range(12):  # passes over the openings, until each key has one (a piece may serve twice)
        for opening in openings:
            key = keys.estimate(opening)
            for target in range(12):
                if (target, key[1]) in out:
                    continue
                shift = (target - key[0] + 6) % 12 - 6
                notes = ev.decode_notes(ev.transpose(ev.encode_notes(opening), shift))
                if keys.estimate(notes) == (target, key[1]):
                    out[(target, key[1])] = notes
                break
        if len(out) == 24:
            break
    return dict(sorted(out.items(), key=lambda kv: (kv[0][1], kv[0][0])))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="bundle (default: the shipped model)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--beats", type=float, default=16)
    ap.add_argument("--tempo", type=float, default=100)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--key", default="auto", help="the player's key setting: auto (the phrase's key) or off")
    ap.add_argument("--key-strength", type=float, default=None, help="default: the player's (the model's own)")
    ap.add_argument("--key-opening", type=float, default=None, help="default: the player's (the model's own)")
    ap.add_argument(
        "--cadence",
        choices=("full", "half"),
        default="full",
        help="the phrase ends on the tonic (full) or on the dominant (half)",
    )
    ap.add_argument(
        "--phrases",
        choices=("scales", "chorales"),
        default="scales",
        help="scales: the scale-and-cadence phrases; chorales: the first --phrase-beats beats of "
        "test chorales, transposed so the 24 keys are each one phrase (needs the train extra)",
    )
    ap.add_argument("--phrase-beats", type=float, default=8)
    args = ap.parse_args(argv)
    from cadenza.player.bundle import default_model_path
    from cadenza.player.runtime import open_model

    path = args.model or str(default_model_path())
    model = open_model(path)
    from cadenza.player.keys import model_opening, model_strength

    strength = model_strength(model) if args.key_strength is None else args.key_strength  # the player's default
    opening = model_opening(model) if args.key_opening is None else args.key_opening
    rows, hits, phrase_ok = [], 0, 0
    phrases = (
        chorale_phrases(args.phrase_beats)
        if args.phrases == "chorales"
        else {
            (tonic, mode): phrase_notes(tonic, mode, args.cadence) for mode in ("major", "minor") for tonic in range(12)
        }
    )
    for (tonic, mode), notes in phrases.items():
        want = keys.estimate(notes)
        phrase_ok += want == (tonic, mode)
        mid = ev.tokens_to_midi(ev.encode_notes(notes), tempo_bpm=args.tempo)
        for seed in range(args.seeds):
            r = render(
                model,
                beats=args.beats,
                phrase=mid,
                tempo=args.tempo,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=seed,
                phrase_gap=1.0,
                key=args.key,
                key_strength=strength,
                key_opening=opening,
            )
            answer = ev.decode_notes(ev.encode_messages([(tm.tick, tm.message) for tm in r.answer], start=False))
            got = keys.estimate(answer)
            hits += got == want
            rows.append({"key": keys.name(want), "seed": seed, "answer_key": keys.name(got), "notes": len(answer)})
    n = len(rows)
    result = {
        "model": path,
        "answers": n,
        "match": hits,
        "share": round(hits / n, 3),
        "phrases_in_their_own_key": f"{phrase_ok}/24",
        "beats": args.beats,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "phrases": args.phrases,
        "key": args.key,
        "key_strength": strength,
        "key_opening": opening,
        "cadence": args.cadence,
        "rows": rows,
    }
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"steering-{args.phrases}-{args.cadence}-{args.beats:g}beats-{args.key}-{strength:g}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
