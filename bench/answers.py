"""Answers to folk phrases: does the answer keep the phrase's key, its mode and its metre?

    python bench/folk_phrases.py                       # the phrases (bench/folk_phrases.json, bench/out/folk/)
    python bench/answers.py --model models/bach.cadenza --seeds 4 [--beats 4 16] [--keys default off]

Each phrase of bench/folk_phrases.json is answered by the real player, one process per
answer:

    cadenza-play --render OUT.mid --model M --seed-file PHRASE.mid --beats N --seed S --include-seed [--key off]

("default": the key lean as shipped, the player's own settings; "off": the model alone).
The answer's key is the Krumhansl–Schmuckler estimate of its notes (cadenza.player.keys),
compared with the phrase's labelled key:

    exact     tonic and mode both right
    relative  the relative key (same notes: A minor for C major, C major for A minor): a mode miss
    parallel  the right tonic in the other mode (C minor for C major): a mode miss
    other     any other key (a tonic miss), or no notes

Metre: the phrase's bar lines continue through the answer (the phrase file has them where
the tune has them, an anacrusis included; the rendered file puts the phrase's first note at
tick 0 and the answer on the same axis). The strong beats are beat 1 of each bar, and
beat 3 in 4/4 (3/4: beat 1 only; 6/8: eighths 1 and 4). The figure is the share of the
distinct onset times (a chord counts once) on a strong beat, for the answer and for the
phrase itself; "any phase" is the same share averaged over the bar's eighth-note shifts of
the grid: what an answer with its own pulse but no relation to the phrase's bar lines would
score. A table shows where the onset times fall in the bar, eighth by eighth (and between
eighths). The reference is Bach's own continuations (music21's `bach` chorales in 4/4 and 3/4:
the opening is the anacrusis and the first `--bach-bars` bars, the continuation the next
4 and 16 beats from the bar line, all voices), scored the same way, with their key against
the opening's estimated key.

Writes bench/out/answers.json (the settings, every answer's figures and the tables' numbers)
and prints the tables as markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from bench.folk_phrases import TPQ, guard, write_midi  # noqa: E402
from cadenza.player import events as ev  # noqa: E402
from cadenza.player import keys  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ("exact", "relative", "parallel", "other")
BAR_TICKS = {"4/4": 4 * TPQ, "3/4": 3 * TPQ, "6/8": 3 * TPQ}
STRONG = {"4/4": (0, 2 * TPQ), "3/4": (0,), "6/8": (0, 3 * TPQ // 2)}  # ticks from the bar line
EIGHTH = TPQ // 2


# -- keys -------------------------------------------------------------------


def classify(label: tuple[int, str], est: tuple[int, str] | None) -> str:
    """The estimated key against the labelled one: exact, relative, parallel or other."""
    if est is None:
        return "other"
    (t, m), (u, n) = label, est
    if (t, m) == (u, n):
        return "exact"
    if m != n and t == u:
        return "parallel"
    if m != n and (t + (9 if m == "major" else 3)) % 12 == u:
        return "relative"
    return "other"


def answer_category(label: tuple[int, str], notes) -> str:
    """classify(label, the Krumhansl–Schmuckler key of notes (events.Note-like))."""
    return classify(label, keys.estimate(notes))


# -- metre ------------------------------------------------------------------


def strong_share(onsets, metre: str, offset: int = 0) -> tuple[int, int]:
    """(onset times on a strong beat, onset times), tick t at t + offset from a bar line."""
    times = sorted(set(onsets))
    bar, strong = BAR_TICKS[metre], STRONG[metre]
    return sum((t + offset) % bar in strong for t in times), len(times)


def positions(onsets, metre: str, offset: int = 0) -> list[int]:
    """Onset times per eighth of the bar (tick t at t + offset from a bar line), and last those between eighths."""
    bar = BAR_TICKS[metre]
    out = [0] * (bar // EIGHTH + 1)
    for t in set(onsets):
        pos = (t + offset) % bar
        out[pos // EIGHTH if pos % EIGHTH == 0 else -1] += 1
    return out


def _add(into: list[int], more: list[int]) -> list[int]:
    return [a + b for a, b in zip(into, more)] if into else list(more)


def any_phase_share(onsets, metre: str) -> float:
    """The strong-beat share averaged over the grid's eighth-note shifts (no relation to the bar lines)."""
    bar = BAR_TICKS[metre]
    shares = [strong_share(onsets, metre, k) for k in range(0, bar, EIGHTH)]
    hits, n = sum(h for h, _ in shares), sum(n for _, n in shares)
    return hits / n if n else float("nan")


