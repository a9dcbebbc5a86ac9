"""Folk phrases the model never saw: the openings (1 to 4 bars) of folk tunes, in all 24 keys.

    python bench/folk_phrases.py [--count 72] [--seed 0] [--out bench/out/folk] [--list bench/folk_phrases.json]
    python bench/folk_phrases.py --dev    # a development set: other tunes, for choosing settings

The evaluation set (the default) is measured, not tuned on. Settings are chosen on the
development set (`--dev`: 72 phrases, seed 1, none of the evaluation set's tunes, written to
bench/folk_phrases_dev.json and bench/out/folk-dev/), then measured once on the evaluation set.

The tunes come from music21's ABC folk corpora `airdsAirs`, `ryansMammoth` and `miscFolk`
(the collections `oneills1850` and `essenFolksong` are kept for an independent evaluation:
a path naming either is refused). The model was trained on Bach chorales only.

A tune is used when its metre is 4/4 (or C), 3/4 or 6/8 and it is in a major or minor key:
its key is the declared one (ABC `K:`) when the Krumhansl–Schmuckler estimate of the whole
tune and its last note agree with it ("declared"); a tune declared in a major key whose
estimate and last note say the relative minor (a key signature, not a key: `K:G` for an
E minor air) is labelled with the minor ("analysis"); modal tunes and any other
disagreement are left out, and so are tunes whose first bars (as music21 reads them) do not
add up to the metre. A phrase is the notes from the first one (an anacrusis is kept,
after a rest to its bar line) to the end of bar 1 to 4, the last note cut at that bar line.
`key` is the phrase's key (after the transposition); `source_key` (the label), `declared_key`
(the ABC header as music21 reads it) and `tune_estimate` are the tune's, before it.

The selection is deterministic (`--seed`): phrase i is in key i mod 24 (major and minor in
turn, round the circle of fifths) and metre (key + round) mod 3, so 72 phrases give every key
in every metre; among the candidates the pick favours a phrase whose own key estimate is
its label, the features seen least so far, few transposition semitones, then a seeded draw.
A tune is used once; it is transposed (by at most a tritone) to the slot's key.
The full set considers every usable tune of the corpora (parsed once, then cached in
bench/out/); `--limit N` (a quick subset, no chords added) parses tunes in the seeded order
only until each of its slots has a candidate. Where the chosen phrases have fewer than
`--chords` chords, the last note of some is doubled a third (then a sixth) below within the
key, recorded as `chord_added`.

Features (per phrase): anacrusis (a pickup before the first bar line), dotted (a dotted note then
a shorter one, dotted quarter–eighth or dotted eighth–sixteenth; not a dotted quarter in 6/8,
which is the beat), triplet (a tuplet), chord (two or more notes struck together), repeated (the same
pitch struck twice in a row), held (the last note lasts half a bar or more).

Each phrase is a MIDI file (type 0, one track, 120 BPM, set_tempo and time_signature meta,
480 ticks per quarter, velocity 80, the bar lines where the tune has them); the list
(`bench/folk_phrases.json`) records each phrase's source, bars, key, metre, transposition,
features and notes (ticks at 24 per quarter: [start, end, pitch]).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from cadenza.player import events as ev  # noqa: E402
from cadenza.player import keys  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ("airdsAirs", "ryansMammoth", "miscFolk")
RESERVED = ("oneills1850", "essenfolksong")  # held out for independent evaluation, compared lower-case
METRES = ("4/4", "3/4", "6/8")
BAR_QUARTERS = {"4/4": 4.0, "3/4": 3.0, "6/8": 3.0}
TPQ = ev.TICKS_PER_BEAT  # 24 ticks per quarter, the player's grid
FILE_TPQ = 480
TEMPO_BPM = 120
VELOCITY = 80
CACHE_VERSION = "folk-v2"
# Round the circle of fifths, major and its relative minor in turn: the first n slots spread over keys and modes.
_FIFTHS = [0, 7, 2, 9, 4, 11, 6, 1, 8, 3, 10, 5]
SLOT_KEYS = [k for t in _FIFTHS for k in ((t, "major"), ((t + 9) % 12, "minor"))]
FEATURES = ("anacrusis", "dotted", "triplet", "chord", "repeated", "held")
LOW, HIGH = 36, 96  # a transposed phrase stays within this range


class ReservedCorpusError(ValueError):
    """A path from a corpus kept for independent evaluation."""


def guard(path: str | Path) -> Path:
    """The path, unless it names a reserved corpus (then ReservedCorpusError)."""
    low = str(path).lower()
    for name in RESERVED:
        if name in low:
            raise ReservedCorpusError(f"{path}: the {name} corpus is reserved for independent evaluation")
    return Path(path)


# -- tunes ------------------------------------------------------------------


@dataclass
class TuneText:
    corpus: str
    file: str  # the file's name in the corpus
    number: str  # ABC X:
    title: str
    metre: str
    text: str

    @property
    def id(self) -> str:
        return tune_id(vars(self))


def tune_id(source: dict) -> str:
    """A tune's id from its corpus, file and ABC number: a TuneText's, or a listed phrase's `source`."""
    return f"{source['corpus']}/{source['file']}#{source['number']}"


