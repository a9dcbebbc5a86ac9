"""Following an external MIDI clock (24 pulses per quarter note = one model tick each).

The pulses arrive with jitter (USB, the sender's own timer), so the time base is
a second-order delay-locked loop over their arrival times: it predicts when the
next tick falls, corrects by a fraction of each error, and its period (hence the
tempo) follows slowly. Deadlines between pulses come from the prediction, so
notes go out on time rather than one pulse late.

Start: the position restarts (the first pulse after it is tick `base`) and the
model plays; Stop: silence and pause; Continue: go on from where it stopped.
"""

from __future__ import annotations

import math

from .events import TICKS_PER_BEAT

DEFAULT_BPM = 120.0
BANDWIDTH_HZ = 0.5  # of the loop: low enough to smooth USB jitter, high enough to follow a tempo ramp
RESYNC_PERIODS = 4.0  # an error larger than this many periods restarts the loop (a jump, a pause)


class ClockFollower:
    """A time base (interfaces.TimeBase) driven by incoming clock messages."""

    external = True

    def __init__(self, bpm: float = DEFAULT_BPM, bandwidth: float = BANDWIDTH_HZ) -> None:
        self.period = 60.0 / (bpm * TICKS_PER_BEAT)
        self.bandwidth = bandwidth
        self.running = False
        self.transport_seen = False  # a sender that never sends Start just runs
        self.tick = 0  # tick of the last pulse
        self.t_est: float | None = None  # smoothed time of the last pulse
        self.base = 0  # tick the first pulse after Start is given
        self._fresh = True  # next pulse (re)starts the loop
        self._restart_at: int | str | None = None
        self._intervals = 0
        self._last_arrival: float | None = None
        self.pulses = 0

    @property
    def bpm(self) -> float:
        return 60.0 / (self.period * TICKS_PER_BEAT)

    def set_tempo(self, bpm: float, now: float) -> None:
        pass  # the sender sets the tempo

    def time_of(self, tick: float) -> float:
        if self.t_est is None:
            return math.inf
        return self.t_est + (tick - self.tick) * self.period

    def tick_at(self, t: float) -> float:
        if self.t_est is None:
            return float(self.tick)
        return self.tick + min((t - self.t_est) / self.period, 1.0)  # never past the next pulse

    def on_message(self, msg, t: float) -> str | None:
        """Feed a clock/start/stop/continue message; returns "start", "stop", "continue" or None."""
        kind = msg.type
        if kind == "clock":
            self._pulse(t)
            if not self.running and not self.transport_seen:
                self.running = True
                return "start"
            return None
        if kind == "start":
            self.transport_seen = True
            self.running = True
            self._fresh = True
            self._restart_at = "base"
            return "start"
        if kind == "continue":
            self.transport_seen = True
            self.running = True
            self._fresh = True
            self._restart_at = self.tick + 1
            return "continue"
        if kind == "stop":
            self.transport_seen = True
            self.running = False
            return "stop"
        return None

    def _pulse(self, t: float) -> None:
        self.pulses += 1
        prev, self._last_arrival = self._last_arrival, t
        if self._fresh or self.t_est is None:
            # the first pulse after Start is tick `base` (set by the scheduler), after Continue the next tick
            restart = self._restart_at
            self.tick = restart if isinstance(restart, int) else self.base
            self.t_est = t
            self._fresh = False
            self._restart_at = None
            self._intervals = 0
            return
        self.tick += 1
        assert prev is not None  # (not the first pulse: that one restarted the loop above)
        interval = t - prev
        if self._intervals < 2:  # the first intervals set the period directly
            self._intervals += 1
            if 0 < interval < 10 * self.period:
                self.period = interval if self._intervals == 1 else 0.5 * (self.period + interval)
            self.t_est = t
            return
        predicted = self.t_est + self.period
        err = t - predicted
        if abs(err) > RESYNC_PERIODS * self.period:  # a jump or a gap: start the loop again here
            self.t_est = t
            if 0 < interval < 10 * self.period:
                self.period = interval
            return
        w = 2 * math.pi * self.bandwidth * self.period  # loop gain per pulse
        self.t_est = predicted + math.sqrt(2) * w * err
        self.period = max(1e-4, self.period + w * w * err)