# -- rendering --------------------------------------------------------------


def midi_notes(mid: mido.MidiFile, track: int) -> list[ev.Note]:
    """A track's notes in the player's ticks (24 per quarter)."""
    scale = TPQ / mid.ticks_per_beat
    now = 0
    open_: dict[int, int] = {}
    out: list[ev.Note] = []
    for msg in mid.tracks[track]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_.setdefault(msg.note, now)
        elif msg.type in ("note_on", "note_off") and msg.note in open_:
            s = open_.pop(msg.note)
            out.append(ev.Note(round(s * scale), msg.note, round(now * scale)))
    return sorted(out)


def render(
    player: str, model: str, phrase_file: Path, out: Path, beats: int, seed: int, key: str, strength, opening=None
) -> None:
    cmd = [player, "--render", str(out), "--model", model, "--seed-file", str(phrase_file)]
    cmd += ["--beats", str(beats), "--seed", str(seed), "--include-seed"]
    if key != "default":
        cmd += ["--key", key]
    if strength is not None:
        cmd += ["--key-strength", str(strength)]
    if opening is not None:
        cmd += ["--key-opening", str(opening)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}")


def answer_record(phrase: dict, path: Path) -> dict:
    mid = mido.MidiFile(str(path))
    played, answer = midi_notes(mid, 0), midi_notes(mid, 1)
    first = min(s for s, _e, _p in phrase["notes"])
    if played and played[0].start != 0:
        raise ValueError(f"{path}: the phrase does not start at tick 0")
    label = (phrase["tonic_pc"], phrase["mode"])
    est = keys.estimate(answer)
    hits, n = strong_share([x.start for x in answer], phrase["metre"], first)
    return {
        "notes": len(answer),
        "key": keys.name(est),
        "category": classify(label, est),
        "strong": hits,
        "onsets": n,
        "any_phase": any_phase_share([x.start + first for x in answer], phrase["metre"]),
        "positions": positions([x.start for x in answer], phrase["metre"], first),
        "start": answer[0].start - max(x.end for x in played) if answer and played else None,
    }


# -- Bach's continuations ---------------------------------------------------


def bach_chorales(count: int, bars: int, cache_path: Path) -> list[dict]:
    """Openings and continuations of `count` chorales in 4/4 or 3/4 (music21's bach corpus, in name order)."""
    import music21
    from music21 import corpus, meter

    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    tag = f"bach-v1 {music21.__version__}"
    out: list[dict] = []
    dirty = False
    paths = sorted(
        p
        for p in corpus.getComposer("bach")
        if p.suffix in (".mxl", ".xml", ".krn") and not p.stem.startswith("bwv846")
    )
    for p in paths:
        if len(out) >= count:
            break
        guard(p)
        hit = cache.get(p.name)
        if hit is None or hit.get("tag") != tag:
            rec = None
            try:
                s = corpus.parse(str(p))
                sigs = list(s.flatten().getElementsByClass(meter.TimeSignature))
                metre = sigs[0].ratioString if sigs else None
                if metre in ("4/4", "3/4") and len({ts.ratioString for ts in sigs}) == 1:
                    m0 = s.parts[0].getElementsByClass("Measure")[0]
                    bar = BAR_TICKS[metre] / TPQ
                    pad = float(m0.paddingLeft or 0.0)
                    if pad == 0 and 0 < float(m0.duration.quarterLength) < bar:
                        pad = bar - float(m0.duration.quarterLength)
                    notes = []
                    for part in s.parts:
                        for n in part.stripTies().flatten().notes:
                            if n.quarterLength <= 0:
                                continue
                            st = round((float(n.offset) + pad) * TPQ)
                            en = st + round(float(n.quarterLength) * TPQ)
                            notes += [[st, en, int(x.midi)] for x in n.pitches]
                    rec = {"metre": metre, "pad_ticks": round(pad * TPQ), "notes": sorted(notes)}
            except Exception:  # a chorale music21 cannot read is not used
                rec = None
            cache[p.name] = hit = {"tag": tag, "rec": rec}
            dirty = True
        if hit["rec"] is not None:
            out.append({"name": p.name, **hit["rec"]})
    if dirty:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, separators=(",", ":")))
    for c in out:
        bar = BAR_TICKS[c["metre"]]
        c["opening_end"] = bar * (bars + (1 if c["pad_ticks"] else 0))
    return out


