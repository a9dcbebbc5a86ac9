"""Loading training pieces: folders of MIDI files, bad files, splits, the Bach cache."""

from __future__ import annotations

import logging
from pathlib import Path

import mido
import numpy as np
import pytest

from cadenza.player import events as ev
from cadenza.train import corpus
from cadenza.train.corpus import CorpusError, Piece, augment, load_corpus, split_pieces


def write_midi(path: Path, notes: list[tuple[int, int, int]], ticks_per_beat: int = 480) -> Path:
    """A type-1 MIDI file of (start, pitch, length) notes, times in our ticks (24 per quarter)."""
    scale = ticks_per_beat // ev.TICKS_PER_BEAT
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    evs = []
    for start, pitch, length in notes:
        evs.append((start * scale, 1, mido.Message("note_on", note=pitch, velocity=80)))
        evs.append(((start + length) * scale, 0, mido.Message("note_off", note=pitch)))
    last = 0
    for t, _, m in sorted(evs, key=lambda e: (e[0], e[1])):
        track.append(m.copy(time=t - last))
        last = t
    path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(path)
    return path


def melody(root: int, steps=(0, 2, 4, 5, 7, 5, 4, 2, 0), length: int = 12) -> list[tuple[int, int, int]]:
    return [(i * length, root + s, length) for i, s in enumerate(steps)]


def good(path: Path, root: int = 60, tune: int = 0) -> Path:
    """A short melody; different tunes are different pieces, different roots the same one transposed."""
    steps = (0, 2, 4, 5, 7, 5, 4, 2, 0)
    return write_midi(path, melody(root, steps=steps[: len(steps) - tune]))


def not_midi(path: Path) -> Path:
    path.write_text("these are not the notes you are looking for\n")
    return path


def truncated(path: Path) -> Path:
    good(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt(path: Path) -> Path:
    good(path)
    data = bytearray(path.read_bytes())
    data[14:18] = b"XXXX"  # the first track's chunk id
    path.write_bytes(bytes(data))
    return path


def no_notes(path: Path) -> Path:
    mid = mido.MidiFile(type=1)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000), mido.Message("program_change", program=5)])
    mid.tracks.append(track)
    mid.save(path)
    return path


BAD = {"not_midi": not_midi, "truncated": truncated, "corrupt": corrupt, "no_notes": no_notes}