_MODAL = re.compile(r"(dor|mix|lyd|phr|loc|hp)", re.I)


def _header(text: str, field: str) -> str | None:
    m = re.search(rf"(?m)^{field}:\s*([^%\n]*)", text)
    return m.group(1).strip() if m else None


def _metre(raw: str | None) -> str | None:
    if raw is None:
        return None
    raw = raw.replace(" ", "")
    return {"C": "4/4", "4/4": "4/4", "3/4": "3/4", "6/8": "6/8"}.get(raw)


def corpus_paths(name: str) -> list[Path]:
    from music21 import corpus

    if name.lower() in RESERVED:
        raise ReservedCorpusError(f"the {name} corpus is reserved for independent evaluation")
    return sorted(guard(p) for p in corpus.getComposer(name))


def scan(corpora=CORPORA) -> list[TuneText]:
    """Every tune of the corpora whose header says a usable metre and no mode other than major or minor."""
    out = []
    for name in corpora:
        for path in corpus_paths(name):
            text = path.read_text(encoding="utf-8", errors="replace")
            for chunk in re.split(r"(?m)^(?=X:)", text):
                if not chunk.startswith("X:"):
                    continue
                head = chunk.split("\nK:", 1)[0]
                k = _header(chunk, "K")
                metre = _metre(_header(head, "M"))
                if metre is None or not k or _MODAL.search(k):
                    continue
                out.append(
                    TuneText(
                        name,
                        path.name,
                        _header(chunk, "X") or "?",
                        _header(chunk, "T") or "",
                        metre,
                        chunk.strip() + "\n",
                    )
                )
    return out


def parse_tune(t: TuneText) -> dict | None:
    """The tune's label and its first bars as a plain record (what the cache keeps); None if unusable."""
    from music21 import converter, harmony, meter
    from music21 import key as m21key

    try:
        score = converter.parse(t.text, format="abc")
    except Exception:  # a tune music21 cannot read is not used
        return None
    part = score.parts[0] if hasattr(score, "parts") and len(score.parts) else score
    measures = list(part.getElementsByClass("Measure"))
    if not measures:
        return None
    sigs = list(part.flatten().getElementsByClass(meter.TimeSignature))
    if not sigs or sigs[0].ratioString != t.metre:
        return None
    ks = list(part.flatten().getElementsByClass(m21key.KeySignature))
    if not ks or not isinstance(ks[0], m21key.Key) or ks[0].mode not in ("major", "minor"):
        return None
    declared = (ks[0].tonic.pitchClass, ks[0].mode)
    bar = BAR_QUARTERS[t.metre]
    first = measures[0]
    pad = float(first.paddingLeft or 0.0)
    if pad == 0.0 and 0 < float(first.duration.quarterLength) < bar:
        pad = bar - float(first.duration.quarterLength)
    if abs(pad + float(first.duration.quarterLength) - bar) > 1e-6:
        return None
    if any(abs(float(m.duration.quarterLength) - bar) > 1e-6 for m in measures[1:5]):
        return None  # bars that do not add up to the metre: a tune music21 misreads (or a change of metre)
    events: list = []
    whole: list[ev.Note] = []
    limit = (pad + 5 * bar) * TPQ
    for n in part.stripTies().flatten().notes:
        if isinstance(n, harmony.Harmony) or n.duration.isGrace or n.quarterLength <= 0:
            continue
        start = round((float(n.offset) + pad) * TPQ)
        length = max(1, round(float(n.quarterLength) * TPQ))
        pitches = sorted({int(p.midi) for p in n.pitches})
        whole.extend(ev.Note(start, p, start + length) for p in pitches)
        if start < limit:
            events.append([start, length, pitches, int(n.duration.dots), bool(n.duration.tuplets)])
    if len(events) < 3:
        return None
    tune_key = keys.estimate(whole)
    last = max(whole, key=lambda x: (x.start, -x.pitch))  # the lowest pitch of the last onset
    return {
        "metre": t.metre,
        "pad_quarters": pad,
        "declared": list(declared),
        "tune_estimate": list(tune_key) if tune_key else None,
        "final_pc": last.pitch % 12,
        "events": events,
    }


