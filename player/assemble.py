"""The player put together in one place: settings and a model in, its parts wired out.

    player = build_player(settings, model, clock=RealClock(), inbox=PortInbox(clock, port), sink=out)
    player.scheduler.begin(); player.scheduler.run(until=t); player.scheduler.end()

The daemon (live), `--render`, the tests' rig and the benches all build the player
here, so each of them runs the same parts wired the same way:

    time base   TempoMap at settings.play.tempo, or a ClockFollower (clock.source = "external")
    sampler     temperature, top_p, seed
    engine      the model, the sampler, the output channel
    conductor   mode, phrase gap, answer length, key, pedal
    scheduler   the clock, time base, inbox and sink; velocity scale, clock bytes sent
    router      the scheduler's input: the CC map, thru, the input channel
    switcher    with a patch bank: switches the engine's model on a bar line (the scheduler's background work)

What the user sets comes from config.Settings; what differs per use (the clock,
where input comes from, where output goes, the callbacks) is passed beside it.
A player without a user's config file (render, tests, benches) starts from
`plain_settings`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import mido

from . import config
from .clock import TempoMap
from .controls import ControlMap, InputRouter
from .engine import Engine
from .events import TimedMessage
from .interfaces import Clock, Inbox, Sink, StepModel
from .midiclock import ClockFollower
from .patches import Bank, Slot, Switcher
from .sampling import Sampler
from .scheduler import IDLE, LOOKAHEAD, MARGIN, Scheduler
from .steering import Conductor

# No key lean, a one-beat gap, two-bar answers, no CC mapped: the conductor's own defaults, for a player
# that no user's settings file configures (the user's defaults in config.Play lean to the key, etc.).
PLAIN_PLAY = config.Play(phrase_gap=1.0, answer_bars=2, key="off", key_strength=0.0, key_opening=1.0)
NO_CONTROLS = config.Controls(
    temperature=-1, tempo=-1, mode=-1, answer_bars=-1, panic=-1, phrase_end=-1, key_strength=-1
)


def plain_settings(
    *,
    midi: config.Midi | None = None,
    clock: config.Clock | None = None,
    controls: config.Controls = NO_CONTROLS,
    **play: Any,
) -> config.Settings:
    """Settings for a player that no settings file configures (render, tests, benches): PLAIN_PLAY with
    `play`'s fields replaced, NO_CONTROLS. Not range-checked (a test may sample at temperature 0)."""
    return config.Settings(
        play=dataclasses.replace(PLAIN_PLAY, **play),
        midi=midi if midi is not None else config.Midi(),
        clock=clock if clock is not None else config.Clock(),
        controls=controls,
    )


@dataclass
class Player:
    """The parts, as build_player wired them (the scheduler holds them all; these are for reading)."""

    clock: Clock
    timebase: TempoMap | ClockFollower
    sampler: Sampler
    engine: Engine
    conductor: Conductor
    scheduler: Scheduler
    router: InputRouter
    switcher: Switcher | None = None


def build_player(
    settings: config.Settings,
    model: StepModel,
    *,
    clock: Clock,
    inbox: Inbox,
    sink: Sink,
    t0: float | None = None,
    align: bool = False,
    keep_history: bool = False,
    lookahead: float = LOOKAHEAD,
    margin: float = MARGIN,
    idle: float = IDLE,
    on_alive: Callable[[float], None] | None = None,
    on_sent: Callable[[TimedMessage, float], None] | None = None,
    on_change: Callable[[str, object], None] | None = None,
    on_input: Callable[[float, mido.Message], None] | None = None,
    bank: Bank | None = None,
    patch: int | None = None,
    on_patch: Callable[[Slot, int], None] | None = None,
) -> Player:
    """The player's parts from `settings`, playing `model` on `clock`, from `inbox` to `sink`.

    t0: when tick 0 falls on the clock (an internal time base; default: now).
    align: an answer starts at the very end of its gap, the tempo map re-anchored there, not at the next
    grid tick (live playing; an external clock cannot be re-anchored, so it never aligns).
    keep_history: the engine keeps every token (tests, the benches).
    lookahead, margin, idle: the scheduler's (scheduler.LOOKAHEAD etc.).
    on_alive(now): every pass of the loop. on_sent(message, deadline): after each send.
    on_change(setting, value): a control changed a setting. on_input(t, msg): every input message, first.
    bank: the patch bank (patches.Bank), `patch` the program of `model` in it (None: not in it), on_patch(slot,
    tick) when another patch has taken over.
    """
    s, play = settings, settings.play
    timebase: TempoMap | ClockFollower
    if s.clock.source == "external":
        timebase = ClockFollower(play.tempo)
    else:
        timebase = TempoMap(play.tempo, clock.now() if t0 is None else t0)
    sampler = Sampler(play.temperature, play.top_p, play.seed)
    engine = Engine(model, sampler, channel=s.midi.channel - 1, keep_history=keep_history)
    conductor = Conductor(
        engine,
        mode=play.mode,
        phrase_gap=play.phrase_gap,
        answer_bars=play.answer_bars,
        beats_per_bar=play.beats_per_bar,
        sustain_ends_phrase=s.controls.sustain_ends_phrase,
        align=timebase.align if align and isinstance(timebase, TempoMap) else None,
        key=play.key,
        key_strength=play.key_strength,
        key_opening=play.key_opening,
        pedal_hold_bars=play.pedal_hold_bars,
    )
    scheduler = Scheduler(
        conductor,
        clock,
        timebase,
        inbox,
        sink,
        lookahead=lookahead,
        margin=margin,
        idle=idle,
        velocity_scale=play.velocity_scale,
        send_clock=s.clock.send and not timebase.external,
        on_alive=on_alive,
        on_sent=on_sent,
    )
    router = InputRouter(
        scheduler,
        ControlMap.from_settings(s.controls),
        thru=s.midi.thru,
        input_channel=s.midi.input_channel - 1 if s.midi.input_channel else None,
        on_change=on_change,
        on_input=on_input,
    )
    scheduler.handle = router  # (the router acts on the scheduler's parts: it is made after it)
    switcher = None
    if bank is not None:
        switcher = Switcher(bank, engine, conductor, current=patch, on_switch=on_patch)
        scheduler.background = router.patches = switcher
    return Player(clock, timebase, sampler, engine, conductor, scheduler, router, switcher)
