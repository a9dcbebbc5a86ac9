"""MIDI ports that survive their devices: opened by name or as virtual ports, reopened when lost.

    backend = open_backend("jack")                  # or "alsa", "", "mido.backends.rtmidi/UNIX_JACK"
    with OutputPort("fluid", backend) as out, InputPort("keystation", backend) as keys:
        out.send(mido.Message("note_on", note=60))
        t, msg = keys.get(timeout=0.1) or (None, None)

Ports are found by a case-insensitive substring of their name ("virtual" opens a
port of our own: `<client_name>:out` / `<client_name>:in`). A port's device can
go away (USB unplugged, synth restarted): rtmidi does not tell us, sends to a
vanished ALSA or JACK port are silently dropped, so each port runs a small
maintenance thread that checks once a second that its peer is still listed and,
if not, marks the port lost and reopens it by name when it is back. Sends while
lost are counted and dropped, never raised. The output sends all-notes-off on
every (re)open and tracks the notes it left sounding, so no note hangs.

The input's callback (rtmidi's thread; on JACK the reader thread of jack.JackMidiIO) only stamps
(time.monotonic) and queues; everything else happens on the caller's thread.

JACK ports are jack.py's, on the system's libjack (python-rtmidi's JACK backend
crashed under a MIDI flood and dropped what did not fit a cycle: see there). A
port registers with jack.JackWatch, which calls its `server_gone` when the server
dies; a JACK burst is queued and paced out over as many cycles as it takes, never
dropped, and a close waits until the queue has left (`flush`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import mido

from . import jack, rtmidi_io
from .backend import PortIO, describe_backend, is_jack, is_own_port, is_rtmidi
from .errors import PortError, PortNotFound
from .jack import JackMidiIO, JackWatch
from .rtmidi_io import MidoIO, RtmidiIO

log = logging.getLogger(__name__)

RECONNECT_INTERVAL_S = 1.0  # how often a port checks its peer; a lost synth is back within a second
JACK_GUARD_SENDS = 500  # JACK: check the server inline after this many sends
JACK_SILENCE_AGAIN_S = 0.05  # JACK: the closing silence is sent twice, this far apart
JACK_SILENCE_MAX = 6  # ... and again while the server reports xruns after it, up to this many times in all
COUNTER_LOG_S = 10.0  # an input that drops or cannot parse says so at most this often
# An input takes at most INPUT_RATE messages a second (bursts of INPUT_BURST), twice what a
# MIDI cable carries (~1000 three-byte messages/s): a flood from a broken device or a
# feedback loop is cut before it is parsed, and every message let through may cost the
# model a step, so this bounds the work input can make (measured in bench/hostile.py).
INPUT_RATE, INPUT_BURST = 2000.0, 500.0
ALL_CHANNELS = tuple(range(16))
CC_SUSTAIN, CC_ALL_NOTES_OFF = 64, 123


def list_ports(backend: mido.Backend) -> tuple[list[str], list[str]]:
    """(inputs, outputs): ports we can read from (keyboards) and write to (synths). Raises PortError."""
    if not is_rtmidi(backend):
        try:
            return list(backend.get_input_names()), list(backend.get_output_names())
        except Exception as e:
            raise PortError(f"cannot list MIDI ports ({describe_backend(backend)}): {e}") from None
    if is_jack(backend):
        return jack.list_ports(backend)
    return rtmidi_io.list_ports(backend)


def format_port_list(backend: mido.Backend) -> str:
    """What `cadenza-play --list-ports` prints; never raises."""
    head = f"MIDI backend: {describe_backend(backend)}"
    try:
        inputs, outputs = list_ports(backend)
    except PortError as e:
        return f"{head}\n{e}"
    lines = [head, "outputs (synths, for --output):"]
    lines += [f"  {n!r}" for n in outputs] or ["  (none)"]
    lines += ["inputs (keyboards, for --input):"]
    lines += [f"  {n!r}" for n in inputs] or ["  (none)"]
    return "\n".join(lines)


def resolve_port(query: str, available: list[str], kind: str = "output") -> str:
    """The one port whose name contains `query` (any case); an exact match wins. Else PortError."""
    if query in available:
        return query
    q = query.lower()
    exact = [n for n in available if n.lower() == q]
    matches = exact or [n for n in available if q in n.lower()]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(repr(n) for n in available) or "none"
    if not matches:
        raise PortNotFound(f"no MIDI {kind} matches {query!r}; available: {listed}")
    raise PortError(f"{len(matches)} MIDI {kind}s match {query!r}: {', '.join(map(repr, matches))}; be more specific")


def default_output(available: list[str], client_name: str = "cadenza") -> str | None:
    """The first output that is not a "Through" port nor ours, None if there is none."""
    for n in available:
        if "through" not in n.lower() and not is_own_port(n, client_name):
            return n
    return None


_P = TypeVar("_P", bound="Port")


# -- the port that survives its device, over a client of the backend (backend.PortIO) ---------


class Port:
    """What OutputPort and InputPort share: the client underneath, the maintenance thread, the reopen."""

    kind = "output"

    def __init__(
        self,
        query: str,
        backend: mido.Backend,
        client_name: str,
        reconnect_interval: float,
        callback: Callable[[Any, Any], None] | None = None,
        wait: bool = False,
    ):
        self.query = query
        self.wait = wait
        self.virtual = query.lower() == "virtual"
        self.client_name = client_name
        self.name = ""
        self.connected = False
        self.on_reconnect: Callable[[Port], None] | None = None
        self.lost_count = 0  # times the port was lost
        self._backend = backend
        self._callback = callback
        self._lock = threading.RLock()  # guards the io for senders; held only briefly
        self._maintain_lock = threading.Lock()  # one maintain() at a time (thread or caller)
        self._io: PortIO | None = None
        self._jack_watch: JackWatch | None = None
        self._lost_at = 0.0
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reconnect_interval = reconnect_interval

    def _start(self) -> None:
        """Open now (raising PortError when the port is not there), then keep it open."""
        self._make_io()
        try:
            try:
                target = None if self.virtual else self._choose(self._live_io().names())
            except PortNotFound as e:
                if not self.wait:
                    raise
                log.warning("%s; waiting for it", e)
                self._lost_at = time.monotonic()
            else:
                self._open(target)
        except BaseException:
            self._closed = True
            with contextlib.suppress(Exception):
                self._live_io().delete()  # no client left behind in aconnect / jack_lsp
            self._io = None
            raise
        if self._reconnect_interval > 0:
            self._thread = threading.Thread(target=self._run, name=f"midi-{self.kind}", daemon=True)
            self._thread.start()

    def _choose(self, names: list[str]) -> str | None:
        return resolve_port(self.query, names, self.kind)

    def _make_io(self) -> None:
        io: PortIO
        if is_jack(self._backend):
            io = JackMidiIO(self._backend, self.kind, self.client_name, self._callback)
        elif is_rtmidi(self._backend):
            io = RtmidiIO(self._backend, self.kind, self.client_name, self._callback)
        else:
            io = MidoIO(self._backend, self.kind, self.client_name, self._callback)
        with self._lock:
            self._io = io
        if io.jack:
            self._jack_watch = JackWatch()
            JackWatch.register(self)

    def _live_io(self) -> PortIO:
        """The client now; a JACK server found gone (another port's thread) may have dropped it meanwhile."""
        io = self._io
        if io is None:
            raise PortError(
                f"MIDI {self.kind} {self.name or self.query}: no client (closed, or the JACK server went away)"
            )
        return io

    @property
    def jack_watch(self) -> JackWatch | None:
        """The watch on the JACK server of the current client (jack.Watched); None when not on JACK."""
        return self._jack_watch

    def server_gone(self, why: str) -> None:
        """The JACK server went away (jack.JackWatch tells): the port is lost and its client dropped."""
        self._drop_io(why)

    def _open(self, target: str | None) -> None:
        # Senders leave the io alone until `connected`, so it is opened outside the lock.
        name = self._live_io().open(target)
        with self._lock:
            self.name = name
            self._on_open()
            self.connected = True
        log.info("MIDI %s %s open%s", self.kind, self.name, " (virtual)" if target is None else "")

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self._reconnect_interval):
            try:
                self.maintain()
                failures = 0
            except Exception:
                failures += 1
                if failures == 1:
                    log.exception("MIDI %s %s: maintenance failed; retrying", self.kind, self.name or self.query)

    def maintain(self) -> None:
        """Check the peer is still there; reopen a lost port. The port's thread calls this every second."""
        with self._maintain_lock:
            if not self._closed:
                self._maintain()

    def _maintain(self) -> None:
        if self._jack_watch is not None and not self._jack_watch.alive():
            self.server_gone("the JACK server went away")  # first: its clients must not be used again
        if self.connected:
            if not self.virtual:
                with self._lock:
                    names = self._io.names() if self._io is not None else []
                if self.name not in names:
                    self._lose("it vanished")
            if self.connected:
                return
        self._reconnect()

    def _lose(self, why: str) -> None:
        with self._lock:
            if not self.connected:
                return
            self.connected = False
            self._lost_at = time.monotonic()
            self.lost_count += 1
        log.warning("MIDI %s %s lost (%s); reopening when it is back", self.kind, self.name, why)

    def _drop_io(self, why: str) -> None:
        """Forget the whole client (JACK server gone): close it before libjack frees it under us."""
        self._lose(why)
        with self._lock:
            io, self._io, self._jack_watch = self._io, None, None
        if io is not None:
            with contextlib.suppress(Exception):
                io.delete()  # up to 1 s on a dead JACK server: rtmidi waits for a cycle that never comes

    def _reconnect(self) -> None:
        if self._io is not None and self.virtual:
            self._drop_io("reopening")  # rtmidi opens a virtual port once per client
        if self._io is None:
            if is_jack(self._backend) and not JackWatch.server_up():
                return
            self._make_io()
        else:
            with contextlib.suppress(Exception):
                self._io.close_port()  # here, not in _lose: that may run on the sender's thread
        with self._lock:
            names = self._live_io().names()
        if self.virtual:
            target = None
        elif self.name in names:
            target = self.name
        else:
            try:
                target = self._choose(names)
            except PortError:
                return  # not back yet (or ambiguous): try again next time
        self._open(target)
        log.info("MIDI %s %s back after %.1f s", self.kind, self.name, time.monotonic() - self._lost_at)
        if self.on_reconnect is not None:
            try:
                self.on_reconnect(self)
            except Exception:
                log.exception("on_reconnect callback failed")

    def _on_open(self) -> None:
        pass

    def close(self) -> None:
        """Close the port; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._before_close()
        with self._lock:
            io, self._io = self._io, None
            self.connected = False
        if io is not None:
            with contextlib.suppress(Exception):
                io.delete()

    def _before_close(self) -> None:
        pass

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "lost" if not self._closed else "closed"
        return f"<{type(self).__name__} {self.name or self.query!r} {state}>"


class OutputPort(Port):
    """An output by name substring, "virtual", or "" (first non-Through output, else virtual).

    send() never raises. It tracks the notes it leaves sounding (per channel, note);
    every (re)open and close silences them, and then CC 123 (all notes off) and CC 64
    (sustain off) on each channel used (all 16 at first, `silence_channels`).
    A name that matches no port raises PortNotFound, unless `wait`: then the port
    starts lost and opens when the port appears (a synth that starts after us).
    `on_reconnect(port)` runs on the port's thread after every reopen, and when a
    waited-for port first opens (to resend a program change, say).
    """

    kind = "output"

    def __init__(
        self,
        query: str,
        backend,
        client_name: str = "cadenza",
        *,
        wait: bool = False,
        silence_channels=ALL_CHANNELS,
        reconnect_interval: float = RECONNECT_INTERVAL_S,
    ):
        super().__init__(query or "", backend, client_name, reconnect_interval, wait=wait)
        self.dropped = 0  # messages sent while the port was lost (or that failed)
        self.sent = 0
        self._sounding: set[tuple[int, int]] = set()  # (channel 0..15, note)
        self._channels_used: set[int] = set(silence_channels)
        self._sends_since_check = 0
        self._start()

    def _choose(self, names: list[str]) -> str | None:
        if self.query:
            return resolve_port(self.query, names, self.kind)
        found = default_output(names, self.client_name)
        if found is None:
            log.info("no MIDI output found; opening a virtual one")
            self.virtual = True
        return found

    def send(self, msg: mido.Message) -> bool:
        """Send, or count a drop when the port is lost; True when it went out. Never raises."""
        why = None
        with self._lock:
            io = self._io if self.connected else None
            if io is not None and self._jack_watch is not None:
                why = self._jack_guard(self._jack_watch)
            if io is not None and why is None:
                try:
                    io.send(msg)
                except Exception as e:
                    why = f"send failed: {e}"
            ok = io is not None and why is None
            if ok:
                self.sent += 1
            else:
                self.dropped += 1
            self._track(msg, sent=ok)
        if why is not None:
            self._lose(why)
        return ok

    def _jack_guard(self, watch: JackWatch) -> str | None:
        """Why not to send (the server is gone), checked every JACK_GUARD_SENDS sends; None: send."""
        self._sends_since_check += 1
        if self._sends_since_check > JACK_GUARD_SENDS:
            self._sends_since_check = 0
            if not watch.alive():  # a send to a dead server would hang
                return "the JACK server went away"
        return None

    def _track(self, msg: mido.Message, sent: bool) -> None:
        t = msg.type
        if t == "note_on" and msg.velocity > 0:
            if sent:
                self._sounding.add((msg.channel, msg.note))
                self._channels_used.add(msg.channel)
        elif t in ("note_off", "note_on"):
            if sent:  # a lost note-off leaves the note in the set: the reopen silences it
                self._sounding.discard((msg.channel, msg.note))
        elif t == "control_change" and msg.control in (120, CC_ALL_NOTES_OFF) and sent:
            self._sounding = {(c, n) for c, n in self._sounding if c != msg.channel}
        elif t == "reset" and sent:
            self._sounding.clear()

    def sounding(self) -> frozenset[tuple[int, int]]:
        """The (channel, note) pairs switched on and not yet off; channels 0..15."""
        with self._lock:
            return frozenset(self._sounding)

    def all_notes_off(self) -> int:
        """Note-off for every sounding note, then CC 123 and CC 64 off per channel used; messages sent."""
        with self._lock:
            notes = sorted(self._sounding)
            channels = sorted(self._channels_used | {c for c, _ in notes})
        n = 0
        for channel, note in notes:
            n += self.send(mido.Message("note_off", channel=channel, note=note, velocity=0))
        for channel in channels:
            n += self.send(mido.Message("control_change", channel=channel, control=CC_ALL_NOTES_OFF, value=0))
            n += self.send(mido.Message("control_change", channel=channel, control=CC_SUSTAIN, value=0))
        with self._lock:
            if self.connected:
                self._sounding.clear()
        return n

    def _on_open(self) -> None:
        # Under the lock, before anyone else may send: whatever the synth still holds is silenced.
        notes = sorted(self._sounding)
        msgs = [mido.Message("note_off", channel=c, note=n, velocity=0) for c, n in notes]
        for c in sorted(self._channels_used | {c for c, _ in notes}):
            msgs.append(mido.Message("control_change", channel=c, control=CC_ALL_NOTES_OFF, value=0))
            msgs.append(mido.Message("control_change", channel=c, control=CC_SUSTAIN, value=0))
        try:
            io = self._live_io()
            for m in msgs:
                io.send(m)
            self.sent += len(msgs)
        except Exception as e:
            log.warning("MIDI output %s: all-notes-off failed: %s", self.name, e)
        self._sounding.clear()

    def _before_close(self) -> None:
        if self.connected:
            self.all_notes_off()
            self.flush()  # the silence must leave before the port does
            if is_jack(self._backend):
                # jackd's default asynchronous mode loses what a client late for its cycle wrote, and a
                # late client is often late for several cycles in a row. The server reports such a cycle
                # as an xrun: the closing CC 123 / CC 64 go out once more, JACK_SILENCE_AGAIN_S later,
                # and again while xruns came after the last one (JACK_SILENCE_MAX in all).
                sends = 1
                xruns = self._xruns()
                while sends < JACK_SILENCE_MAX:
                    time.sleep(JACK_SILENCE_AGAIN_S)
                    now = self._xruns()
                    if sends >= 2 and now == xruns:
                        break
                    xruns = now
                    self.all_notes_off()
                    self.flush()
                    sends += 1
                if sends > 2:
                    log.info("MIDI output %s: closing silence sent %d times (JACK xruns)", self.name, sends)

    def _xruns(self) -> int:
        """The xruns the JACK server has reported to this port's client (0 on other backends)."""
        with self._lock:
            return int(getattr(self._io, "xruns", 0))

    def flush(self, timeout: float = 2.0) -> bool:
        """Until what was sent has left this process (JACK: queued messages paced out); False on timeout."""
        with self._lock:
            io = self._io
        flush = getattr(io, "flush", None)
        return bool(flush(timeout)) if flush is not None and self.connected else True


