"""Clocks and time bases: seconds on time.monotonic() and their mapping to ticks.

The scheduler asks a clock for `now()` and to `sleep_until(t)` (absolute
deadlines, never accumulated sleeps). RealClock is the wall of the live daemon;
SimClock jumps straight to each deadline, so tests and `--render` run the very
same loop faster than real time.

A time base (interfaces.TimeBase) maps model ticks (24 per beat) to clock seconds.
TempoMap is the internal one: tick time = anchor + (tick - anchor_tick) * 60 / (bpm * 24),
and a tempo change re-anchors at the present so nothing already heard moves.
(midiclock.ClockFollower is the external one.)
"""

from __future__ import annotations

import time

from .events import TICKS_PER_BEAT

MIN_BPM, MAX_BPM = 20.0, 400.0


class RealClock:
    """time.monotonic(); sleeps until `spin` seconds before a deadline, then spins.

    The OS wakes a sleeper a little late (timer slack, scheduling); spinning the
    last fraction of a millisecond trades a sliver of CPU for a punctual send
    (measured in bench/timing.py).
    """

    def __init__(self, spin: float = 0.0003) -> None:
        self.spin = max(0.0, float(spin))

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        d = t - time.monotonic() - self.spin
        if d > 0:
            time.sleep(d)
        while time.monotonic() < t:
            pass


class SimClock:
    """Simulated seconds: sleeping moves time to the deadline at once."""

    spin = 0.0  # (nothing to spin for: a deadline is met exactly)

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        if t > self.t:
            self.t = float(t)

    def advance(self, dt: float) -> None:
        self.t += max(0.0, dt)


def clamp_bpm(bpm: float) -> float:
    return min(max(float(bpm), MIN_BPM), MAX_BPM)


class TempoMap:
    """Ticks <-> seconds at one tempo, anchored so that a change never makes time jump."""

    external = False

    def __init__(self, bpm: float, t0: float, tick0: float = 0.0) -> None:
        self.bpm = clamp_bpm(bpm)
        self.spt = 60.0 / (self.bpm * TICKS_PER_BEAT)  # seconds per tick
        self.t0 = float(t0)
        self.tick0 = float(tick0)

    @property
    def running(self) -> bool:
        return True

    def time_of(self, tick: float) -> float:
        return self.t0 + (tick - self.tick0) * self.spt

    def tick_at(self, t: float) -> float:
        return self.tick0 + (t - self.t0) / self.spt

    def set_tempo(self, bpm: float, now: float) -> None:
        """From `now` on, ticks go at the new tempo; ticks before now keep their times."""
        self.tick0 = self.tick_at(now)
        self.t0 = now
        self.bpm = clamp_bpm(bpm)
        self.spt = 60.0 / (self.bpm * TICKS_PER_BEAT)

    def align(self, tick_float: float, tick: int) -> None:
        """Make integer `tick` fall at the moment of `tick_float` (the tempo kept): an answer whose gap
        ends between two ticks starts at the very end of the gap, not at the next grid tick."""
        t = self.time_of(tick_float)
        self.t0, self.tick0 = t, float(tick)