def label(rec: dict) -> tuple[tuple[int, str], str] | None:
    """((tonic, mode), "declared" | "analysis"), or None when the key is not clear."""
    declared = (int(rec["declared"][0]), str(rec["declared"][1]))
    est = (int(rec["tune_estimate"][0]), str(rec["tune_estimate"][1])) if rec["tune_estimate"] else None
    if est == declared and rec["final_pc"] == declared[0]:
        return declared, "declared"
    if est is not None and declared[1] == "major" and est == ((declared[0] + 9) % 12, "minor"):
        return (est, "analysis") if rec["final_pc"] == est[0] else None
    return None


def load_tunes(tunes: list[TuneText], cache_path: Path | None, wanted=None) -> dict[str, dict | None]:
    """{tune id: parsed record or None}, parsing in order until `wanted(records)` says enough (cached on disk)."""
    import music21

    cache: dict = {}
    if cache_path is not None and cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text())
        except ValueError:
            cache = {}
    out: dict[str, dict | None] = {}
    dirty = False
    for t in tunes:
        h = hashlib.sha1(f"{CACHE_VERSION} {music21.__version__}\n{t.text}".encode()).hexdigest()[:16]
        hit = cache.get(t.id)
        if hit is not None and hit.get("hash") == h:
            rec = hit["rec"]
        else:
            rec = parse_tune(t)
            cache[t.id] = {"hash": h, "rec": rec}
            dirty = True
        out[t.id] = rec
        if wanted is not None and wanted(out):
            break
    if dirty and cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, separators=(",", ":")))
    return out


# -- phrases ----------------------------------------------------------------


def cut(rec: dict, n_bars: int) -> dict:
    """The opening of n_bars full bars (after any anacrusis): notes, features, timing."""
    metre = rec["metre"]
    bar = round(BAR_QUARTERS[metre] * TPQ)
    pad = round(rec["pad_quarters"] * TPQ)
    end = bar * (n_bars + (1 if pad else 0))
    evs = [e for e in rec["events"] if e[0] < end]
    notes = sorted(
        (int(s), int(min(s + length, end)), int(p))
        for s, length, ps, _d, _t in evs
        for p in ps
        if min(s + length, end) > s
    )
    beat = round((1.5 if metre == "6/8" else 1.0) * TPQ)
    melody = [max(e[2]) for e in evs]
    last = evs[-1]
    first = min(s for s, _e, _p in notes)
    feats = {
        "anacrusis": first % bar != 0,
        "dotted": any(a[3] > 0 and b[1] < a[1] and a[1] % beat != 0 for a, b in zip(evs, evs[1:])),
        "triplet": any(t for *_x, t in evs),
        "chord": any(len(e[2]) > 1 for e in evs),
        "repeated": any(a == b for a, b in zip(melody, melody[1:])),
        "held": min(last[0] + last[1], end) - last[0] >= bar // 2,
    }
    return {"notes": notes, "features": feats, "end_tick": end, "pickup_ticks": -first % bar}


def _est(notes) -> tuple[int, str] | None:
    return keys.estimate(ev.Note(s, p, e) for s, e, p in notes)


def _kname(k) -> str:
    return keys.name(tuple(k) if k else None)


def _scale(key: tuple[int, str]) -> set[int]:
    steps = [0, 2, 4, 5, 7, 9, 11] if key[1] == "major" else [0, 2, 3, 5, 7, 8, 10]
    return {(key[0] + s) % 12 for s in steps}


def add_chord(notes: list, key: tuple[int, str], interval: str) -> list:
    """The notes with the last note doubled a diatonic third (or sixth) below."""
    scale = _scale(key)
    last_start = max(s for s, _e, _p in notes)
    s, e, p = min((n for n in notes if n[0] == last_start), key=lambda n: n[2])
    spans = (3, 4) if interval == "third" else (8, 9)
    low = next(p - d for d in spans if (p - d) % 12 in scale)
    return sorted(notes + [(s, e, low)])


