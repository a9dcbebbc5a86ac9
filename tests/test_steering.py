"""Modes and phrase ends: call-response and duet transitions on a simulated clock."""

from __future__ import annotations

from cadenza.player import events as ev
from support.fakes import ScriptModel
from support.rig import ANSWER, MELODY, SPT, cc, off, on, phrase, rig


def model_notes(sink, t0=10.0):
    return [(round((t - t0) / SPT, 3), m.type, m.note) for t, m in sink.sent if m.note in (67, 69)]


def test_answer_starts_exactly_when_the_gap_ends_and_lasts_answer_bars():
    sch, sink = rig(ScriptModel([ev.shift(5)] + ANSWER), mode="call-response", events=phrase(), phrase_gap=1.0)
    sch.begin()
    sch.run(until=10.0 + 300 * SPT)
    notes = model_notes(sink)
    # last note-off at tick 68, gap 1 beat: the answer's first note is at 92, with no leading SHIFT
    assert notes[0] == (92, "note_on", 67)
    assert notes[-1][0] == 92 + 96  # one 4/4 bar, then everything ends
    assert sch.conductor.state == "listen" and sch.conductor.answers == 1
    assert not sch.engine.sounding


def test_playing_during_the_gap_cancels_the_planned_answer():
    events = phrase() + [((68 + 20) * SPT, on(65)), ((68 + 30) * SPT, off(65))]  # 20 ticks into the gap
    sch, sink = rig(
        ScriptModel(ANSWER), mode="call-response", events=events, phrase_gap=1.0, lookahead=0.5
    )  # so the answer is already planned when the note comes
    sch.begin()
    sch.run(until=10.0 + 200 * SPT)
    notes = model_notes(sink)
    assert notes[0][:2] == (98 + 24, "note_on")  # the gap counts from the new last note-off


def test_playing_during_an_answer_stops_it_at_once():
    events = phrase() + [((92 + 30) * SPT, on(72)), ((92 + 40) * SPT, off(72))]
    sch, sink = rig(ScriptModel(ANSWER + [ev.note_on(71), ev.shift(48)]), mode="call-response", events=events)
    sch.begin()
    sch.run(until=10.0 + (92 + 31) * SPT)
    ons = {}
    for t, m in sink.sent:
        if m.type == "note_on" and m.velocity:
            ons[m.note] = t
        elif m.type in ("note_on", "note_off"):
            ons.pop(m.note, None)
    assert ons == {}  # the model's held note 71 was ended at the keyboard's note
    cut = [(round((t - 10) / SPT), m.note) for t, m in sink.sent if m.type == "note_off" and m.note == 71]
    assert cut == [(122, 71)]
    assert sch.conductor.state == "listen"


def test_sustain_release_ends_the_phrase_now():
    events = [(0, cc(64, 127))] + phrase() + [(80 * SPT, cc(64, 0))]
    sch, sink = rig(ScriptModel(ANSWER), mode="call-response", events=events)
    sch.begin()
    sch.run(until=10.0 + 140 * SPT)
    assert model_notes(sink)[0] == (80, "note_on", 67)


def test_phrase_end_cc_answers_at_once():
    events = phrase() + [(70 * SPT, cc(26, 127))]
    sch, sink = rig(ScriptModel(ANSWER), mode="call-response", events=events)
    sch.begin()
    sch.run(until=10.0 + 140 * SPT)
    assert model_notes(sink)[0] == (70, "note_on", 67)


def test_duet_plays_throughout_and_hears_the_keyboard():
    sch, sink = rig(ScriptModel(MELODY), mode="duet", events=phrase())
    sch.begin()
    sch.run(until=10.0 + 100 * SPT)
    heard = [ev.describe(tok) for o, _, tok in sch.engine.history if o == "keyboard"]
    assert {"ON 60", "OFF 60", "ON 62", "ON 64"} <= set(heard)
    assert sum(1 for _, m in sink.sent if m.type == "note_on") >= 3  # it kept playing


def test_solo_ignores_the_keyboard():
    sch, sink = rig(ScriptModel(MELODY), mode="solo", events=phrase())
    sch.begin()
    sch.run(until=10.0 + 100 * SPT)
    assert not [o for o, _, _ in sch.engine.history if o == "keyboard"]


def test_long_rest_starts_a_new_piece():
    events = phrase() + [(5000 * SPT, on(60)), (5010 * SPT, off(60))]
    sch, sink = rig(ScriptModel([ev.shift(1)]), mode="call-response", events=events, answer_bars=1)
    sch.begin()
    sch.run(until=10.0 + 5020 * SPT)
    starts = [t for o, t, tok in sch.engine.history if tok == ev.START]
    assert len(starts) == 2 and starts[1] == 5000
    rests = [tok for o, _, tok in sch.engine.history if o == "rest"]
    assert len(rests) < 40  # the silence was not fed token after token for minutes


def test_key_estimate_of_scale_and_cadence_phrases():
    from cadenza.player import keys
    from support.keyphrases import phrase_notes

    for mode in ("major", "minor"):
        for tonic in range(12):
            assert keys.estimate(phrase_notes(tonic, mode)) == (tonic, mode)
    assert keys.estimate([]) is None
