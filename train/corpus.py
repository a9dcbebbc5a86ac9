"""Training pieces as token arrays: the built-in Bach chorales or a folder of MIDI files.

    pieces = load_corpus("bach")                  # parsed once, then read from the cache
    pieces = load_corpus("folk")                  # music21's ABC folk tunes (see FOLK_CORPORA)
    pieces = load_corpus("~/midi/jazz")           # every .mid/.midi below the folder
    pieces = load_corpus("~/sessions")            # the player's recordings: the keyboard's part (sessions.py)
    train, val, test = split_pieces(pieces)       # by piece, never by window
    windows_source = augment(train)               # 12 transpositions of each training piece

A bad file is skipped with one warning naming it; a corpus with no usable
piece raises CorpusError (the CLI turns it into exit code 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from cadenza.player import events

log = logging.getLogger(__name__)

# Bump when the way chorales become notes changes, so old caches are not reused.
CACHE_VERSION = "bach-v2"
MIDI_SUFFIXES = (".mid", ".midi")
# Score formats among music21's Bach files; the .rntxt files are harmonic analyses, not music.
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
# In music21's Bach folder but not a chorale (the C major prelude of the Well-Tempered Clavier).
NOT_CHORALES = frozenset({"bwv846"})
NEAR_COPY = 0.9  # Jaccard similarity of (onset, interval) sets above which two pieces are one
POOL_MIN_FILES = 16  # below this a process pool costs more than it saves


class CorpusError(ValueError):
    """No usable training data (or too little to split)."""


@dataclasses.dataclass(frozen=True)
class Piece:
    name: str  # unique within a corpus: a chorale's file name or a path relative to the folder
    tokens: np.ndarray  # int32 [T], begins with events.START


# -- loading ----------------------------------------------------------------


def load_corpus(
    spec: str,
    cache_dir: Path | None = None,
    limit: int | None = None,
    workers: int = 2,
    session_part: str = "in",
) -> list[Piece]:
    """The pieces of `spec`: "bach", a folder of MIDI files (recursive) or one MIDI file.

    Sorted by name, duplicates removed: a piece equal to an earlier one, or a
    near copy of it, in any transposition, is dropped (so neither a second
    version nor augmentation can carry a piece across splits).
    `limit` keeps the first N files (for quick runs and tests). A session the
    player recorded gives its `session_part` (train/sessions.py). The chorales are
    parsed once with `workers` processes and cached in `cache_dir` (default
    `default_cache_dir()`).
    """
    if spec == "bach":
        pieces = _load_bach(Path(cache_dir) if cache_dir else default_cache_dir(), limit, workers)
        where = "the music21 Bach chorales"
    elif spec == "folk":
        pieces = _load_folk(Path(cache_dir) if cache_dir else default_cache_dir(), limit, workers)
        where = "the music21 folk tunes"
    else:
        root = Path(spec).expanduser()
        pieces = _load_midi(root, limit, session_part)
        where = str(root)
    log.info("corpus %s: %d pieces, %d tokens", where, len(pieces), sum(len(p.tokens) for p in pieces))
    return pieces


def default_cache_dir() -> Path:
    """$CADENZA_CACHE, else $XDG_CACHE_HOME/cadenza, else ~/.cache/cadenza."""
    if os.environ.get("CADENZA_CACHE"):
        return Path(os.environ["CADENZA_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cadenza"


def has_notes(tokens: np.ndarray) -> bool:
    t = np.asarray(tokens)
    return bool(np.any(events.is_note_on(t)))


def _load_midi(root: Path, limit: int | None, session_part: str = "in") -> list[Piece]:
    if root.is_file():
        files = [root]
        names = [root.name]
    elif root.is_dir():
        files = _midi_files(root)
        names = [f.relative_to(root).as_posix() for f in files]
    else:
        raise CorpusError(f"no usable MIDI file in {root}: it does not exist")
    if not files:
        raise CorpusError(f"no usable MIDI file in {root} (no .mid or .midi files)")
    if limit is not None:
        files, names = files[:limit], names[:limit]

    pieces, skipped = [], 0
    for path, name in zip(files, names):
        tokens, reason = _encode_file(path, session_part)
        if tokens is None:
            log.warning("skipping %s: %s", path, reason)
            skipped += 1
        else:
            pieces.append(Piece(name, tokens))
    pieces = _deduplicate(pieces)
    if not pieces:
        raise CorpusError(f"no usable MIDI file in {root} ({skipped} skipped)")
    return pieces


def _midi_files(root: Path) -> list[Path]:
    """Every .mid/.midi file below root (any case), sorted by path; symlinked folders are not followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found += [Path(dirpath) / f for f in filenames if f.lower().endswith(MIDI_SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _encode_file(path: Path, session_part: str = "in") -> tuple[np.ndarray | None, str]:
    """(tokens, "") or (None, why the file is unusable). A recorded session gives its `session_part`."""
    from . import sessions

    try:
        mid = events.read_midi(path)
        if sessions.is_session(mid):
            tokens = sessions.session_tokens(mid, session_part, name=str(path))
        else:
            tokens = events.encode_midi(mid)
    except events.MidiFileError as exc:
        reason = str(exc).removeprefix(f"{path}: ")
        cause = exc.__context__
        if reason.endswith("()") and cause is not None:  # mido's EOFError on a truncated file has no text
            what = "truncated" if isinstance(cause, EOFError) else type(cause).__name__
            reason = f"{reason[:-2]}({what})"
        return None, reason
    except Exception as exc:  # a readable file with content the codec rejects
        return None, f"cannot encode ({exc or type(exc).__name__})"
    if not has_notes(tokens):
        return None, "no notes"
    return tokens, ""


def _deduplicate(pieces: Iterable[Piece]) -> list[Piece]:
    """Drop pieces that repeat an earlier one (by name), in any transposition.

    A repeat is either the same tokens or a near copy: an alternate version of
    one harmonization shares almost all its (onset, interval) pairs. Such pieces
    in two splits would let the test set be learnt by heart.
    """
    kept: list[Piece] = []
    exact: dict[bytes, str] = {}
    onsets: list[np.ndarray] = []
    sizes: list[int] = []
    for piece in sorted(pieces, key=lambda p: p.name):
        key = _transposition_free(piece.tokens).tobytes()
        if key in exact:
            log.info("dropping %s: same notes as %s", piece.name, exact[key])
            continue
        mine = _onsets(piece.tokens)
        # Jaccard >= NEAR_COPY needs sizes within that ratio: compare only those
        size = np.asarray(sizes)
        close = np.nonzero((size >= NEAR_COPY * mine.size) & (NEAR_COPY * size <= mine.size))[0]
        twin = next((i for i in close if mine.size and _jaccard(mine, onsets[i]) >= NEAR_COPY), None)
        if twin is not None:
            log.info("dropping %s: a near copy of %s", piece.name, kept[twin].name)
            continue
        exact[key] = piece.name
        kept.append(piece)
        onsets.append(mine)
        sizes.append(mine.size)
    return kept


def _transposition_free(tokens: np.ndarray) -> np.ndarray:
    """The tokens moved so that the lowest note is the keyboard's lowest key (never folds)."""
    t = np.asarray(tokens)
    ons = t[events.is_note_on(t)]
    if ons.size == 0:
        return t
    return events.transpose(t, -int(ons.min() - events.NOTE_ON_BASE))


def _onsets(tokens: np.ndarray) -> np.ndarray:
    """Sorted unique (onset tick, pitch above the lowest note) pairs, packed as int64."""
    t = np.asarray(tokens, dtype=np.int64)
    tick = np.cumsum(np.where(events.is_shift(t), events.shift_ticks(t), 0))
    is_on = events.is_note_on(t)
    pitch = t[is_on] - events.NOTE_ON_BASE
    if pitch.size == 0:
        return pitch
    return np.unique(tick[is_on] * events.N_PITCHES + pitch - pitch.min())


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    both = np.intersect1d(a, b, assume_unique=True).size
    return both / (a.size + b.size - both)


# -- the Bach chorales ------------------------------------------------------


def _load_bach(cache_dir: Path, limit: int | None, workers: int) -> list[Piece]:
    import music21  # heavy; only the chorale loader needs it

    def listing() -> list[tuple[str, str, str]]:
        paths = _chorale_paths()
        return [(p.name, str(p), str(p)) for p in (paths if limit is None else paths[:limit])]

    cache = cache_dir / _cache_name(music21.__version__, limit)
    return _cached_pieces(cache, "Bach chorales", listing, None, workers)


def _cached_pieces(
    cache: Path,
    what: str,
    listing: Callable[[], list[tuple[str, str, str]]],
    parse: Callable[[str], tuple[np.ndarray | None, str]] | None,
    workers: int,
) -> list[Piece]:
    """The pieces cached in `cache`; else listing()'s (name, source, where) each parsed with parse(source)
    (None: _parse_chorale), a warning naming `where` for each that fails, duplicates dropped, then cached."""
    if cache.exists():
        t0 = time.perf_counter()
        try:
            pieces = _read_cache(cache)
        except Exception as exc:  # a truncated or foreign file: parse again and overwrite it
            log.warning("ignoring unreadable cache %s: %s", cache, exc)
        else:
            log.info("read %d %s from %s in %.2f s", len(pieces), what, cache, time.perf_counter() - t0)
            return pieces
    items = listing()
    t0 = time.perf_counter()
    log.info("parsing %d %s with music21 (once; cached in %s)", len(items), what, cache.parent)
    results = _parse_all([source for _, source, _ in items], workers, parse)
    pieces, skipped = [], 0
    for (name, _, where), (tokens, reason) in zip(items, results):
        if tokens is None:
            log.warning("skipping %s: %s", where, reason)
            skipped += 1
        else:
            pieces.append(Piece(name, tokens))
    n_parsed = len(pieces)
    pieces = _deduplicate(pieces)
    log.info(
        "parsed %d %s in %.1f s: %d skipped, %d duplicates dropped",
        n_parsed,
        what,
        time.perf_counter() - t0,
        skipped,
        n_parsed - len(pieces),
    )
    if not pieces:
        raise CorpusError(f"no usable piece among music21's {what} ({skipped} skipped)")
    _write_cache(cache, pieces)
    return pieces


def _cache_name(music21_version: str, limit: int | None, version: str = CACHE_VERSION) -> str:
    # The codec's layout is part of the key: new vocabulary, new cache.
    codec = hashlib.sha1(json.dumps(events.layout(), sort_keys=True).encode()).hexdigest()[:8]
    suffix = "" if limit is None else f"-first{limit}"
    return f"{version}-music21-{music21_version}-codec-{codec}{suffix}.npz"


def _chorale_paths() -> list[Path]:
    """The chorale files of music21's Bach corpus, one per chorale, sorted by name."""
    from music21 import corpus

    paths = [Path(p) for p in corpus.getComposer("bach")]
    paths = [p for p in paths if p.suffix.lower() in SCORE_SUFFIXES and p.name.split(".")[0] not in NOT_CHORALES]
    # A few chorales come both as MusicXML and as Humdrum: keep the MusicXML one.
    xml_stems = {p.stem for p in paths if p.suffix.lower() != ".krn"}
    paths = [p for p in paths if not (p.suffix.lower() == ".krn" and p.stem in xml_stems)]
    return sorted(paths, key=lambda p: p.name)


def _parse_all(paths: list[str], workers: int, parse=None) -> list[tuple[np.ndarray | None, str]]:
    """parse (default _parse_chorale) over the items, in a process pool when there are enough."""
    parse = parse or _parse_chorale
    if workers <= 1 or len(paths) < POOL_MIN_FILES:
        return [parse(p) for p in paths]
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # fork is quick and needs no importable __main__, but must not copy TensorFlow's threads
    threads = "tensorflow" in sys.modules or "fork" not in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("spawn" if threads else "fork")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            return list(pool.map(parse, paths, chunksize=8))
    except BrokenProcessPool as exc:  # e.g. spawn from a script without a __main__ guard
        log.warning("parsing in one process: the process pool failed (%s)", exc)
        return [parse(p) for p in paths]


def _parse_chorale(path: str) -> tuple[np.ndarray | None, str]:
    """(tokens, "") of one chorale file, or (None, reason); never raises."""
    try:
        from music21 import converter

        score = converter.parse(path, forceSource=True)
        tokens = events.encode_notes(score_notes(score))
    except Exception as exc:  # music21 raises many kinds on files it cannot read
        return None, f"music21 cannot read it ({exc or type(exc).__name__})"
    if not has_notes(tokens):
        return None, "no notes"
    return tokens, ""


def score_notes(score, skip: type | None = None) -> list[events.Note]:
    """The notes of a music21 score on our tick grid, tied notes merged into one.

    Offsets are quarter lengths, so a tick is 1/24 of one; tempo marks are
    ignored (tempo is a playback setting). Grace notes (no duration) are
    dropped; a chord gives one note per pitch. Repeats are not expanded.
    """
    out = []
    for n in score.stripTies().flatten().notes:
        ql = Fraction(n.quarterLength)
        if ql <= 0 or (skip is not None and isinstance(n, skip)):
            continue
        start = round(Fraction(n.offset) * events.TICKS_PER_BEAT)
        end = max(round((Fraction(n.offset) + ql) * events.TICKS_PER_BEAT), start + 1)
        vel = n.volume.velocity or events.DEFAULT_VELOCITY
        for p in getattr(n, "pitches", ()):
            out.append(events.Note(start, int(p.midi), end, int(vel)))
    return sorted(out)


# -- the folk tunes ---------------------------------------------------------

FOLK_CACHE_VERSION = "folk-v1"
# music21's ABC collections of folk tunes that are training material. Two more, oneills1850 and
# essenFolksong, are kept for independent evaluation and never read here.
FOLK_CORPORA = ("airdsAirs", "ryansMammoth", "miscFolk")
FOLK_RESERVED = ("oneills1850", "essenfolksong")
# The tunes whose openings are the evaluation phrases of bench/folk_phrases.py: never trained on.
FOLK_HELDOUT = Path(__file__).with_name("folk_heldout.json")


def folk_heldout() -> frozenset[str]:
    return frozenset(json.loads(FOLK_HELDOUT.read_text())["tunes"])


def folk_tunes() -> list[tuple[str, str]]:
    """(name, ABC text) of every tune of FOLK_CORPORA but the held-out ones; name is corpus/file#X."""
    import re

    from music21 import corpus

    held = folk_heldout()
    out = []
    for name in FOLK_CORPORA:
        for path in sorted(Path(p) for p in corpus.getComposer(name)):
            if any(r in str(path).lower() for r in FOLK_RESERVED):
                raise CorpusError(f"{path}: a corpus reserved for independent evaluation")
            text = path.read_text(encoding="utf-8", errors="replace")
            for chunk in re.split(r"(?m)^(?=X:)", text):
                if not chunk.startswith("X:"):
                    continue
                number = re.match(r"X:\s*(\S*)", chunk)
                tune = f"{name}/{path.name}#{number.group(1) if number else '?'}"
                if tune not in held:
                    out.append((tune, chunk.strip() + "\n"))
    return out


def _load_folk(cache_dir: Path, limit: int | None, workers: int) -> list[Piece]:
    import music21

    tunes = folk_tunes()
    if limit is not None:
        tunes = tunes[:limit]
    digest = hashlib.sha1("\n".join(name for name, _ in tunes).encode()).hexdigest()[:8]
    cache = cache_dir / _cache_name(music21.__version__, limit, version=f"{FOLK_CACHE_VERSION}-{digest}")
    return _cached_pieces(cache, "folk tunes", lambda: [(n, text, n) for n, text in tunes], _parse_abc, workers)


def _parse_abc(text: str) -> tuple[np.ndarray | None, str]:
    """(tokens, "") of one ABC tune, or (None, reason); never raises. Chord symbols are not notes."""
    try:
        from music21 import converter, harmony

        score = converter.parse(text, format="abc")
        tokens = events.encode_notes(score_notes(score, skip=harmony.Harmony))
    except Exception as exc:  # music21 raises many kinds on text it cannot read
        return None, f"music21 cannot read it ({exc or type(exc).__name__})"
    if not has_notes(tokens):
        return None, "no notes"
    return tokens, ""


def _write_cache(path: Path, pieces: Sequence[Piece]) -> None:
    """One .npz: names, offsets into one concatenated token array. Written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(p.tokens) for p in pieces], dtype=np.int64)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            names=np.array([p.name for p in pieces]),
            offsets=np.concatenate([[0], np.cumsum(lengths)]),
            tokens=np.concatenate([p.tokens for p in pieces]).astype(np.int32),
        )
    os.replace(tmp, path)
    log.info("cached %d pieces in %s", len(pieces), path)


def _read_cache(path: Path) -> list[Piece]:
    with np.load(path, allow_pickle=False) as z:
        names, offsets, tokens = z["names"], z["offsets"], z["tokens"]
    return [Piece(str(n), tokens[a:b]) for n, a, b in zip(names, offsets[:-1], offsets[1:])]


# -- splitting and augmentation ---------------------------------------------


def split_pieces(
    pieces: Sequence[Piece],
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 1234,
) -> tuple[list[Piece], list[Piece], list[Piece]]:
    """(train, val, test) by piece: sorted by name, then a seeded permutation.

    Each split gets at least one piece; each comes back sorted by name.
    """
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"val_frac and test_frac must be in (0, 1) with a sum below 1, got {val_frac} and {test_frac}")
    n = len(pieces)
    if n < 3:
        raise CorpusError(f"at least 3 pieces are needed to split into train, val and test; the corpus has {n}")
    ordered = sorted(pieces, key=lambda p: p.name)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(1, round(n * test_frac)), n - 2)
    n_val = min(max(1, round(n * val_frac)), n - n_test - 1)
    test = [ordered[i] for i in perm[:n_test]]
    val = [ordered[i] for i in perm[n_test : n_test + n_val]]
    train = [ordered[i] for i in perm[n_test + n_val :]]
    by_name = lambda ps: sorted(ps, key=lambda p: p.name)  # noqa: E731
    return by_name(train), by_name(val), by_name(test)


def augment(
    pieces: Iterable[Piece | np.ndarray],
    transpositions: Iterable[int] = range(-5, 7),
) -> list[np.ndarray]:
    """Each piece in each transposition (semitones; 0 is the original), piece by piece.

    Notes pushed off the keyboard fold back by octaves. Apply to training pieces only.
    """
    shifts = list(transpositions)
    return [events.transpose(getattr(p, "tokens", p), s) for p in pieces for s in shifts]


def splits_for(cfg, cache_dir: Path | None = None) -> tuple[list[Piece], list[Piece], list[Piece]]:
    """(train, val, test) of a training config: the one place the trainer and converter split."""
    pieces = load_corpus(cfg.corpus, cache_dir=cache_dir, session_part=cfg.session_part)
    if cfg.corpus_limit:
        pieces = pieces[: cfg.corpus_limit]
    train, val, test = split_pieces(pieces, val_frac=cfg.val_frac, test_frac=cfg.test_frac, seed=cfg.split_seed)
    if cfg.key_input:  # KEY tokens that set the key input (fit draws the training pieces' anew every epoch)
        train, val, test = ([with_key_tokens(p, cfg.seed, key_input=True) for p in part] for part in (train, val, test))
    elif cfg.key_tokens:
        if cfg.key_shift and not cfg.key_shift_bars:  # (with key_shift_bars, fit draws the moves every epoch)
            train = [shifted(p, cfg.key_shift, cfg.seed) for p in train]  # training pieces only
        train, val, test = ([with_key_tokens(p, cfg.seed) for p in part] for part in (train, val, test))
    return train, val, test


def _piece_rng(name: str, seed: int, salt: int | None = None) -> np.random.Generator:
    """A generator fixed by a piece's name and the run's seed (and a salt, one per use)."""
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, h] if salt is None else [seed, salt, h])


def shifted(piece: Piece, share: float, seed: int = 0) -> Piece:
    """With probability `share` (fixed per name and seed), the piece with its continuation in another key."""
    from cadenza.player import conditioning

    rng = _piece_rng(piece.name, seed, salt=1)
    if rng.random() >= share:
        return piece
    return Piece(piece.name, conditioning.shift_continuation(piece.tokens, rng))


def reshifted(tokens: np.ndarray, share: float, mean_bars: float, rng: np.random.Generator) -> np.ndarray:
    """A training piece with KEY tokens, drawn anew: with probability `share` moved to new keys at random bar
    lines (conditioning.shift_segments), then its KEY tokens placed again. For one epoch of fit."""
    from cadenza.player import conditioning

    music = conditioning.strip(tokens)
    if rng.random() < share:
        music = conditioning.shift_segments(music, rng, mean_bars)
    return conditioning.insert(music, rng)


def rekeyed(
    tokens: np.ndarray, share: float, mean_bars: float, none: float, rng: np.random.Generator, modes: float = 0.0
) -> np.ndarray:
    """A training piece for a key input model, drawn anew for one epoch of fit: with probability `share` moved
    to new keys at random bar lines (one in `mean_bars`, or 4 when 0; a share `modes` of them to the parallel
    mode instead), then KEY tokens at every bar line and after START; with probability `none` no KEY token at
    all (the model is told no key)."""
    from cadenza.player import conditioning

    music = conditioning.strip(tokens)
    if share and rng.random() < share:
        music = conditioning.shift_segments(music, rng, mean_bars or 4.0, modes=modes)
    if rng.random() < none:
        return music
    return conditioning.insert(music, rng, dropout=0.0, lead=True)


def with_key_tokens(piece: Piece, seed: int = 0, key_input: bool = False) -> Piece:
    """The piece with KEY tokens (player/conditioning.py), placed the same way on every run for a name and seed
    (for a key input model: at every bar line, none dropped, and one after START)."""
    from cadenza.player import conditioning

    rng = _piece_rng(piece.name, seed)
    if key_input:
        return Piece(piece.name, conditioning.insert(piece.tokens, rng, dropout=0.0, lead=True))
    return Piece(piece.name, conditioning.insert(piece.tokens, rng))
