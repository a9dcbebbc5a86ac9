"""A private JACK server (dummy driver) and small libjack clients (JACK-Client) for the port tests.

The dummy driver needs no sound card; a 16-frame period (0.33 ms at 48 kHz) keeps
JACK's own latency out of the measurements. jackd runs without realtime
scheduling (no privileges needed), so clients miss cycles on a busy machine; in
JACK2's default asynchronous mode a reader then sees a writer's stale buffer
again or misses a fresh one (measured: MIDI events duplicated and lost), so the
server runs synchronously (--sync: each cycle waits for every client). -s keeps
its xrun reports out of the log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import mido

PERIOD = int(os.environ.get("CADENZA_JACK_PERIOD", "16"))
RATE = 48000


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so no jackd outlives a killed run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def jack_env(server: str) -> dict:
    """What a process needs to reach this server and never auto-start another."""
    return {"JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}


class JackServer:
    """jackd -d dummy under its own name; start() returns once a client can connect."""

    def __init__(self, name: str, period: int = PERIOD, rate: int = RATE, log_dir: str | None = None):
        self.name, self.period, self.rate = name, period, rate
        self.log_path = Path(log_dir or tempfile.gettempdir()) / f"jackd-{name}.log"
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("jackd") is not None

    def command(self) -> list[str]:
        return [
            "jackd",
            "--no-realtime",
            "--sync",
            "-s",
            "-n",
            self.name,
            "-d",
            "dummy",
            "-r",
            str(self.rate),
            "-p",
            str(self.period),
        ]

    def socket_path(self) -> str:
        return f"/dev/shm/jack_{self.name}_{os.getuid()}_0"

    def start(self, timeout: float = 15.0) -> "JackServer":
        if self._accepts():
            raise RuntimeError(f"a JACK server named {self.name!r} is already running")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited with {self.proc.returncode}; see {self.log_path}")
            if self._accepts():
                time.sleep(0.1)  # the engine's first cycles
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"jackd did not come up in {timeout:g} s; see {self.log_path}")

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self.socket_path())
                return True
            except OSError:
                return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for _ in range(3):  # a SIGKILL would leave jackd's entry in its machine-wide server table
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=3)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait()


def start_free_server(prefix: str, log_dir: str | None = None, tries: int = 4) -> JackServer:
    """A server under the first free name of a small pool: prefix-0, prefix-1, ...

    jackd keeps a machine-wide table of 8 server names; a server killed without its
    goodbye keeps its entry until a server of the same name starts again. Unique names
    per run would fill the table for good ("Too many servers already active"); a pool
    reclaims them.
    """
    errors = []
    for i in range(tries):
        server = JackServer(f"{prefix}-{i}", log_dir=log_dir)
        try:
            return server.start()
        except RuntimeError as e:
            errors.append(str(e))
    raise RuntimeError("; ".join(errors))


def _find(names: list[str], query: str) -> int:
    matches = [i for i, n in enumerate(names) if n == query] or [i for i, n in enumerate(names) if query in n]
    if len(matches) != 1:
        raise LookupError(f"{query!r} in {names}: {len(matches)} matches")
    return matches[0]


class _JackClient:
    """A JACK client of this process with one MIDI port (libjack through JACK-Client, as the player's).

    Its process callback only moves bytes; cffi releases the GIL around every libjack
    call, so no thread here can stall the graph while it waits on the server.
    """

    kind = "in"

    def _open(self, client: str, target: str | None) -> None:
        import jack

        self._lock = threading.Lock()
        self.cycles = 0
        self._client = jack.Client(client, no_start_server=True)
        self._client.set_process_callback(self._process_cycle)
        ports = self._client.midi_inports if self.kind == "in" else self._client.midi_outports
        self._port = ports.register(self.kind)
        self._client.activate()
        self.name = self._port.name
        if target is not None:
            from cadenza.player.midi.jack import peers as midi_peers

            peers = midi_peers(self._client, readable=self.kind == "in")
            peer = peers[_find(peers, target)]
            if self.kind == "in":
                self._client.connect(peer, self._port)
            else:
                self._client.connect(self._port, peer)
            self.wait_cycles(2)  # a new connection carries data from the next cycle on

    def _process_cycle(self, frames: int) -> None:
        self._process(self._port, frames)
        self.cycles += 1

    def _process(self, port, frames: int) -> None:
        raise NotImplementedError

    def wait_cycles(self, n: int, timeout: float = 2.0) -> bool:
        start, end = self.cycles, time.monotonic() + timeout
        while self.cycles - start < n:
            if time.monotonic() > end:
                return False
            time.sleep(0.0005)
        return True

    def _before_close(self) -> None:
        pass

    def close(self) -> None:
        client, self._client = getattr(self, "_client", None), None
        if client is not None:
            self._before_close()
            client.deactivate()
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JackReceiver(_JackClient):
    """A synth stand-in: a JACK MIDI input that stamps what arrives (time.monotonic_ns()).

    source=None opens a port "<client>:in" for others to connect to; else it connects
    to the output port whose name contains `source`. Events are recorded in JACK's
    process thread, at the cycle that brings them (late by up to a period), into a list
    with no limit: nothing is dropped here (sysex and active sensing are skipped).
    """

    kind = "in"

    def __init__(self, source: str | None = None, client: str = "synth"):
        self.torn = 0  # cycles whose buffer was not sane (player.midi.jack.read_events)
        self.events: list[tuple[int, list[int]]] = []
        self._cond = threading.Condition()
        self._open(client, source)

    def _process(self, port, frames: int) -> None:
        from cadenza.player.midi.jack import read_events

        batch = []
        t = time.monotonic_ns()
        events = read_events(port, frames)
        if events is None:
            self.torn += 1
            return
        for data in events:
            if data[0] not in (0xF0, 0xFE):
                batch.append((t, list(data)))
        if batch:
            with self._cond:
                self.events.extend(batch)
                self._cond.notify_all()

    def messages(self) -> list[mido.Message]:
        with self._cond:
            return [mido.Message.from_bytes(b) for _, b in self.events]

    def wait_for(self, count: int, timeout: float = 3.0) -> bool:
        """Until at least `count` events have arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.events) >= count, timeout)

    def settle(self, quiet: float = 0.3, timeout: float = 5.0) -> None:
        """Until nothing has arrived for `quiet` seconds (at most `timeout`): a sender's last messages
        are through the JACK graph and this process's client (late on a loaded machine)."""
        end = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < end:
            with self._cond:
                n = len(self.events)
            if n == seen:
                return
            seen = n
            time.sleep(quiet)

    def clear(self) -> None:
        with self._cond:
            self.events.clear()


class JackSender(_JackClient):
    """A keyboard stand-in: a JACK MIDI output, "<client>:out" or connected to `target`.

    send() queues; the process callback writes what fits in the port buffer each cycle
    and keeps the rest for the next (`refused` counts the cycles that filled up), so it
    never overfills the buffer and never drops. `flush()` waits until all has left.
    """

    kind = "out"

    def __init__(self, target: str | None = None, client: str = "keys"):
        import collections

        self._queue: collections.deque = collections.deque()
        self.written = 0
        self.refused = 0
        self._open(client, target)

    def _process(self, port, frames: int) -> None:
        from cadenza.player.midi.jack import write_queued

        written, full, _too_big = write_queued(port, self._queue)
        self.written += written
        self.refused += full

    def send(self, data) -> None:
        """Raw bytes (any list of ints, valid MIDI or not) or a mido message."""
        self._queue.append(bytes(data.bytes() if isinstance(data, mido.Message) else data))

    def pending(self) -> int:
        return len(self._queue)

    def flush(self, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while self._queue:
            if time.monotonic() > end:
                return False
            time.sleep(0.0005)
        return self.wait_cycles(2, max(0.0, end - time.monotonic()))

    def _before_close(self) -> None:
        self.flush(1.0)