def warnings_of(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- folders ----------------------------------------------------------------


def test_folder_is_read_recursively_sorted_any_case(tmp_path):
    good(tmp_path / "b.mid", tune=0)
    good(tmp_path / "sub" / "A.MIDI", tune=1)
    good(tmp_path / "sub" / "deeper" / "c.Mid", tune=2)
    good(tmp_path / "a.mid", tune=3)
    (tmp_path / "readme.txt").write_text("not a piece")
    pieces = load_corpus(str(tmp_path))
    assert [p.name for p in pieces] == ["a.mid", "b.mid", "sub/A.MIDI", "sub/deeper/c.Mid"]
    for p in pieces:
        assert p.tokens.dtype == np.int32 and p.tokens[0] == ev.START
        np.testing.assert_array_equal(p.tokens, ev.encode_midi(tmp_path / p.name))


def test_single_file_is_a_corpus(tmp_path):
    path = good(tmp_path / "one.mid")
    [piece] = load_corpus(str(path))
    assert piece.name == "one.mid"
    np.testing.assert_array_equal(piece.tokens, ev.encode_midi(path))


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_file_is_skipped_with_one_warning(tmp_path, caplog, kind):
    good(tmp_path / "fine.mid")
    bad = BAD[kind](tmp_path / f"bad_{kind}.mid")
    with caplog.at_level(logging.INFO, logger="cadenza.train.corpus"):
        pieces = load_corpus(str(tmp_path))
    assert [p.name for p in pieces] == ["fine.mid"]
    [warning] = warnings_of(caplog)
    assert str(bad) in warning.getMessage() and warning.getMessage().startswith("skipping ")
    assert warning.exc_info is None and "\n" not in warning.getMessage()


def test_all_bad_raises_one_line(tmp_path, caplog):
    for kind, make in BAD.items():
        make(tmp_path / f"{kind}.mid")
    with caplog.at_level(logging.WARNING, logger="cadenza.train.corpus"), pytest.raises(CorpusError) as err:
        load_corpus(str(tmp_path))
    assert str(err.value) == f"no usable MIDI file in {tmp_path} (4 skipped)"
    assert len(warnings_of(caplog)) == 4


def test_empty_folder_raises(tmp_path):
    (tmp_path / "notes.txt").write_text("no MIDI here")
    with pytest.raises(CorpusError, match="no usable MIDI file in .*no .mid or .midi files"):
        load_corpus(str(tmp_path))


def test_missing_folder_raises(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(str(tmp_path / "nowhere"))
    assert issubclass(CorpusError, ValueError)


def test_bad_single_file_raises(tmp_path):
    with pytest.raises(CorpusError, match=r"\(1 skipped\)"):
        load_corpus(str(not_midi(tmp_path / "x.mid")))


def test_duplicates_and_transposed_copies_are_dropped(tmp_path, caplog):
    good(tmp_path / "a.mid", 60)
    good(tmp_path / "b.mid", 60)  # the same
    good(tmp_path / "c.mid", 67)  # the same, a fifth higher
    write_midi(tmp_path / "d.mid", melody(60, steps=(0, 4, 7, 12, 7, 4, 0)))
    with caplog.at_level(logging.INFO, logger="cadenza.train.corpus"):
        pieces = load_corpus(str(tmp_path))
    assert [p.name for p in pieces] == ["a.mid", "d.mid"]
    assert not warnings_of(caplog)


def test_near_copies_are_dropped(tmp_path):
    steps = tuple(range(0, 24, 2)) * 2
    write_midi(tmp_path / "a.mid", melody(48, steps=steps))
    other = melody(48, steps=steps)
    other[-1] = (other[-1][0], other[-1][1] + 1, other[-1][2])  # one note of 24 differs
    write_midi(tmp_path / "b.mid", other)
    assert [p.name for p in load_corpus(str(tmp_path))] == ["a.mid"]


# -- splits and augmentation -------------------------------------------------


def pieces_of(n: int) -> list[Piece]:
    return [Piece(f"p{i:03d}", np.array([ev.START, ev.note_on(40 + i % 40)], np.int32)) for i in range(n)]


@pytest.mark.parametrize("n", [3, 4, 10, 57, 400])
def test_split_is_by_piece_disjoint_complete_and_non_empty(n):
    pieces = pieces_of(n)
    train, val, test = split_pieces(pieces)
    names = [{p.name for p in s} for s in (train, val, test)]
    assert all(names), "every split has a piece"
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    assert names[0] | names[1] | names[2] == {p.name for p in pieces}
    if n >= 57:
        assert abs(len(val) - 0.1 * n) <= 1 and abs(len(test) - 0.1 * n) <= 1


def test_split_is_deterministic_and_order_free():
    pieces = pieces_of(50)
    a = split_pieces(pieces, seed=7)
    b = split_pieces(list(reversed(pieces)), seed=7)
    assert [[p.name for p in s] for s in a] == [[p.name for p in s] for s in b]
    c = split_pieces(pieces, seed=8)
    assert [p.name for p in a[2]] != [p.name for p in c[2]]


def test_split_needs_three_pieces():
    with pytest.raises(CorpusError, match="at least 3 pieces"):
        split_pieces(pieces_of(2))
    with pytest.raises(ValueError):
        split_pieces(pieces_of(10), val_frac=0.6, test_frac=0.5)


def test_augment_transposes_each_piece_twelve_ways():
    piece = Piece("x", ev.encode_notes([ev.Note(0, 60, 12), ev.Note(12, 107, 24)]))
    out = augment([piece])
    assert len(out) == 12
    np.testing.assert_array_equal(out[5], piece.tokens)  # range(-5, 7): the sixth is 0
    for semis, tokens in zip(range(-5, 7), out):
        want = [ev.fold_pitch(60 + semis), ev.fold_pitch(107 + semis)]
        assert [n.pitch for n in ev.decode_notes(tokens)] == want
    assert len(augment([piece, piece.tokens], transpositions=[0, 2])) == 4


# -- the Bach chorales -------------------------------------------------------


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CADENZA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus.default_cache_dir() == tmp_path / "xdg" / "cadenza"
    monkeypatch.setenv("CADENZA_CACHE", str(tmp_path / "mine"))
    assert corpus.default_cache_dir() == tmp_path / "mine"


def test_score_notes_merges_ties():
    music21 = pytest.importorskip("music21")
    part = music21.stream.Part()
    a = music21.note.Note("C4", quarterLength=2.0)
    b = music21.note.Note("C4", quarterLength=1.0)
    a.tie, b.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
    part.append([a, b, music21.chord.Chord(["E4", "G4"], quarterLength=0.5)])
    score = music21.stream.Score([part])
    notes = corpus.score_notes(score)
    assert [(n.start, n.pitch, n.end) for n in notes] == [(0, 60, 72), (72, 64, 84), (72, 67, 84)]


def test_bach_is_parsed_once_then_read_from_cache(tmp_path, monkeypatch, caplog):
    pytest.importorskip("music21")
    first = load_corpus("bach", cache_dir=tmp_path, limit=3)
    assert len(first) == 3 and all(p.tokens[0] == ev.START and corpus.has_notes(p.tokens) for p in first)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def no_parsing(path):
        raise AssertionError("parsed again instead of reading the cache")

    monkeypatch.setattr(corpus, "_parse_chorale", no_parsing)
    again = load_corpus("bach", cache_dir=tmp_path, limit=3)
    assert [p.name for p in again] == [p.name for p in first]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.tokens, b.tokens)


def test_bach_skips_an_unreadable_chorale(tmp_path, monkeypatch, caplog):
    pytest.importorskip("music21")
    real = corpus._parse_chorale
    broken = corpus._chorale_paths()[1]
    monkeypatch.setattr(corpus, "_parse_chorale", lambda p: (None, "broken") if p == str(broken) else real(p))
    with caplog.at_level(logging.WARNING, logger="cadenza.train.corpus"):
        pieces = load_corpus("bach", cache_dir=tmp_path, limit=3)
    assert len(pieces) == 2 and broken.name not in [p.name for p in pieces]
    [warning] = warnings_of(caplog)
    assert warning.getMessage() == f"skipping {broken}: broken"


def test_folk_corpus_leaves_out_the_evaluation_tunes_and_the_reserved_corpora():
    import json

    listed = json.loads((Path(__file__).parent.parent / "bench" / "folk_phrases.json").read_text())
    evaluation = {f"{p['source']['corpus']}/{p['source']['file']}#{p['source']['number']}" for p in listed["phrases"]}
    assert corpus.folk_heldout() == evaluation
    tunes = corpus.folk_tunes()
    names = [name for name, _ in tunes]
    assert len(names) == len(set(names)) > 2000
    assert not evaluation & set(names)
    assert {n.split("/")[0] for n in names} == set(corpus.FOLK_CORPORA)
    assert not any(r in n.lower() for n in names for r in corpus.FOLK_RESERVED)


def test_an_abc_tune_becomes_notes_without_its_chord_symbols():
    tune = 'X:1\nT:t\nM:3/4\nL:1/8\nK:D\n"D"d2 f2 a2|"A"g2 e2 c2|"D"d6|]\n'
    tokens, why = corpus._parse_abc(tune)
    assert why == "" and tokens is not None
    ons = tokens[ev.is_note_on(tokens)] - ev.NOTE_ON_BASE + ev.LOW_PITCH
    assert list(ons) == [74, 78, 81, 79, 76, 73, 74]  # the melody only: no chord tones of "D" or "A"
    assert corpus._parse_abc("X:1\nK:C\n")[0] is None
