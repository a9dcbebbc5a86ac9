"""The small interfaces where the player's parts meet.

    Clock      seconds on time.monotonic(): clock.RealClock (live), clock.SimClock (tests, --render)
    TimeBase   ticks <-> seconds: clock.TempoMap (internal), midiclock.ClockFollower (external)
    Inbox      timestamped input: scheduler.PortInbox (a live port), ScriptedInbox, NoInbox
    Sink       the output: a port (ports.OutputPort), the daemon's recording sink, render.ListSink
    StepModel  one step of the model with its state inside: runtime.StepModel, support.fakes
    InputHandler  what the scheduler hands input to: controls.InputRouter
    Background    work the scheduler's loop does in slices between sends: patches.Switcher

Each is structural (typing.Protocol): a test fake needs no base class, only the
methods. This module imports no other part of the player, so every part may
import it.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

# (seconds, mido.Message): when an input message arrived, on the clock
Stamped = tuple[float, Any]


class Clock(Protocol):
    """Absolute deadlines: never accumulated sleeps."""

    spin: float  # seconds before a deadline that sleeping stops and spinning starts (0: none)

    def now(self) -> float: ...

    def sleep_until(self, t: float, /) -> None: ...


class TimeBase(Protocol):
    """Model ticks (24 per beat) <-> clock seconds."""

    @property
    def external(self) -> bool:
        """Driven by an incoming MIDI clock (whose sender sets the tempo)."""
        ...

    @property
    def running(self) -> bool:
        """Ticks are moving (an external clock may be stopped)."""
        ...

    @property
    def bpm(self) -> float: ...

    def time_of(self, tick: float, /) -> float: ...

    def tick_at(self, t: float, /) -> float: ...

    def set_tempo(self, bpm: float, now: float, /) -> None:
        """From `now` on, ticks go at `bpm`; ticks before now keep their times (external: ignored)."""
        ...


class Inbox(Protocol):
    """Where input comes from: what has arrived, and waiting for more until a deadline."""

    def poll(self) -> list[Stamped]: ...

    def wait_until(self, t: float, /) -> list[Stamped]:
        """Sleep until `t` or until input arrives, whichever is first; returns what arrived."""
        ...


class Sink(Protocol):
    """Where the player's messages go."""

    def send(self, msg: Any, /) -> object: ...

    def all_notes_off(self) -> object: ...


class StepModel(Protocol):
    """One token in, logits out; the state (reset, checkpointed, restored) is inside."""

    @property
    def vocab_size(self) -> int: ...

    def step(self, token: int, /) -> np.ndarray:
        """[V] logits for the next token."""
        ...

    def reset(self) -> None: ...

    def get_state(self) -> tuple: ...

    def set_state(self, state: tuple, /) -> None: ...


class InputHandler(Protocol):
    """Takes every input message that is not an external clock's: (seconds, message, tick)."""

    def __call__(self, t: float, msg: Any, tick: float, /) -> None: ...


class Background(Protocol):
    """Work done a slice at a time between the loop's sends (a patch switch warming its new model)."""

    @property
    def busy(self) -> bool: ...

    def work(self, now_tick: float, time_left: Callable[[], float], /) -> bool:
        """A slice while time_left() > 0; True when there is more to do soon."""
        ...
