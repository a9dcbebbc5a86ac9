"""What the key lean costs the style: Bach's own continuations scored with and without it.

    python bench/key_cost.py --model models/bach.cadenza [--strengths 0 1 2 3 4] [--phrase-beats 16] [--opening X]

Each test chorale (the trainer's split; needs the `train` extra for the corpus) is
cut after its first --phrase-beats beats: the opening is "the phrase", its
Krumhansl–Schmuckler key is what the player would lean to (`play.key = "auto"`),
and the rest is Bach's continuation. The model steps through the whole piece
(state carried, as when it has heard the phrase); every token of the
continuation is scored under the model's distribution with the lean applied
as the player applies it (player.keys.lean) and renormalized. A lean that only removed wrong notes would
lower the NLL; one that fights the style raises it. As in the player, the continuation's first bar
(--bar-beats) leans --opening times as hard (default: the model's own, play.key_opening); the NLL of
the first bar and of the rest are reported beside the whole's.

Also reported: how often Bach's continuation is itself in the opening's key by the
same estimate (what the steering bench asks of the model).

A key-conditioned model (player/conditioning.py) is told the opening's key as the player
tells it: a KEY token when the continuation starts (the answer), then one after every SHIFT
that crosses a period; nothing during the opening (no key known yet). `--untold` scores it
without any KEY token (the model alone).

`--told data` names the key as training does instead (conditioning.insert's rule: at every
bar line, the key of the notes from a bar back to two bars ahead, no dropout), KEY tokens from
the start of the piece, and the lean pulls each step to the key last named: what the lean costs
when it leans to the key the music is really in, Bach's modulations included. An unconditioned
model is not told, only leaned.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from cadenza.convert.reference import log_softmax  # noqa: E402
from cadenza.player import events as ev  # noqa: E402
from cadenza.player import keys  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/bach.cadenza")
    ap.add_argument("--strengths", type=float, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--phrase-beats", type=float, default=16)
    ap.add_argument("--untold", action="store_true", help="a key-conditioned model is not told the key")
    ap.add_argument("--opening", type=float, default=None, help="the first bar's multiple (default: the model's)")
    ap.add_argument("--bar-beats", type=float, default=4, help="the answer's first bar (play.beats_per_bar)")
    ap.add_argument(
        "--told",
        choices=("opening", "data"),
        default="opening",
        help="the key told and leaned to: the opening's (as the player) or the music's own, as training names it",
    )
    args = ap.parse_args(argv)
    from cadenza.player import conditioning
    from cadenza.player.runtime import open_model
    from cadenza.train.config import TrainConfig
    from cadenza.train.corpus import splits_for

    model = open_model(args.model)
    opening = keys.model_opening(model) if args.opening is None else args.opening
    bar = int(args.bar_beats * ev.TICKS_PER_BEAT)

    def leans(key):  # strength -> (the lean after the first bar, the lean in it), as the player makes them
        return {
            s: (keys.bias(key, s, model.vocab_size), keys.bias(key, s * opening, model.vocab_size))
            for s in args.strengths
        }

    _train, _val, test = splits_for(TrainConfig())
    cut = int(args.phrase_beats * ev.TICKS_PER_BEAT)
    nll = {s: 0.0 for s in args.strengths}
    nll_on = {s: 0.0 for s in args.strengths}
    nll_first = {s: 0.0 for s in args.strengths}
    count = count_on = count_first = pieces = bach_in_key = 0
    logits = np.empty(model.vocab_size, np.float32)
    told = conditioning.takes_keys(model) and not args.untold
    for piece in test:
        toks = np.asarray(piece.tokens)
        notes = ev.decode_notes(toks)
        key = keys.estimate([n for n in notes if n.start < cut])
        rest = [n for n in notes if n.start >= cut]
        if key is None or len(rest) < 8:
            continue
        pieces += 1
        bach_in_key += int(keys.estimate(rest) == key)
        biases = leans(key)
        model.reset()
        tick = 0
        key_tok = conditioning.key_token(key)
        starts = np.array([n.start for n in notes], dtype=np.int64)
        for prev, nxt in zip(toks[:-1], toks[1:]):
            model.step(int(prev), out=logits)
            if ev.is_shift(int(prev)) and args.told == "data":
                before, tick = tick, tick + ev.shift_ticks(int(prev))
                if conditioning.crosses(before, tick) or (before < cut <= tick):
                    here = conditioning.label(notes, starts, tick, keys.estimate(notes))
                    if here is not None and here != key:
                        key = here
                        biases = leans(key)
                    if told and key is not None and conditioning.crosses(before, tick):
                        model.step(conditioning.key_token(key), out=logits)
            elif ev.is_shift(int(prev)):
                before, tick = tick, tick + ev.shift_ticks(int(prev))
                if told and before < cut <= tick:
                    model.step(key_tok, out=logits)  # the answer starts: the player tells the phrase's key
                elif told and tick > cut and conditioning.crosses(before, tick):
                    model.step(key_tok, out=logits)
            if tick < cut:
                continue
            is_on = bool(ev.is_note_on(int(nxt)))
            in_first = tick < cut + bar
            count += 1
            count_on += is_on
            count_first += in_first
            for s in args.strengths:
                b = biases[s][in_first]
                lp = -float(log_softmax(logits if b is None else keys.lean(logits, b))[int(nxt)])
                nll[s] += lp
                if is_on:
                    nll_on[s] += lp
                if in_first:
                    nll_first[s] += lp
    rows = [
        {
            "strength": s,
            "nll": round(nll[s] / count, 4),
            "note_on_nll": round(nll_on[s] / count_on, 4),
            "first_bar_nll": round(nll_first[s] / max(count_first, 1), 4),
            "rest_nll": round((nll[s] - nll_first[s]) / max(count - count_first, 1), 4),
        }
        for s in args.strengths
    ]
    result = {
        "model": args.model,
        "pieces": pieces,
        "tokens": count,
        "note_on_tokens": count_on,
        "phrase_beats": args.phrase_beats,
        "opening": opening,
        "first_bar_tokens": count_first,
        "told_the_key": told,
        "told": args.told,
        "bach_continuation_in_opening_key": f"{bach_in_key}/{pieces}",
        "rows": rows,
    }
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "key_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
