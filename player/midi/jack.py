"""JACK MIDI through the system's libjack (the JACK-Client package), with the process callback ours,
and the watch on the JACK server that our clients live in.

Why not python-rtmidi on JACK (measured with jackd 1.9.21, python-rtmidi 1.5.8, a flood of
~20,000 messages/s with sysex up to 1 kB: bench/hostile.py, figures in bench/README.md):

- under the flood, with jackd in its default asynchronous mode at a 16-frame period,
  the player died of SIGSEGV in most runs, in rtmidi's JACK input callback
  (`jackProcessIn` -> `std::vector::push_back`: every event is copied in JACK's
  thread into one shared message, checked by nothing, and queued to another thread
  through a ring without memory barriers): a native thread no Python can guard, and
  the notes it left sounding hung at the synth.
- rtmidi's JACK output writes its whole ring buffer into the port buffer each cycle
  and silently throws away whatever does not fit (`jack_midi_event_reserve` returns
  NULL); its send spins, holding the GIL, while its ring buffer is full.

Here the process callback is a few lines of Python that only move bytes: the input
copies each event (sysex and active sensing are dropped, as before) into a bounded
deque that a reader thread hands on, stamped at the cycle that brought it (as
rtmidi's JACK input stamps: up to one period late; 0.33 ms at 16 frames); the
output takes queued messages while the port buffer has room and keeps the rest for
the next cycle, so nothing is dropped for want of space and a burst is paced out
over as many cycles as it needs. `flush()` waits until the queue is empty and two
more cycles have run: what was sent has left for its peer.

The callback needs the GIL; cffi releases it around every libjack call, so no
thread of ours can hold it while it waits on the server (rtmidi's stall).

Closing a client that libjack already freed (it frees every dead client when a new
one opens) segfaults. So the ports watch the server's socket (`JackWatch`), stop
sending at once, and drop their clients before any new client is made: every
client made here first calls `JackWatch.before_new_client()`, which tells each
registered port whose server is gone (`server_gone(why)`).
"""

from __future__ import annotations

import collections
import contextlib
import glob
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import mido

from .errors import PortError, explain

log = logging.getLogger(__name__)

INPUT_RING = 8192  # events between the process thread and the reader; more are counted and dropped
OUTPUT_LIMIT = 16384  # queued messages; beyond this the server is not cycling: send() fails
POLL_S = 0.001  # the reader's wake-up period (the rtmidi poller's too)
FLUSH_TIMEOUT_S = 2.0
_IGNORED = (0xF0, 0xF7, 0xFE)  # sysex (its start and a stray end) and active sensing


def _lib():
    try:
        import jack
    except ImportError:
        raise PortError("JACK MIDI needs the JACK-Client package: pip install JACK-Client") from None
    except OSError as e:  # libjack itself is missing
        raise PortError(f"no MIDI system: libjack is not installed ({e})") from None
    return jack


def _client(backend, name: str):
    jack = _lib()
    with contextlib.suppress(Exception):
        jack.set_error_function(lambda msg: log.debug("libjack: %s", msg))
        jack.set_info_function(lambda msg: None)
    try:
        return jack.Client(name, no_start_server=True)
    except jack.JackError as e:
        raise PortError(explain(backend, RuntimeError(f"JACK: {e}"))) from None


def peers(client, readable: bool) -> list[str]:
    """MIDI ports we can read from (readable: others' outputs) or write to (others' inputs)."""
    return [p.name for p in client.get_ports(is_midi=True, is_output=readable, is_input=not readable)]


def list_ports(backend) -> tuple[list[str], list[str]]:
    """(inputs, outputs) as rtmidi names them: ports we can read from, ports we can write to."""
    JackWatch.before_new_client()
    client = _client(backend, "cadenza-list")
    try:
        return peers(client, True), peers(client, False)
    finally:
        with contextlib.suppress(Exception):
            client.close()


MAX_EVENTS = 4096  # a JACK MIDI buffer (32 KB) holds at most ~2,730 events: more is a torn buffer
MAX_SPAN = 1 << 16  # no event's bytes lie further than this from the buffer's start


def read_events(port, frames: int) -> list[bytes] | None:
    """The MIDI events in an input port's buffer this cycle; None when the buffer is not sane.

    In jackd's asynchronous mode a reader can see a buffer its writer is tearing down or
    rewriting (a peer that just left): an event count in the millions, offsets pointing
    anywhere. JACK checks neither; copying such an event is what crashed rtmidi, and
    iterating the count hangs the callback. So the count and every event's place and
    size are checked against the buffer before a byte is copied.
    """
    import jack

    lib, ffi = jack._lib, jack._ffi
    buf = lib.jack_port_get_buffer(port._ptr, frames)
    if buf == ffi.NULL:
        return None
    count = lib.jack_midi_get_event_count(buf)
    if count > MAX_EVENTS:
        return None
    start = int(ffi.cast("uintptr_t", buf))
    event = port._event
    out = []
    for i in range(count):
        if lib.jack_midi_event_get(event, buf, i):
            return None
        size = event.size
        where = int(ffi.cast("uintptr_t", event.buffer)) - start
        if not 0 < size <= MAX_SPAN or event.time >= frames or not 0 <= where <= MAX_SPAN - size:
            return None
        out.append(bytes(ffi.buffer(event.buffer, size)))
    return out


