"""The simulated player rig: a scheduler with its conductor and engine on a SimClock, and the
phrases and controls the tests play into it."""

from __future__ import annotations

import mido

from cadenza.player import events as ev
from cadenza.player.clock import SimClock, TempoMap
from cadenza.player.controls import ControlMap, InputRouter
from cadenza.player.engine import Engine
from cadenza.player.render import ListSink
from cadenza.player.sampling import Sampler
from cadenza.player.scheduler import NoInbox, Scheduler, ScriptedInbox
from cadenza.player.steering import Conductor

SPT = 60.0 / (120 * 24)  # seconds per tick at 120 BPM

MELODY = [
    ev.velocity(7),
    ev.note_on(60),
    ev.shift(12),
    ev.note_off(60),
    ev.note_on(64),
    ev.shift(12),
    ev.note_off(64),
    ev.note_on(67),
    ev.shift(24),
    ev.note_off(67),
    ev.shift(48),
]


def rig(model, mode="solo", events=(), **kw):
    clock = SimClock(10.0)
    tb = TempoMap(120, clock.now())
    eng = Engine(model, Sampler(temperature=0, seed=1), keep_history=True)
    cond = Conductor(
        eng,
        mode=mode,
        phrase_gap=kw.pop("phrase_gap", 1.0),
        answer_bars=kw.pop("answer_bars", 1),
        align=lambda f, i: None,
    )
    inbox = ScriptedInbox(clock, [(10.0 + t, m) for t, m in events]) if events else NoInbox(clock)
    sink = ListSink(clock)
    sch = Scheduler(cond, clock, tb, inbox, sink, **kw)
    sch.handle = InputRouter(
        sch, ControlMap(temperature=21, tempo=22, mode=23, answer_bars=24, panic=25, phrase_end=26, key_strength=27)
    )
    return sch, sink


ANSWER = [ev.note_on(67), ev.shift(6), ev.note_off(67), ev.note_on(69), ev.shift(6), ev.note_off(69)]


def on(n, v=90):
    return mido.Message("note_on", note=n, velocity=v)


def off(n):
    return mido.Message("note_off", note=n)


def cc(c, v):
    return mido.Message("control_change", control=c, value=v)


def phrase(t0=0):
    """C D E, a beat each (in ticks from t0)."""
    out = []
    for i, n in enumerate((60, 62, 64)):
        out += [((t0 + 24 * i) * SPT, on(n)), ((t0 + 24 * i + 20) * SPT, off(n))]
    return out
