"""The folk-phrase evaluation set (bench/folk_phrases.py) and the answers' key and metre measures (bench/answers.py)."""

from __future__ import annotations

import json

import mido
import pytest

from bench import answers, folk_phrases
from cadenza.player import events as ev
from cadenza.player import keys


def _notes(pitches, length: int = 24, start: int = 0) -> list[ev.Note]:
    return [ev.Note(start + i * length, p, start + (i + 1) * length) for i, p in enumerate(pitches)]


# A C major scale and cadence, and an A harmonic minor one: their keys by Krumhansl–Schmuckler.
C_MAJOR = _notes([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60], 24) + _notes([48, 55, 60], 96, 11 * 24)
A_MINOR = _notes([57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57], 24) + _notes([45, 52, 57], 96, 11 * 24)


def test_hand_made_phrases_have_the_keys_they_are_made_in():
    assert keys.estimate(C_MAJOR) == (0, "major")
    assert keys.estimate(A_MINOR) == (9, "minor")


@pytest.mark.parametrize(
    "label, notes, category",
    [
        ((0, "major"), C_MAJOR, "exact"),
        ((9, "minor"), A_MINOR, "exact"),
        ((9, "minor"), C_MAJOR, "relative"),  # a minor phrase answered in its relative major: a mode miss
        ((0, "major"), A_MINOR, "relative"),
        ((0, "minor"), C_MAJOR, "parallel"),
        ((9, "major"), A_MINOR, "parallel"),
        ((2, "major"), C_MAJOR, "other"),
        ((7, "major"), C_MAJOR, "other"),  # the dominant: a tonic miss
        ((4, "minor"), A_MINOR, "other"),
        ((0, "major"), [], "other"),  # no notes: no key
    ],
)
def test_answer_category(label, notes, category):
    assert answers.answer_category(label, notes) == category


def test_classify_is_relative_both_ways_in_every_key():
    for t in range(12):
        assert answers.classify((t, "major"), ((t + 9) % 12, "minor")) == "relative"
        assert answers.classify(((t + 9) % 12, "minor"), (t, "major")) == "relative"
        assert answers.classify((t, "minor"), (t, "major")) == "parallel"
        assert answers.classify((t, "minor"), ((t + 3) % 12, "minor")) == "other"


def test_strong_beats():
    q = ev.TICKS_PER_BEAT
    # 4/4: beats 1 and 3; a chord's onset counts once
    assert answers.strong_share([0, 0, q, 2 * q, 3 * q], "4/4") == (2, 4)
    assert answers.strong_share([0, q, 2 * q, 3 * q], "4/4", offset=q) == (2, 4)
    assert answers.strong_share([0, q // 2], "4/4", offset=q // 2) == (0, 2)
    # 3/4: beat 1 only; 6/8: eighths 1 and 4
    assert answers.strong_share([0, q, 2 * q, 3 * q], "3/4") == (2, 4)
    assert answers.strong_share([k * q // 2 for k in range(6)], "6/8") == (2, 6)
    # eighths everywhere: any bar phase scores 2 of 8 eighths in 4/4, 2 of 6 in 6/8
    assert answers.any_phase_share([k * q // 2 for k in range(16)], "4/4") == pytest.approx(0.25)
    assert answers.any_phase_share([k * q // 2 for k in range(12)], "6/8") == pytest.approx(1 / 3)


def test_reserved_corpora_are_refused():
    for path in ("/x/music21/corpus/oneills1850/0001.abc", "corpus/essenFolksong/han1.abc", "ESSENFOLKSONG"):
        with pytest.raises(folk_phrases.ReservedCorpusError):
            folk_phrases.guard(path)
    with pytest.raises(folk_phrases.ReservedCorpusError):
        folk_phrases.corpus_paths("oneills1850")
    assert folk_phrases.guard("corpus/airdsAirs/book1.abc").name == "book1.abc"


@pytest.mark.parametrize("listing", ["folk_phrases.json", "folk_phrases_dev.json"])
def test_the_recorded_sets(listing):
    """The evaluation set and the development set: every key, both modes, the three metres, labels its own notes
    agree with."""
    doc = json.loads((folk_phrases.ROOT / "bench" / listing).read_text())
    phrases = doc["phrases"]
    assert 48 <= len(phrases) <= 96
    assert {(p["tonic_pc"], p["mode"]) for p in phrases} == {(t, m) for t in range(12) for m in ("major", "minor")}
    assert {p["metre"] for p in phrases} == set(folk_phrases.METRES)
    for f in folk_phrases.FEATURES:
        assert any(p["features"][f] for p in phrases), f
    for p in phrases:
        assert p["source"]["corpus"] in folk_phrases.CORPORA
        assert p["key"] == keys.name((p["tonic_pc"], p["mode"]))
        notes = [ev.Note(s, pitch, e) for s, e, pitch in p["notes"]]
        assert p["phrase_estimate"] == keys.name(keys.estimate(notes))
        assert 1 <= p["bars"] <= 4 and -6 <= p["transposition"] <= 5


def test_the_development_set_shares_no_tune_with_the_evaluation_set():
    """Settings are chosen on the development set, so that the evaluation set's figures are not tuned on."""
    sets = [
        json.loads((folk_phrases.ROOT / "bench" / n).read_text())
        for n in ("folk_phrases.json", "folk_phrases_dev.json")
    ]
    evaluation, development = ({folk_phrases.tune_id(p["source"]) for p in d["phrases"]} for d in sets)
    assert len(evaluation) == len(development) == 72
    assert not evaluation & development
    assert sets[1]["tunes_of_these_lists_not_used"] == ["bench/folk_phrases.json"]


@pytest.mark.slow
def test_build_a_small_set(tmp_path):
    pytest.importorskip("music21")
    out, listing = tmp_path / "folk", tmp_path / "folk.json"
    rc = folk_phrases.main(
        ["--limit", "4", "--out", str(out), "--list", str(listing), "--cache", str(tmp_path / "cache.json")]
    )
    assert rc == 0
    doc = json.loads(listing.read_text())
    assert len(doc["phrases"]) == 4 == len(list(out.glob("*.mid")))
    assert {p["mode"] for p in doc["phrases"]} == {"major", "minor"}
    for p in doc["phrases"]:
        assert p["source"]["corpus"] in folk_phrases.CORPORA
        for name in folk_phrases.RESERVED:
            assert name not in json.dumps(p["source"]).lower()
        mid = mido.MidiFile(str(out / p["file"]))
        assert mid.type == 0 and len(mid.tracks) == 1
        metas = {m.type: m for m in mid.tracks[0] if m.is_meta}
        assert metas["set_tempo"].tempo == mido.bpm2tempo(120)
        ts = metas["time_signature"]
        assert f"{ts.numerator}/{ts.denominator}" == p["metre"]
        notes = answers.midi_notes(mid, 0)
        assert sorted([n.start, n.end, n.pitch] for n in notes) == sorted(p["notes"])
        # the label is recorded with what its own notes say, and (the quick subset) they agree
        assert p["phrase_estimate"] == keys.name(keys.estimate(notes)) == p["key"]
        assert p["declared_key"] != "-" and p["label_source"] in ("declared", "analysis")
        first = min(n.start for n in notes)
        assert p["features"]["anacrusis"] == (first % answers.BAR_TICKS[p["metre"]] != 0)