def write_queued(port, queue: collections.deque) -> tuple[int, int, int]:
    """In a process callback: the queue's messages into the port buffer while it has room.

    Returns (written, full, too_big): full is 1 when the buffer filled up (about 2,700
    short messages at any period) and the rest waits for the next cycle; a message an
    empty buffer cannot take never fits and is dropped, counted in too_big.
    """
    port.clear_buffer()
    n = too_big = 0
    while queue:
        data = queue[0]
        slot = port.reserve_midi_event(0, len(data))
        if not slot:
            if n:
                return n, 1, too_big
            queue.popleft()
            too_big += 1
            continue
        slot[:] = data
        queue.popleft()
        n += 1
    return n, 0, too_big


class JackMidiIO:
    """One JACK client with one MIDI port (a backend.PortIO, as rtmidi_io.RtmidiIO).

    An input hands `callback(([bytes...], 0.0), t_monotonic)` from its reader thread.
    """

    jack = True

    def __init__(
        self, backend: mido.Backend, kind: str, client_name: str, callback: Callable[[Any, Any], None] | None = None
    ):
        self.kind, self.client_name, self._backend, self._callback = kind, client_name, backend, callback
        JackWatch.before_new_client()
        self.client = _client(backend, client_name)
        self.port: Any = None  # a jack.OwnMidiPort once open
        self.cycles = 0  # process callbacks run
        self.errors = 0  # exceptions caught in the process callback
        self.server_gone = False
        # input
        self._in: collections.deque = collections.deque()
        self.dropped = 0  # input events over INPUT_RING
        self.ignored = 0  # sysex and active sensing
        self.torn = 0  # cycles whose input buffer was not sane (skipped whole)
        self._reader: threading.Thread | None = None
        self._reader_stop = threading.Event()
        # output
        self._out: collections.deque = collections.deque()
        self.written = 0  # messages handed to the server
        self.deferred = 0  # cycles whose port buffer filled up: the rest went out a cycle later
        self.too_big = 0  # messages larger than the port buffer can ever take
        self.xruns = 0  # cycles the server reported late (asynchronous mode: what they carried may be lost)
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.set_shutdown_callback(self._shutdown)
        self.client.activate()

    # -- the process thread -------------------------------------------------------------

    def _process(self, frames: int) -> None:
        # An exception escaping here would make libjack drop the client for good: count it instead.
        port = self.port
        try:
            if port is not None:
                if self.kind == "input":
                    self._take(port, frames)
                else:
                    self._give(port)
        except Exception:
            self.errors += 1
        self.cycles += 1

    def _take(self, port, frames: int) -> None:
        now = time.monotonic()
        ring, ignored = self._in, _IGNORED
        events = read_events(port, frames)
        if events is None:
            self.torn += 1
            return
        for data in events:
            if data[0] in ignored:
                self.ignored += 1
            elif len(ring) >= INPUT_RING:
                self.dropped += 1
            else:
                ring.append((data, now))

    def _give(self, port) -> None:
        written, full, too_big = write_queued(port, self._out)
        self.written += written
        self.deferred += full
        self.too_big += too_big

    def _xrun(self, delayed_usecs: float) -> None:
        self.xruns += 1

    def _shutdown(self, status, reason) -> None:
        self.server_gone = True

    # -- the rest of the process --------------------------------------------------------

    def names(self) -> list[str]:
        """Peers in the other direction: outputs for an input, inputs for an output."""
        return peers(self.client, readable=self.kind == "input")

    def open(self, name: str | None) -> str:
        """Register our port and connect it to the named peer (None: a port of our own only)."""
        short = "in" if self.kind == "input" else "out"
        callback = self._callback
        if self.kind == "input" and callback is None:
            raise PortError("a MIDI input needs a callback")
        if name is not None and name not in self.names():
            raise PortError(f"MIDI {self.kind} {name!r} is gone")
        ports = self.client.midi_inports if self.kind == "input" else self.client.midi_outports
        port = ports.register(short)
        try:
            if name is not None:
                if self.kind == "input":
                    self.client.connect(name, port.name)
                else:
                    self.client.connect(port.name, name)
        except Exception as e:
            with contextlib.suppress(Exception):
                port.unregister()
            raise PortError(f"cannot connect to MIDI {self.kind} {name!r}: {e}") from None
        self.port = port
        if self.kind == "input":
            self._reader_stop.clear()
            self._reader = threading.Thread(target=self._read, args=(callback,), name="midi-input-jack", daemon=True)
            self._reader.start()
        if name is not None:
            self._cycles_pass(2, 0.5)  # a new connection carries data from the next cycle on
        return port.name if name is None else name

    def _read(self, callback: Callable[[Any, Any], None]) -> None:
        ring, stop = self._in, self._reader_stop
        while not stop.is_set():
            if not ring:
                time.sleep(POLL_S)
                continue
            while ring:
                data, t = ring.popleft()
                try:
                    callback((list(data), 0.0), t)
                except Exception:  # the reader must outlive any one message
                    log.exception("MIDI input: a message could not be handled")

    def send(self, msg: mido.Message) -> None:
        if self.server_gone:
            raise OSError("the JACK server went away")
        if len(self._out) >= OUTPUT_LIMIT:
            raise OSError("the JACK server takes no data (no process cycles)")
        self._out.append(bytes(msg.bytes()))

    def pending(self) -> int:
        return len(self._out)

    def _cycles_pass(self, n: int, timeout: float) -> bool:
        start, end = self.cycles, time.monotonic() + timeout
        while self.cycles - start < n:
            if self.server_gone or time.monotonic() > end:
                return False
            time.sleep(0.0005)
        return True

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Until every queued message has gone to the server and two more cycles ran; False on timeout."""
        end = time.monotonic() + timeout
        while self._out:
            if self.server_gone or self.port is None or time.monotonic() > end:
                return False
            time.sleep(0.0005)
        return self._cycles_pass(2, max(0.0, end - time.monotonic()))

    def close_port(self) -> None:
        if self.kind == "output" and self.port is not None:
            self.flush()
        self._reader_stop.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join()
        self._reader = None
        port, self.port = self.port, None
        if port is not None and not self.server_gone:
            self._cycles_pass(1, 0.2)  # the process thread has let go of the port
            with contextlib.suppress(Exception):
                port.unregister()
        self._out.clear()

    def delete(self) -> None:
        with contextlib.suppress(Exception):
            self.close_port()
        with contextlib.suppress(Exception):
            if not self.server_gone:
                self.client.deactivate()
        with contextlib.suppress(Exception):
            self.client.close()


# -- the JACK server watch ---------------------------------------------------------------------


class Watched(Protocol):
    """What JackWatch.register takes: a port whose JACK client must go before its dead server's is freed."""

    @property
    def jack_watch(self) -> JackWatch | None:
        """The watch on the server of the port's current client; None when it has no JACK client."""
        ...

    def server_gone(self, why: str) -> None:
        """Forget the client now (close it before libjack frees it under us)."""
        ...


