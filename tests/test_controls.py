"""Each live control of the CC map, through the same input path as the keyboard."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from cadenza.player import events as ev
from cadenza.player import keys
from cadenza.player.controls import ControlMap
from support.fakes import ScriptModel
from support.rig import ANSWER, MELODY, SPT, cc, phrase, rig


def run(mode, events, until_ticks, model=None, **kw):
    sch, sink = rig(model or ScriptModel(MELODY), mode=mode, events=events, **kw)
    sch.begin()
    sch.run(until=10.0 + until_ticks * SPT)
    return sch, sink


def test_cc_values_map_onto_settings():
    m = ControlMap(temperature=21, tempo=22, mode=23, answer_bars=24, panic=25, phrase_end=26)
    assert m.interpret(21, 0) == ("temperature", 0.05) and m.interpret(21, 127) == ("temperature", 2.0)
    assert m.interpret(22, 127) == ("tempo", 240.0)
    assert [m.interpret(23, v)[1] for v in (0, 64, 127)] == ["call-response", "duet", "solo"]
    assert m.interpret(24, 0) == ("answer_bars", 1) and m.interpret(24, 127) == ("answer_bars", 16)
    assert m.interpret(25, 0) is None and m.interpret(25, 127) == ("panic", True)
    assert m.interpret(7, 100) is None
    off_map = ControlMap.from_settings(
        type(
            "C",
            (),
            {
                "temperature": -1,
                "tempo": 22,
                "mode": -1,
                "answer_bars": -1,
                "panic": -1,
                "phrase_end": -1,
                "sustain_ends_phrase": False,
            },
        )
    )
    assert off_map.temperature is None and off_map.tempo == 22 and not off_map.sustain_ends_phrase


def test_temperature_cc():
    sch, _ = run("solo", [(5 * SPT, cc(21, 0))], 10)
    assert sch.engine.sampler.temperature == pytest.approx(0.05)


def test_tempo_cc_changes_the_spacing_of_later_notes_only():
    sch, sink = run("solo", [(30 * SPT, cc(22, 32))], 200, lookahead=0.01)  # 40 + 32*200/127 = 90.4 BPM
    assert sch.timebase.bpm == pytest.approx(90.4, abs=0.1)
    ons = [t - 10.0 for t, m in sink.sent if m.type == "note_on"]
    assert ons[:3] == pytest.approx([0, 12 * SPT, 24 * SPT])  # before the change, at 120 BPM
    spt2 = 60 / (90.4 * 24)
    # the next melody starts at tick 96: 30 ticks at 120, then 66 at 90.4
    assert ons[3] == pytest.approx(30 * SPT + 66 * spt2, abs=1e-3)


def test_mode_cc_to_call_response_silences_and_listens():
    sch, sink = run("solo", [(30 * SPT, cc(23, 0))], 200)
    assert sch.conductor.mode == "call-response" and sch.conductor.state == "listen"
    assert not [t for t, m in sink.sent if m.type == "note_on" and m.velocity and t > 10.0 + 30 * SPT]
    assert not sch.engine.sounding


def test_mode_cc_to_duet_starts_playing():
    sch, sink = run("call-response", [(10 * SPT, cc(23, 64))], 100)
    assert sch.conductor.mode == "duet"
    assert [t for t, m in sink.sent if m.type == "note_on"]


def test_answer_bars_cc():
    sch, sink = run("call-response", [(1 * SPT, cc(24, 20))] + phrase(), 400, model=ScriptModel(ANSWER))
    assert sch.conductor.answer_bars == 3
    ends = [round((t - 10) / SPT) for t, m in sink.sent if m.type == "note_off" and m.note in (67, 69)]
    assert ends[-1] == 92 + 3 * 96


def test_key_strength_cc():
    m = ControlMap(key_strength=27)
    assert m.interpret(27, 0) == ("key_strength", 0.0) and m.interpret(27, 127) == ("key_strength", 7.0)
    sch, _ = rig(ScriptModel(MELODY), mode="solo", events=[(5 * SPT, cc(27, 127)), (20 * SPT, cc(27, 0))])
    sch.conductor.set_key("D minor", 1.0)
    sch.begin()
    assert sch.conductor.key_strength == 1.0 and sch.engine.key_bias is not None
    sch.run(until=10.0 + 10 * SPT)
    assert sch.conductor.key_strength == 7.0
    np.testing.assert_array_equal(sch.engine.key_bias, keys.bias((2, "minor"), 7.0, ev.VOCAB_SIZE))
    sch.run(until=10.0 + 30 * SPT)
    assert sch.conductor.key_strength == 0.0 and sch.engine.key_bias is None  # the model is free


def test_panic_cc_ends_every_note_now():
    sch, sink = run(
        "solo",
        [(30 * SPT, cc(25, 127))],
        31,
        model=ScriptModel([ev.note_on(60), ev.note_on(64), ev.shift(48), ev.note_off(60)]),
    )
    offs = [(round((t - 10) / SPT), m.note) for t, m in sink.sent if m.type == "note_off"]
    assert (30, 60) in offs and (30, 64) in offs


def test_phrase_end_cc():
    sch, sink = run("call-response", phrase() + [(70 * SPT, cc(26, 127))], 100, model=ScriptModel(ANSWER))
    assert [round((t - 10) / SPT) for t, m in sink.sent if m.type == "note_on" and m.note == 67][0] == 70


def test_input_channel_filter_and_thru():
    from cadenza.player.controls import InputRouter

    sch, sink = rig(ScriptModel(MELODY), mode="duet")
    sch.handle = InputRouter(sch, ControlMap(), thru=True, input_channel=2)
    sch.handle(0.0, mido.Message("note_on", channel=2, note=50, velocity=80), 0.0)
    sch.handle(0.0, mido.Message("note_on", channel=5, note=51, velocity=80), 0.0)
    assert [(m.channel, m.note) for _, m in sink.sent] == [(0, 50)]  # echoed on the output channel
