"""The scheduler: sends the engine's messages at their deadlines, generating ahead.

One loop, one thread, absolute deadlines:

    wake -> send what is due -> handle input -> let the conductor look at the time
         -> generate ahead (only while the next deadline is further than `margin`,
            and no further than `lookahead` seconds) -> sleep until the next deadline

A deadline is timebase.time_of(tick): never an accumulated sleep, so nothing
drifts, and a tempo change re-anchors the time base without moving what was
already heard. The clock (RealClock / SimClock) and the inbox (live port /
scripted events) are objects (interfaces.Clock, interfaces.Inbox), so tests and
--render run this very loop. assemble.build_player puts it together.
"""

from __future__ import annotations

import logging
import math
import queue
from typing import Callable, Iterable

import mido

from .events import TimedMessage
from .interfaces import Background, Clock, Inbox, InputHandler, Sink, Stamped, TimeBase
from .logutil import Throttle
from .midiclock import ClockFollower
from .steering import Conductor

log = logging.getLogger(__name__)
QUIET = Throttle(log)  # Start/Stop bytes in a flood of input

CLOCK_TYPES = ("clock", "start", "stop", "continue", "songpos")
LOOKAHEAD = 0.15  # s the engine may plan ahead: inference never delays a send
MARGIN = 0.002  # s: no inference when a send is due within this
IDLE = 0.05  # s, the longest sleep: input and the watchdog are seen at least this often
BACKGROUND_WAKE = 0.005  # s: background work with more to do comes back this soon


# -- inboxes: where input comes from -------------------------------------------