class InputPort(Port):
    """An input by name substring, "virtual", "auto", or None/"none" (no input: get() just waits).

    "auto" takes the first input that is not a "Through" port nor ours, and waits for one
    (a keyboard plugged in later is found within a reconnect interval).

    The rtmidi callback (on JACK jack.JackMidiIO's 1 ms reader thread) stamps each message with
    time.monotonic() and queues it;
    a full queue drops (counted in `dropped`), bytes mido cannot parse are counted
    in `malformed`, messages beyond INPUT_RATE per second in `limited` (each
    logged, at most every COUNTER_LOG_S). MIDI clock, start, stop and continue come through; sysex and
    active sensing are filtered out by rtmidi. `wait` and `on_reconnect` as for
    OutputPort.
    """

    kind = "input"

    def __init__(
        self,
        query: str | None,
        backend,
        client_name: str = "cadenza",
        queue_size: int = 4096,
        *,
        wait: bool = False,
        reconnect_interval: float = RECONNECT_INTERVAL_S,
    ):
        self.dropped = 0
        self.malformed = 0
        self.received = 0
        self.limited = 0  # over INPUT_RATE, dropped unparsed
        self._budget, self._budget_t = INPUT_BURST, time.monotonic()
        self._logged, self._logged_at = (0, 0, 0, 0), -COUNTER_LOG_S  # counters as last logged
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.enabled = bool(query and query.lower() != "none")
        self.auto = (query or "").lower() == "auto"
        super().__init__(
            query or "none", backend, client_name, reconnect_interval, callback=self._on_midi, wait=wait or self.auto
        )
        if self.enabled:
            self._start()

    def _choose(self, names: list[str]) -> str | None:
        if not self.auto:
            return super()._choose(names)
        found = default_output(names, self.client_name)  # the same rule as for a synth
        if found is None:
            raise PortNotFound("no keyboard connected")
        return found

    def _on_midi(self, event, data=None) -> None:
        # rtmidi's thread (or the JACK reader, which passes its stamp): stamp first, never
        # block, never raise.
        t = data if isinstance(data, float) else time.monotonic()
        if t > self._budget_t:  # (JACK stamps are the cycle's, a little behind: never count time twice)
            self._budget = min(INPUT_BURST, self._budget + (t - self._budget_t) * INPUT_RATE)
            self._budget_t = t
        if self._budget < 1.0:
            self.limited += 1
            return
        self._budget -= 1.0
        try:
            msg = mido.Message.from_bytes(event[0])
        except Exception:
            self.malformed += 1
            return
        try:
            self._queue.put_nowait((t, msg))
            self.received += 1
        except queue.Full:
            self.dropped += 1
        except Exception:
            self.malformed += 1

    def get(self, timeout: float | None = None) -> tuple[float, mido.Message] | None:
        """The next (t_monotonic, message), or None after `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout) if timeout != 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[tuple[float, mido.Message]]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def maintain(self) -> None:
        if self.enabled:
            super().maintain()
            self._log_counters()

    def _log_counters(self, final: bool = False) -> None:
        """A line when messages were dropped or malformed since the last one (at most every COUNTER_LOG_S)."""
        now = time.monotonic()
        counts = (self.received, self.dropped, self.malformed, self.limited)
        if counts[1:] == self._logged[1:] or (not final and now - self._logged_at < COUNTER_LOG_S):
            return
        more_lost = counts[1] + counts[3] > self._logged[1] + self._logged[3]
        self._logged, self._logged_at = counts, now
        log.log(
            logging.WARNING if more_lost else logging.INFO,
            "MIDI input %s: %d received, %d dropped (queue full), %d malformed, %d over the rate limit",
            self.name or self.query,
            *counts,
        )

    def _before_close(self) -> None:
        if self.enabled:
            self._log_counters(final=True)
