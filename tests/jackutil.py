"""A private JACK server (dummy driver) and small rtmidi clients for the port tests.

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
        return ["jackd", "--no-realtime", "--sync", "-s", "-n", self.name, "-d", "dummy",
                "-r", str(self.rate), "-p", str(self.period)]

    def socket_path(self) -> str:
        return f"/dev/shm/jack_{self.name}_{os.getuid()}_0"

    def start(self, timeout: float = 15.0) -> "JackServer":
        if self._accepts():
            raise RuntimeError(f"a JACK server named {self.name!r} is already running")
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
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
    """An rtmidi JACK port of this process: virtual ("<client>:<kind>") or connected by name; closes once."""

    def _open(self, rt, target: str | None, kind: str) -> None:
        self._rt = rt
        if target is None:
            rt.open_virtual_port(kind)
        else:
            rt.open_port(_find(rt.get_ports(), target), kind)
            time.sleep(0.05)  # a new JACK connection carries data after a cycle or two

    def _before_close(self) -> None:
        pass

    def close(self) -> None:
        if self._rt is not None:
            self._before_close()
            self._rt.close_port()
            self._rt.delete()
            self._rt = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JackReceiver(_JackClient):
    """A synth stand-in: a JACK MIDI input that stamps what arrives (time.monotonic_ns()).

    source=None opens a virtual port "<client>:in" for others to connect to;
    else it connects to the output port whose name contains `source`.

    It polls rtmidi's queue from a thread (every POLL_S) instead of taking a callback: a
    Python callback runs in JACK's process thread and needs the GIL, which python-rtmidi
    holds while it blocks on the server (closing a port, say) in another thread of this
    process: the server then waits for the callback, a stall of seconds (the player's
    input polls for the same reason). Stamps are late by up to POLL_S.
    """

    POLL_S = 0.0005

    def __init__(self, source: str | None = None, client: str = "synth"):
        import rtmidi

        self.events: list[tuple[int, list[int]]] = []
        self._cond = threading.Condition()
        rt = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name=client, queue_size_limit=16384)
        rt.ignore_types(sysex=True, timing=False, active_sense=True)
        self._open(rt, source, "in")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="jack-receiver", daemon=True)
        self._thread.start()

    def _poll(self):
        rt = self._rt
        while not self._stop.is_set():
            event = rt.get_message()
            if event is None:
                time.sleep(self.POLL_S)
                continue
            t = time.monotonic_ns()
            with self._cond:
                self.events.append((t, list(event[0])))
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

    def _before_close(self) -> None:
        self._stop.set()
        self._thread.join()


class JackSender(_JackClient):
    """A keyboard stand-in: a JACK MIDI output, virtual ("<client>:out") or connected to `target`."""

    def __init__(self, target: str | None = None, client: str = "keys"):
        import rtmidi

        self._open(rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=client), target, "out")

    def send(self, data) -> None:
        """Raw bytes (any list of ints, valid MIDI or not) or a mido message."""
        self._rt.send_message(data.bytes() if isinstance(data, mido.Message) else list(data))