class NoInbox:
    """No input: waiting is sleeping."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def wait_until(self, t: float) -> list[Stamped]:
        self.clock.sleep_until(t)
        return []

    def poll(self) -> list[Stamped]:
        return []


class ScriptedInbox:
    """Input from a list of (seconds, message), for a SimClock (tests, --render, the steering bench)."""

    def __init__(self, clock: Clock, events: Iterable[Stamped]) -> None:
        self.clock = clock
        self.events = sorted(events, key=lambda e: e[0])
        self.i = 0

    def add(self, t: float, msg: mido.Message) -> None:
        self.events.append((t, msg))
        self.events[self.i :] = sorted(self.events[self.i :], key=lambda e: e[0])

    def poll(self) -> list[Stamped]:
        now, out = self.clock.now(), []
        while self.i < len(self.events) and self.events[self.i][0] <= now:
            out.append(self.events[self.i])
            self.i += 1
        return out

    def wait_until(self, t: float) -> list[Stamped]:
        if self.i < len(self.events) and self.events[self.i][0] < t:
            self.clock.sleep_until(self.events[self.i][0])
            return self.poll()
        self.clock.sleep_until(t)
        return self.poll()


class PortInbox:
    """A live input port whose callback stamps time.monotonic() and queues (t, msg)."""

    def __init__(self, clock: Clock, port) -> None:
        self.clock = clock
        self.port = port  # get(timeout) -> (t, msg) or None, and drain(): an input port

    def poll(self) -> list[Stamped]:
        return list(self.port.drain())

    def wait_until(self, t: float) -> list[Stamped]:
        timeout = t - self.clock.now() - self.clock.spin
        if timeout > 0:
            try:
                item = self.port.get(timeout)
            except queue.Empty:
                item = None
            if item is not None:
                return [item, *self.port.drain()]
        self.clock.sleep_until(t)
        return self.poll()


# -- the loop -------------------------------------------------------------------


class Scheduler:
    """Runs a Conductor's engine against a clock, a time base, an inbox and a sink.

    handle takes the input (the input router); the scheduler itself only feeds
    clock messages to an external time base. Built by assemble.build_player.
    """

    def __init__(
        self,
        conductor: Conductor,
        clock: Clock,
        timebase: TimeBase,
        inbox: Inbox,
        sink: Sink,
        *,
        handle: InputHandler | None = None,
        lookahead: float = LOOKAHEAD,
        margin: float = MARGIN,
        idle: float = IDLE,
        velocity_scale: float = 1.0,
        send_clock: bool = False,
        on_alive: Callable[[float], None] | None = None,
        on_sent: Callable[[TimedMessage, float], None] | None = None,
    ) -> None:
        self.conductor = conductor
        self.engine = conductor.engine
        self.clock = clock
        self.timebase = timebase
        self.inbox = inbox
        self.sink = sink
        self.handle = handle
        self.lookahead = lookahead  # how far ahead (s) the engine may plan
        self.margin = margin  # no inference when a send is due within this (s)
        self.idle = idle  # longest sleep (s): input and the watchdog are seen at least this often
        self.velocity_scale = velocity_scale
        self.send_clock = send_clock
        self.on_alive = on_alive
        self.on_sent = on_sent
        self.background: Background | None = None  # a patch switch in slices (patches.Switcher)
        self._stop = False
        self._pending: list[Stamped] = []
        self._heard_wake: float | None = None  # when the keyboard's last tick reaches the model
        self._next_clock: int | None = None
        self.late: list[float] = []  # send time minus deadline (s), when measuring
        self.measure = False

    def stop(self) -> None:
        self._stop = True

    def reconfigure(self, *, velocity_scale: float) -> None:
        """New settings (a reload): the model's velocities scaled from the next send on."""
        self.velocity_scale = velocity_scale

    @property
    def stopping(self) -> bool:
        return self._stop

    # -- output ---------------------------------------------------------------------

    def _send(self, tm: TimedMessage, deadline: float) -> None:
        msg = tm.message
        if self.velocity_scale != 1.0 and msg.type == "note_on" and msg.velocity > 0:
            msg = msg.copy(velocity=min(127, max(1, int(round(msg.velocity * self.velocity_scale)))))
        self.sink.send(msg)
        if self.measure:
            self.late.append(self.clock.now() - deadline)
        if self.on_sent is not None:
            self.on_sent(tm, deadline)

    def send_due(self) -> None:
        """Send every message (and clock pulse) whose deadline has come, in order."""
        tb, eng = self.timebase, self.engine
        if not tb.running:
            return
        now = self.clock.now()
        while True:
            nxt = eng.next_tick()
            tc = self._next_clock
            if tc is not None and (nxt is None or tc <= nxt) and tb.time_of(tc) <= now:
                self.sink.send(mido.Message("clock"))
                self._next_clock = tc + 1
                continue
            if nxt is None:
                break
            deadline = tb.time_of(nxt)
            if deadline > now:
                break
            self._send(eng.pop(), deadline)

    def silence(self) -> None:
        """Note-offs for what the engine sounds, then all-notes-off at the port."""
        self.send_due()
        self.sink.all_notes_off()

    # -- the loop ---------------------------------------------------------------------

    def begin(self) -> None:
        now = self.clock.now()
        tick = self.timebase.tick_at(now)
        self.conductor.begin(tick)
        if self.send_clock and not self.timebase.external:
            self.sink.send(mido.Message("start"))
            self._next_clock = int(self.engine.cursor)

    def end(self) -> None:
        """Stop playing: the engine's notes end now, then all-notes-off."""
        now = self.clock.now()
        tick = self.timebase.tick_at(now) if self.timebase.running else self.engine.cursor
        if self.engine.playing or self.engine.sounding:
            self.engine.stop(max(int(tick), 0))
        for tm in self.engine.pop_due(float("inf")):
            self._send(tm, now)
        if self.send_clock and not self.timebase.external:
            self.sink.send(mido.Message("stop"))
        self.sink.all_notes_off()

    def step(self) -> float:
        """One pass of the loop; returns the time to wake up at."""
        clock, tb, eng, cond = self.clock, self.timebase, self.engine, self.conductor
        self.send_due()
        events, self._pending = self._pending + self.inbox.poll(), []
        heard = None  # the latest tick the keyboard played at in this pass
        for t, msg in events:
            if msg.type in CLOCK_TYPES and isinstance(tb, ClockFollower):
                self._transport(tb, tb.on_message(msg, t), t)
                continue
            if self.handle is not None:
                tick = tb.tick_at(t) if tb.running else eng.cursor
                self.handle(t, msg, tick)
                heard = tick if heard is None else max(heard, tick)
        now = clock.now()
        if self.on_alive is not None:
            self.on_alive(now)
        if not tb.running:
            return now + self.idle
        if heard is not None:
            t_heard = tb.time_of(round(heard) + 0.6)
            self._heard_wake = t_heard if self._heard_wake is None else max(self._heard_wake, t_heard)
        if self._heard_wake is not None and self._heard_wake <= now:
            self._heard_wake = None  # this update hands it over
        cond.update(tb.tick_at(now), tb.tick_at(now + self.lookahead))
        eng.catch_up(math.ceil(tb.tick_at(now)))  # after a rollback: no note planned in the past
        self.send_due()
        more = False
        if self.background is not None and self.background.busy:
            more = self.background.work(tb.tick_at(now), self._time_left)
            self.send_due()
        while True:  # generate ahead, never into a send's margin
            now = clock.now()
            nxt = eng.next_tick()
            if nxt is not None and tb.time_of(nxt) - now < self.margin:
                break
            if not cond.wants(tb.tick_at(now + self.lookahead)):
                break
            eng.generate()
        wake = now + (BACKGROUND_WAKE if more else self.idle)
        nxt = eng.next_tick()
        if nxt is not None:
            wake = min(wake, tb.time_of(nxt))
        if eng.playing:  # wake when the engine's plan no longer covers the lookahead
            t_more = tb.time_of(eng.cursor) - self.lookahead
            if t_more > now:  # (not yet due: an external clock's next pulse wakes us instead)
                wake = min(wake, t_more)
        w = cond.next_wake_tick()
        if w is not None:
            wake = min(wake, max(now, tb.time_of(w) - self.lookahead))
        if self._next_clock is not None:
            wake = min(wake, tb.time_of(self._next_clock))
        if self._heard_wake is not None:
            # The encoder hands a tick's notes to the model once time has passed it (rounded);
            # the model replans from there, so wake right then, not up to `idle` later: that
            # wait made the replanned notes late by as much (50 ms, measured in bench/soak.py).
            wake = min(wake, max(now, self._heard_wake))
        return wake

    def _time_left(self) -> float:
        """Seconds of inference the loop can spare now: until the next send, less the margin."""
        nxt = self.engine.next_tick()
        now = self.clock.now()
        until = now + self.idle if nxt is None else self.timebase.time_of(nxt)
        return until - now - self.margin

    def _transport(self, tb: ClockFollower, event: str | None, t: float) -> None:
        """Start / Stop / Continue from an external clock."""
        eng, cond = self.engine, self.conductor
        if event == "stop":
            cond.halt(tb.tick_at(t))
            for tm in eng.pop_due(float("inf")):
                self._send(tm, t)
            self.sink.all_notes_off()
            QUIET.info("transport", "external clock: stop")
        elif event == "start":
            tb.base = int(eng.cursor)
            cond.resume(tb.base)
            QUIET.info("transport", "external clock: start")
        elif event == "continue":
            cond.resume(max(eng.cursor, tb.tick + 1))
            QUIET.info("transport", "external clock: continue")

    def run(self, until: float | None = None, done: Callable[[], bool] | None = None) -> None:
        """Loop until stop(), the clock reaches `until`, or done() says so."""
        self._stop = False
        while not self._stop:
            wake = self.step()
            if done is not None and done():
                break
            if until is not None:
                if self.clock.now() >= until:
                    break
                wake = min(wake, until)
            self._pending += self.inbox.wait_until(wake)