def build(
    tunes: list[TuneText], records: dict, count: int, seed: int, chords: int, exclude: frozenset[str] = frozenset()
) -> list[dict]:
    """`exclude`: tune ids (TuneText.id) never used, such as another set's."""
    rng = np.random.default_rng(seed)
    cands = []
    for t in tunes:
        if t.id in exclude:
            continue
        rec = records.get(t.id)
        if rec is None or (lab := label(rec)) is None:
            continue
        for n_bars in (1, 2, 3, 4):
            c = cut(rec, n_bars)
            if len(c["notes"]) < 3:
                continue
            c.update(tune=t, rec=rec, bars=n_bars, key=lab[0], label_source=lab[1], estimate=_est(c["notes"]))
            c["agrees"] = c["estimate"] == lab[0]
            c["draw"] = float(rng.random())
            cands.append(c)
    used: set[str] = set()
    seen = {f: 0 for f in FEATURES}
    bars_seen = {b: 0 for b in (1, 2, 3, 4)}
    chosen = []
    for i in range(count):
        target = SLOT_KEYS[i % 24]
        metre = METRES[(i % 24 + i // 24) % 3]
        best, best_score = None, -math.inf
        for c in cands:
            if c["tune"].id in used or c["key"][1] != target[1]:
                continue
            shift = (target[0] - c["key"][0] + 6) % 12 - 6
            pitches = [p for _s, _e, p in c["notes"]]
            if min(pitches) + shift < LOW or max(pitches) + shift > HIGH:
                continue
            score = 10.0 * c["agrees"] + 4.0 * (c["rec"]["metre"] == metre)
            score += sum(1.0 / (1 + seen[f]) for f in FEATURES if c["features"][f])
            score += 1.0 / (1 + bars_seen[c["bars"]]) - 0.05 * abs(shift) + 0.5 * c["draw"]
            if score > best_score:
                best, best_score = (c, shift), score
        if best is None:
            break
        c, shift = best
        used.add(c["tune"].id)
        bars_seen[c["bars"]] += 1
        for f in FEATURES:
            seen[f] += c["features"][f]
        chosen.append((c, shift))
    phrases = []
    n_chords = sum(c["features"]["chord"] for c, _ in chosen)
    order = sorted(range(len(chosen)), key=lambda j: (not chosen[j][0]["features"]["held"], chosen[j][0]["draw"]))
    to_double = [j for j in order if not chosen[j][0]["features"]["chord"]][: max(0, chords - n_chords)]
    for i, (c, shift) in enumerate(chosen):
        src: TuneText = c["tune"]
        key = ((c["key"][0] + shift) % 12, c["key"][1])
        notes = [(s, e, p + shift) for s, e, p in c["notes"]]
        feats = dict(c["features"])
        added = None
        if i in to_double:
            added = "third below" if to_double.index(i) % 2 == 0 else "sixth below"
            notes = add_chord(notes, key, added.split()[0])
            feats["chord"] = True
        est = _est(notes)
        name = keys.NAMES[key[0]].replace("#", "s")
        phrases.append(
            {
                "id": f"{i:03d}",
                "file": f"{i:03d}_{name}-{key[1]}_{c['rec']['metre'].replace('/', '-')}.mid",
                "source": {"corpus": src.corpus, "file": src.file, "number": src.number, "title": src.title},
                "bars": c["bars"],
                "key": keys.name(key),
                "tonic_pc": key[0],
                "mode": key[1],
                "metre": c["rec"]["metre"],
                "transposition": shift,
                "label_source": c["label_source"],
                "source_key": keys.name(c["key"]),
                "declared_key": _kname(c["rec"]["declared"]),
                "tune_estimate": _kname(c["rec"]["tune_estimate"]),
                "phrase_estimate": keys.name(est),
                "estimate_agrees": est == key,
                "features": feats,
                "chord_added": added,
                "pickup_ticks": c["pickup_ticks"],
                "end_tick": c["end_tick"],
                "notes": [list(n) for n in notes],
            }
        )
    return phrases


# -- files ------------------------------------------------------------------


def write_midi(path: Path, phrase: dict) -> Path:
    """The phrase as a type-0 MIDI file: 120 BPM, its time signature, bar lines where the tune has them."""
    num, den = (int(x) for x in phrase["metre"].split("/"))
    mid = mido.MidiFile(type=0, ticks_per_beat=FILE_TPQ)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("track_name", name=f"{phrase['id']} {phrase['source']['title']}"[:60], time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(TEMPO_BPM), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=num, denominator=den, time=0))
    scale = FILE_TPQ // TPQ
    evs = []
    for s, e, p in phrase["notes"]:
        evs.append((s, 1, mido.Message("note_on", note=p, velocity=VELOCITY)))
        evs.append((e, 0, mido.Message("note_off", note=p, velocity=0)))
    evs.sort(key=lambda x: (x[0], x[1], x[2].note))
    last = 0
    for tick, _o, msg in evs:
        track.append(msg.copy(time=(tick - last) * scale))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(str(path))
    return path


def write_list(path: Path, doc: dict) -> None:
    """The list as JSON, one phrase per line (readable diffs)."""
    head = {k: v for k, v in doc.items() if k != "phrases"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    lines.append('  "phrases": [')
    rows = [json.dumps(p, ensure_ascii=False) for p in doc["phrases"]]
    lines.append(",\n".join(f"    {r}" for r in rows))
    lines.append("  ]")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def summary(phrases: list[dict]) -> dict:
    out = {
        "phrases": len(phrases),
        "keys": len({(p["tonic_pc"], p["mode"]) for p in phrases}),
        "modes": {m: sum(p["mode"] == m for p in phrases) for m in ("major", "minor")},
        "metres": {m: sum(p["metre"] == m for p in phrases) for m in METRES},
        "bars": {str(b): sum(p["bars"] == b for p in phrases) for b in (1, 2, 3, 4)},
        "features": {f: sum(p["features"][f] for p in phrases) for f in FEATURES},
        "chord_added": sum(p["chord_added"] is not None for p in phrases),
        "transposed": sum(p["transposition"] != 0 for p in phrases),
        "estimate_agrees": sum(p["estimate_agrees"] for p in phrases),
        "corpora": {c: sum(p["source"]["corpus"] == c for p in phrases) for c in CORPORA},
    }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=72, help="phrases (72: three per key, every key in every metre)")
    ap.add_argument("--limit", type=int, default=None, help="a quick subset: this many phrases (overrides --count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chords", type=int, default=3, help="at least this many phrases with a chord (doubling)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/out/folk", help="folder for the MIDI files")
    ap.add_argument("--list", type=Path, default=ROOT / "bench/folk_phrases.json", help="the list (JSON)")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench/out/folk-cache.json", help="parsed tunes")
    ap.add_argument("--exclude", type=Path, action="append", default=[], help="a list whose tunes are not used")
    ap.add_argument(
        "--dev",
        action="store_true",
        help="the development set: --count 72 --seed 1 --exclude bench/folk_phrases.json, "
        "to bench/folk_phrases_dev.json and bench/out/folk-dev",
    )
    args = ap.parse_args(argv)
    if args.dev:
        args.count, args.seed = 72, 1
        args.exclude = [*args.exclude, ROOT / "bench/folk_phrases.json"]
        if args.list == ap.get_default("list"):
            args.list = ROOT / "bench/folk_phrases_dev.json"
        if args.out == ap.get_default("out"):
            args.out = ROOT / "bench/out/folk-dev"
    exclude = frozenset(tune_id(p["source"]) for e in args.exclude for p in json.loads(e.read_text())["phrases"])
    count = args.limit if args.limit is not None else args.count
    tunes = scan()
    order = np.random.default_rng(args.seed).permutation(len(tunes))
    tunes = [tunes[j] for j in order]
    needed: dict = {}  # (mode, metre): slots
    for i in range(count):
        cell = (SLOT_KEYS[i % 24][1], METRES[(i % 24 + i // 24) % 3])
        needed[cell] = needed.get(cell, 0) + 1

    def enough(records: dict) -> bool:  # a quick subset: a candidate tune for each slot's mode and metre
        cells: dict = {}
        for rec in records.values():
            if rec is not None and (lab := label(rec)) is not None:
                cells[(lab[0][1], rec["metre"])] = cells.get((lab[0][1], rec["metre"]), 0) + 1
        return all(cells.get(c, 0) >= n for c, n in needed.items())

    records = load_tunes(tunes, args.cache, enough if args.limit is not None else None)
    phrases = build(tunes, records, count, args.seed, args.chords if args.limit is None else 0, exclude)
    for p in phrases:
        guard(p["source"]["corpus"])
        write_midi(args.out / p["file"], p)
    doc = {
        "description": "openings of folk tunes (music21 corpora) for bench/answers.py; built by bench/folk_phrases.py",
        "seed": args.seed,
        "count": len(phrases),
        "corpora": list(CORPORA),
        "reserved_not_used": ["oneills1850", "essenFolksong"],
        "tunes_of_these_lists_not_used": [
            str(e.relative_to(ROOT) if e.is_relative_to(ROOT) else e) for e in args.exclude
        ],
        "ticks_per_quarter": TPQ,
        "tempo_bpm": TEMPO_BPM,
        "tunes_parsed": len(records),
        "summary": summary(phrases),
        "phrases": phrases,
    }
    args.list.parent.mkdir(parents=True, exist_ok=True)
    write_list(args.list, doc)
    print(json.dumps(doc["summary"]))
    print(f"{len(phrases)} phrases in {args.out}, listed in {args.list}")
    return 0 if len(phrases) == count else 1


if __name__ == "__main__":
    sys.exit(main())
