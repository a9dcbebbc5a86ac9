"""Does a key-conditioned model go where it is told? Bach's test openings, then told a key, 16 beats sampled.

    python bench/key_obey.py --model BUNDLE [--moves 0 2 5 9] [--beats 16] [--seeds 2]

Each test chorale (the trainer's split; needs the `train` extra) is fed up to its 16th beat with KEY
tokens as training places them (player/conditioning.py: at every bar line, the key of the notes
around it). Then the model is told a key: the opening's own (move 0) or one moved by `move` semitones,
same mode, as a KEY token at once and after every bar line, as the player tells the phrase's key; and
`--beats` beats are sampled from the model alone (temperature 1, no top-p, no lean). The figure is the
share of these continuations whose Krumhansl–Schmuckler key is the told one. A model that ignores the
KEY tokens scores about what Bach's own continuations do for move 0, and near chance (1/24) otherwise.
An unconditioned model is fed no KEY token (its figure is the baseline).

`--at-cut` scores the place a KEY token matters most instead: each test chorale moved to another key
(2 to 6 semitones, seeded by its index) from its middle bar line on, KEY tokens placed as training places
them (no dropout), and the mean NLL of the NOTE_ONs in the bar after the cut, told the new key (the true
labels), told nothing (KEY tokens stripped), and told the old key (from a bar before the cut on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/bach.cadenza")
    ap.add_argument("--moves", type=int, nargs="+", default=[0, 2, 5, 9])
    ap.add_argument("--beats", type=float, default=16)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--opening-beats", type=float, default=16)
    ap.add_argument("--at-cut", action="store_true", help="NLL after a key move, told the new key, none, the old")
    args = ap.parse_args(argv)
    if args.at_cut:
        return at_cut(args.model)
    from cadenza.player import conditioning, keys
    from cadenza.player import events as ev
    from cadenza.player.runtime import open_model
    from cadenza.train.config import TrainConfig
    from cadenza.train.corpus import splits_for

    model = open_model(args.model)
    told = conditioning.takes_keys(model)
    _train, _val, test = splits_for(TrainConfig())
    cut = int(args.opening_beats * ev.TICKS_PER_BEAT)
    span = int(args.beats * ev.TICKS_PER_BEAT)
    logits = np.empty(model.vocab_size, np.float32)
    music = ev.VOCAB_SIZE
    rows = []
    for move in args.moves:
        hit = total = 0
        for seed in range(args.seeds):
            for index, piece in enumerate(test):
                toks = np.asarray(piece.tokens)
                notes = ev.decode_notes(toks)
                opening = [n for n in notes if n.start < cut]
                home = keys.estimate(opening)
                if home is None:
                    continue
                target = ((home[0] + move) % 12, home[1])
                starts = np.array([n.start for n in notes], dtype=np.int64)
                model.reset()
                tick = 0
                for tok in toks.tolist():
                    model.step(tok, out=logits)
                    if not ev.is_shift(tok):
                        continue
                    before, tick = tick, tick + ev.shift_ticks(tok)
                    if tick >= cut:
                        break
                    if told and conditioning.crosses(before, tick):
                        k = conditioning.label(notes, starts, tick, home)
                        model.step(conditioning.key_token(k), out=logits)
                if told:
                    model.step(conditioning.key_token(target), out=logits)
                rng = np.random.default_rng([seed, index, move])
                out: list[int] = []
                elapsed = 0
                while elapsed < span and len(out) < 40 * args.beats:
                    z = logits[:music].astype(np.float64)
                    p = np.exp(z - z.max())
                    tok = int(rng.choice(music, p=p / p.sum()))
                    out.append(tok)
                    model.step(tok, out=logits)
                    if ev.is_shift(tok):
                        before, elapsed = elapsed, elapsed + ev.shift_ticks(tok)
                        if told and conditioning.crosses(tick + before, tick + elapsed):
                            model.step(conditioning.key_token(target), out=logits)
                got = keys.estimate(ev.decode_notes(np.asarray(out, np.int32)))
                total += 1
                hit += int(got == target)
        rows.append({"move": move, "in_told_key": hit, "continuations": total, "share": round(hit / total, 3)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"model": args.model, "conditioned": told, "beats": args.beats, "seeds": args.seeds, "rows": rows}
    out_dir = Path(__file__).resolve().parent / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "key_obey.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


def at_cut(path: str) -> int:
    from cadenza.convert.reference import log_softmax
    from cadenza.player import conditioning as cond
    from cadenza.player import events as ev
    from cadenza.player.runtime import open_model
    from cadenza.train.config import TrainConfig
    from cadenza.train.corpus import splits_for

    model = open_model(path)
    _train, _val, test = splits_for(TrainConfig())
    logits = np.empty(model.vocab_size, np.float32)
    sums = {"told the new key": [0.0, 0], "told nothing": [0.0, 0], "told the old key": [0.0, 0]}
    for index, piece in enumerate(test):
        notes = ev.decode_notes(np.asarray(piece.tokens))
        if not notes:
            continue
        cut = max(n.end for n in notes) // 2 // cond.EVERY_TICKS * cond.EVERY_TICKS
        if cut < 2 * cond.EVERY_TICKS:
            continue
        move = int(np.random.default_rng(index).choice([2, 3, 4, 5, 6, -5, -4, -3, -2]))
        labelled = cond.insert(ev.encode_notes(cond.moved(notes, [(cut, move)])), np.random.default_rng(0), dropout=0.0)
        for variant, acc in sums.items():
            toks = (cond.strip(labelled) if variant == "told nothing" else labelled).tolist()
            model.reset()
            tick = 0
            for a, b in zip(toks[:-1], toks[1:]):
                if variant == "told the old key" and ev.is_key(np.asarray([a]))[0] and tick >= cut - cond.EVERY_TICKS:
                    tonic, mode = cond.key_of(a)
                    a = cond.key_token(((tonic - move) % 12, mode))
                model.step(int(a), out=logits)
                if ev.is_shift(int(a)):
                    tick += ev.shift_ticks(int(a))
                if cut <= tick < cut + cond.EVERY_TICKS and ev.is_note_on(int(b)):
                    acc[0] -= float(log_softmax(logits[: ev.VOCAB_SIZE])[int(b)])
                    acc[1] += 1
    result = {
        "model": path,
        **{k: round(v[0] / max(v[1], 1), 4) for k, v in sums.items()},
        "note_ons": sums["told nothing"][1],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