def bach_reference(chorales: list[dict], lengths) -> dict:
    """Per metre: the openings' and the continuations' strong-beat shares, and the continuations' keys."""
    res: dict = {}
    for c in chorales:
        end, metre = c["opening_end"], c["metre"]
        notes = [ev.Note(s, p, e) for s, e, p in c["notes"]]
        opening = [n for n in notes if n.start < end]
        label = keys.estimate(opening)
        r = res.setdefault(metre, {"chorales": 0, "opening": [0, 0], "opening_any": [], "opening_positions": []})
        r["opening_positions"] = _add(r["opening_positions"], positions([x.start for x in opening], metre))
        r["chorales"] += 1
        h, n = strong_share([x.start for x in opening], metre)
        r["opening"][0] += h
        r["opening"][1] += n
        r["opening_any"].append(any_phase_share([x.start for x in opening], metre))
        for beats in lengths:
            cont = [x for x in notes if end <= x.start < end + beats * TPQ]
            if not cont:
                continue
            b = r.setdefault(
                str(beats), {"strong": [0, 0], "any": [], "positions": [], "keys": dict.fromkeys(CATEGORIES, 0)}
            )
            b["positions"] = _add(b["positions"], positions([x.start for x in cont], metre))
            h, n = strong_share([x.start for x in cont], metre)
            b["strong"][0] += h
            b["strong"][1] += n
            b["any"].append(any_phase_share([x.start for x in cont], metre))
            if label is not None:
                b["keys"][classify(label, keys.estimate(cont))] += 1
    for r in res.values():
        r["opening_any"] = _mean(r["opening_any"])
        for b in r.values():
            if isinstance(b, dict):
                b["any"] = _mean(b["any"])
    return res


def _mean(xs) -> float:
    xs = [x for x in xs if x == x]
    return sum(xs) / len(xs) if xs else float("nan")


# -- tables -----------------------------------------------------------------


def pct(a: int, n: int) -> str:
    return f"{a}/{n} ({100 * a / n:.0f} %)" if n else "–"


def share(h: int, n: int) -> str:
    return f"{100 * h / n:.0f} %" if n else "–"


