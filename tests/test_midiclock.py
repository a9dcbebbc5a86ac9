"""Following an external MIDI clock: tempo from jittery pulses, Start / Stop / Continue."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from cadenza.player import events as ev
from cadenza.player.assemble import build_player, plain_settings
from cadenza.player.clock import SimClock
from cadenza.player.config import Clock
from cadenza.player.midiclock import ClockFollower
from cadenza.player.render import ListSink
from cadenza.player.scheduler import ScriptedInbox
from support.fakes import ScriptModel

SCRIPT = [ev.note_on(60), ev.shift(12), ev.note_off(60), ev.shift(12)]


def pulses(bpm, n, t0, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    p = 60.0 / (bpm * 24)
    return [(t0 + i * p + rng.normal(0, jitter), mido.Message("clock")) for i in range(n)]


def test_tempo_is_estimated_through_jitter_and_follows_a_change():
    f = ClockFollower(bpm=90)
    f.on_message(mido.Message("start"), 0.0)
    for t, m in pulses(120, 480, 1.0, jitter=0.001):
        f.on_message(m, t)
    assert f.bpm == pytest.approx(120, rel=0.01)
    for t, m in pulses(150, 480, 1.0 + 480 * 60 / (120 * 24), jitter=0.001, seed=1):
        f.on_message(m, t)
    assert f.bpm == pytest.approx(150, rel=0.01)
    assert f.tick == 959


def test_notes_follow_the_pulses_and_stop_start_continue():
    clock = SimClock(0.0)
    settings = plain_settings(mode="solo", tempo=120.0, temperature=0.0, seed=0, clock=Clock(source="external"))
    p = 60.0 / (100 * 24)  # the sender plays at 100 BPM
    events = [(0.5, mido.Message("start"))] + pulses(100, 60, 0.5 + 1e-6)
    stop_t = 0.5 + 60 * p
    events += [(stop_t, mido.Message("stop"))]
    cont_t = stop_t + 1.0
    events += [(cont_t, mido.Message("continue"))] + pulses(100, 60, cont_t + 1e-6)
    sink = ListSink(clock)
    player = build_player(
        settings, ScriptModel(SCRIPT), clock=clock, inbox=ScriptedInbox(clock, events), sink=sink, lookahead=0.05
    )
    sch, tb = player.scheduler, player.timebase
    assert isinstance(tb, ClockFollower)
    sch.begin()
    sch.run(until=cont_t + 60 * p)
    ons = [t for t, m in sink.sent if m.type == "note_on" and m.velocity]
    # before the stop: a note every 24 pulses (one beat at the sender's tempo), from the start
    assert ons[0] == pytest.approx(0.5, abs=1e-3)
    assert ons[1] == pytest.approx(0.5 + 24 * p, abs=2e-3)
    # nothing sounds and nothing is sent while stopped
    during = [m for t, m in sink.sent if stop_t < t < cont_t]
    assert not [m for m in during if m.type == "note_on" and m.velocity]
    held = set()
    for t, m in sink.sent:
        if t > stop_t + 1e-9:
            break
        if m.type == "note_on" and m.velocity:
            held.add(m.note)
        elif m.type in ("note_on", "note_off"):
            held.discard(m.note)
    assert not held
    # after Continue it plays on
    assert any(t > cont_t for t in ons)
    assert tb.tick >= 110


def test_internal_clock_sends_start_pulses_and_stop():
    clock = SimClock(0.0)
    settings = plain_settings(mode="solo", tempo=120.0, temperature=0.0, seed=0, clock=Clock(send=True))
    sink = ListSink(clock)
    sch = build_player(settings, ScriptModel(SCRIPT), clock=clock, inbox=ScriptedInbox(clock, []), sink=sink).scheduler
    sch.begin()
    sch.run(until=1.0)
    sch.end()
    kinds = [m.type for _, m in sink.sent]
    assert kinds[0] == "start" and kinds[-1] != "clock" and "stop" in kinds
    pulses = [t for t, m in sink.sent if m.type == "clock"]
    assert len(pulses) == 49  # ticks 0..48 in one second at 120 BPM
    assert pulses[24] == pytest.approx(0.5)
    first_note = next(t for t, m in sink.sent if m.type == "note_on")
    assert kinds.index("clock") < kinds.index("note_on") and first_note == pytest.approx(0.0)
