"""The simulated player rig: a scheduler with its conductor and engine on a SimClock, and the
phrases and controls the tests play into it."""

from __future__ import annotations

import mido

from cadenza.player import events as ev
from cadenza.player.assemble import build_player, plain_settings
from cadenza.player.clock import SimClock
from cadenza.player.config import Controls
from cadenza.player.render import ListSink
from cadenza.player.scheduler import NoInbox, ScriptedInbox

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


# The CCs the tests turn (the knob row 21..27)
RIG_CONTROLS = Controls(
    temperature=21, tempo=22, mode=23, answer_bars=24, panic=25, phrase_end=26, key_strength=27, patch=28
)


def rig(model, mode="solo", events=(), phrase_gap=1.0, answer_bars=1, **kw):
    """The player at 120 BPM on a SimClock from t = 10 s, greedy (temperature 0), `events` (seconds from
    the start, message) played into it; kw: build_player's (lookahead, ...). Returns (scheduler, sink)."""
    clock = SimClock(10.0)
    settings = plain_settings(
        mode=mode,
        tempo=120.0,
        temperature=0.0,
        seed=1,
        phrase_gap=phrase_gap,
        answer_bars=answer_bars,
        controls=RIG_CONTROLS,
    )
    inbox = ScriptedInbox(clock, [(10.0 + t, m) for t, m in events]) if events else NoInbox(clock)
    sink = ListSink(clock)
    player = build_player(settings, model, clock=clock, inbox=inbox, sink=sink, keep_history=True, **kw)
    return player.scheduler, sink


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