class JackWatch:
    """Is the JACK server that our clients live in still the same one?

    Class-level state on purpose: libjack's own state is per process (a new client
    frees the dead clients of every port), so the ports must coordinate per process.

    jack2 listens on <tmpdir>/jack_<server>_<uid>_0; a connect() there is silent for
    the server and fails at once when it is gone (even after a SIGKILL left the file).
    A restarted server has a new socket inode. Where no socket is found (PipeWire's
    libjack), the watch says "alive" and the port list check is all there is.
    """

    _lock = threading.Lock()
    _ports: weakref.WeakSet[Watched] = weakref.WeakSet()

    def __init__(self) -> None:
        server = os.environ.get("JACK_DEFAULT_SERVER") or "default"
        dirs = [d for d in (os.environ.get("JACK_TMPDIR"), "/dev/shm", "/tmp") if d]
        found: list[str] = []
        for d in dirs:
            found += glob.glob(os.path.join(glob.escape(d), f"jack_{glob.escape(server)}_{os.getuid()}_0"))
            found += glob.glob(os.path.join(glob.escape(d), f"jack_{glob.escape(server)}_*_0"))
        self.path = found[0] if found else None
        self.inode = self._inode()

    def _inode(self) -> int | None:
        try:
            return os.stat(self.path).st_ino if self.path else None
        except OSError:
            return None

    def alive(self) -> bool:
        """The server we connected to still runs (False after a restart too)."""
        if self.path is None:
            return True
        if self._inode() != self.inode:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self.path)
                return True
            except OSError:
                return False

    @classmethod
    def server_up(cls) -> bool:
        w = cls()
        return w.path is not None and w.alive()

    @classmethod
    def register(cls, port: Watched) -> None:
        """Tell `port` (held weakly) when its server is found gone before a new client is made."""
        with cls._lock:
            cls._ports.add(port)

    @classmethod
    def before_new_client(cls) -> None:
        """Drop every client of a dead server first: libjack frees them when a new client opens."""
        with cls._lock:
            ports = list(cls._ports)
        for p in ports:
            w = p.jack_watch
            if w is not None and not w.alive():
                p.server_gone("the JACK server went away")