def tables(phrases: list[dict], answers: list[dict], bach: dict, settings, lengths) -> str:
    by_id = {p["id"]: p for p in phrases}
    out = []
    out.append("Key and mode of the answers against the phrase's key (all metres):\n")
    out.append(
        "| key lean | answer | phrases | answers | exact | relative | parallel | other | tonic right | mode right |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for k in settings:
        for beats in lengths:
            for mode in ("major", "minor", "all"):
                rows = [
                    a
                    for a in answers
                    if a["keys"] == k and a["beats"] == beats and mode in ("all", by_id[a["phrase"]]["mode"])
                ]
                n = len(rows)
                c = {cat: sum(a["category"] == cat for a in rows) for cat in CATEGORIES}
                tonic = c["exact"] + c["parallel"]
                moder = c["exact"] + sum(
                    a["category"] == "other" and a["key"].endswith(by_id[a["phrase"]]["mode"]) for a in rows
                )
                cells = [f"{c[cat]} ({share(c[cat], n)})" for cat in CATEGORIES]
                name = mode if mode != "all" else "**all**"
                out.append(
                    f"| {k} | {beats} beats | {name} | {n} | "
                    + " | ".join(cells)
                    + f" | {share(tonic, n)} | {share(moder, n)} |"
                )
    out.append("\nExact (key and mode) by metre and by phrase length:\n")
    metres = ("4/4", "3/4", "6/8")
    out.append("| key lean | answer | " + " | ".join(metres) + " | 1 bar | 2 bars | 3 bars | 4 bars |")
    out.append("|---|---|" + "---|" * (len(metres) + 4))
    for k in settings:
        for beats in lengths:
            rows = [a for a in answers if a["keys"] == k and a["beats"] == beats]
            cells = []
            for m in metres:
                sub = [a for a in rows if by_id[a["phrase"]]["metre"] == m]
                cells.append(pct(sum(a["category"] == "exact" for a in sub), len(sub)))
            for b in (1, 2, 3, 4):
                sub = [a for a in rows if by_id[a["phrase"]]["bars"] == b]
                cells.append(pct(sum(a["category"] == "exact" for a in sub), len(sub)))
            out.append(f"| {k} | {beats} beats | " + " | ".join(cells) + " |")
    out.append("\nMetre: share of onset times on the phrase's strong beats (in brackets: the same at any bar phase):\n")
    out.append("| | " + " | ".join(metres) + " |")
    out.append("|---|" + "---|" * len(metres))
    cells = []
    for m in metres:
        ps = [p for p in phrases if p["metre"] == m]
        h = n = 0
        anys = []
        for p in ps:
            on = [s for s, _e, _p in p["notes"]]
            a, b = strong_share(on, m)
            h, n = h + a, n + b
            anys.append(any_phase_share(on, m))
        cells.append(f"{share(h, n)} ({100 * _mean(anys):.0f} %)" if n else "–")
    out.append("| the phrases | " + " | ".join(cells) + " |")
    for k in settings:
        for beats in lengths:
            cells = []
            for m in metres:
                rows = [
                    a for a in answers if a["keys"] == k and a["beats"] == beats and by_id[a["phrase"]]["metre"] == m
                ]
                h, n = sum(a["strong"] for a in rows), sum(a["onsets"] for a in rows)
                cells.append(f"{share(h, n)} ({100 * _mean([a['any_phase'] for a in rows]):.0f} %)" if n else "–")
            out.append(f"| answers, {k}, {beats} beats | " + " | ".join(cells) + " |")
    for label, key in [("Bach, openings", None)] + [(f"Bach, next {b} beats", str(b)) for b in lengths]:
        cells = []
        for m in metres:
            r = bach.get(m)
            if r is None:
                cells.append("–")
            elif key is None:
                cells.append(f"{share(*r['opening'])} ({100 * r['opening_any']:.0f} %)")
            elif key in r:
                cells.append(f"{share(*r[key]['strong'])} ({100 * r[key]['any']:.0f} %)")
            else:
                cells.append("–")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out.append("\nWhere the onset times fall in the phrase's bar (share per eighth; '·': between eighths):")
    names = {"4/4": "1 1+ 2 2+ 3 3+ 4 4+", "3/4": "1 1+ 2 2+ 3 3+", "6/8": "1 2 3 4 5 6"}
    for m in metres:
        cols = names[m].split() + ["·"]
        out.append(f"\n| {m} | " + " | ".join(cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        sources: list[tuple[str, list[dict] | None, str | None]] = [
            ("the phrases", [ph for ph in phrases if ph["metre"] == m], None)
        ]
        for k in settings:
            sources.append((f"answers, {k}, {lengths[-1]} beats", None, k))
        for name, group, setting in sources:
            hist: list[int] = []
            if group is not None:
                for ph in group:
                    hist = _add(hist, positions([s for s, _e, _p in ph["notes"]], m))
            else:
                for ans in answers:
                    if (ans["keys"], ans["beats"], by_id[ans["phrase"]]["metre"]) == (setting, lengths[-1], m):
                        hist = _add(hist, ans["positions"])
            if hist:
                out.append(f"| {name} | " + " | ".join(share(h, sum(hist)) for h in hist) + " |")
        r = bach.get(m)
        if r is not None and str(lengths[-1]) in r:
            hist = r[str(lengths[-1])]["positions"]
            out.append(f"| Bach, next {lengths[-1]} beats | " + " | ".join(share(h, sum(hist)) for h in hist) + " |")
    out.append("\nOnset times between eighths (sixteenths, snaps, triplets), by how many the phrase has:\n")
    out.append(
        "| phrases | n | the phrases | " + " | ".join(f"answers, {k}, {lengths[-1]} beats" for k in settings) + " |"
    )
    out.append("|---|---|---|" + "---|" * len(settings))
    fine: dict[str, tuple[int, int]] = {}  # phrase id: (onset times between eighths, onset times)
    for ph in phrases:
        ph_hist = positions([s for s, _e, _p in ph["notes"]], ph["metre"])
        fine[ph["id"]] = (ph_hist[-1], sum(ph_hist))
    for name, test in (("≥ 25 % between eighths", True), ("fewer", False)):
        ids = {i for i, (f, n) in fine.items() if (f >= 0.25 * n) == test}
        cells = [share(sum(fine[i][0] for i in ids), sum(fine[i][1] for i in ids))]
        for k in settings:
            hs = [
                ans["positions"]
                for ans in answers
                if ans["phrase"] in ids and (ans["keys"], ans["beats"]) == (k, lengths[-1])
            ]
            cells.append(share(sum(h[-1] for h in hs), sum(sum(h) for h in hs)))
        out.append(f"| {name} | {len(ids)} | " + " | ".join(cells) + " |")
    out.append("\nBach's continuations against his opening's estimated key (the reference for the key tables):\n")
    out.append("| continuation | chorales | " + " | ".join(CATEGORIES) + " |")
    out.append("|---|---|" + "---|" * len(CATEGORIES))
    for beats in lengths:
        c = dict.fromkeys(CATEGORIES, 0)
        for r in bach.values():
            for cat, v in r.get(str(beats), {}).get("keys", {}).items():
                c[cat] += v
        n = sum(c.values())
        out.append(f"| next {beats} beats | {n} | " + " | ".join(pct(c[cat], n) for cat in CATEGORIES) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phrases", type=Path, default=ROOT / "bench/folk_phrases.json")
    ap.add_argument("--folk-dir", type=Path, default=ROOT / "bench/out/folk", help="the phrases' MIDI files")
    ap.add_argument("--model", default=str(ROOT / "models/bach.cadenza"))
    ap.add_argument("--player", default=str(ROOT / ".venv/bin/cadenza-play"))
    ap.add_argument("--seeds", type=int, default=4, help="answers per phrase, length and key setting (seeds 0..N-1)")
    ap.add_argument("--beats", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--keys", nargs="+", default=["default", "off"], help="default (as shipped), off, auto, ...")
    ap.add_argument("--key-strength", type=float, default=None, help="default: the player's")
    ap.add_argument("--key-opening", type=float, default=None, help="an answer's first bar; default: the player's")
    ap.add_argument("--limit", type=int, default=None, help="only the first N phrases")
    ap.add_argument(
        "--agreeing",
        action="store_true",
        help="only the phrases whose own notes' key estimate is their label (all of the evaluation set's)",
    )
    ap.add_argument("--bach", type=int, default=80, help="chorales for the reference")
    ap.add_argument("--bach-bars", type=int, default=2, help="bars of a chorale's opening (after the anacrusis)")
    ap.add_argument("--renders", type=Path, default=ROOT / "bench/out/answers", help="the rendered answers")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/out/answers.json")
    args = ap.parse_args(argv)

    doc = json.loads(args.phrases.read_text())
    phrases = [p for p in doc["phrases"] if p["estimate_agrees"] or not args.agreeing][: args.limit]
    for p in phrases:
        guard(p["source"]["corpus"])
        f = args.folk_dir / p["file"]
        if not f.exists():  # the list records the notes: the files are written from it
            write_midi(f, p)
    args.renders.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    answers = []
    total = len(phrases) * len(args.beats) * len(args.keys) * args.seeds
    for i, p in enumerate(phrases):
        for beats in args.beats:
            for k in args.keys:
                for seed in range(args.seeds):
                    out = args.renders / f"{p['id']}_{beats}b_{k}_{seed}.mid"
                    render(
                        args.player,
                        args.model,
                        args.folk_dir / p["file"],
                        out,
                        beats,
                        seed,
                        k,
                        args.key_strength,
                        args.key_opening,
                    )
                    rec = answer_record(p, out)
                    answers.append({"phrase": p["id"], "beats": beats, "keys": k, "seed": seed, **rec})
        done = (i + 1) * len(args.beats) * len(args.keys) * args.seeds
        print(f"\r{done}/{total} answers, {time.perf_counter() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    render_s = time.perf_counter() - t0
    chorales = bach_chorales(args.bach, args.bach_bars, ROOT / "bench/out/bach-cache.json") if args.bach else []
    bach = bach_reference(chorales, args.beats)
    text = tables(phrases, answers, bach, args.keys, args.beats)
    model_hash = hashlib.sha1(Path(args.model).read_bytes()).hexdigest()[:12]
    result = {
        "model": args.model,
        "model_sha1": model_hash,
        "phrases": str(args.phrases),
        "n_phrases": len(phrases),
        "agreeing_only": args.agreeing,
        "seeds": args.seeds,
        "beats": args.beats,
        "keys": args.keys,
        "key_strength": args.key_strength,
        "key_opening": args.key_opening,
        "render_s": round(render_s, 1),
        "load_avg": os.getloadavg()[0],
        "bach_chorales": [c["name"] for c in chorales],
        "bach": bach,
        "answers": answers,
        "tables": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(text)
    print(f"\n{len(answers)} answers in {render_s:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
