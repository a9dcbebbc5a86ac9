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
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
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
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _rt(kind: str, client: str):
    import rtmidi

    cls = rtmidi.MidiIn if kind == "input" else rtmidi.MidiOut
    return cls(rtapi=rtmidi.API_UNIX_JACK, name=client)


def _find(names: list[str], query: str) -> int:
    matches = [i for i, n in enumerate(names) if n == query] or [i for i, n in enumerate(names) if query in n]
    if len(matches) != 1:
        raise LookupError(f"{query!r} in {names}: {len(matches)} matches")
    return matches[0]


class JackReceiver:
    """A synth stand-in: a JACK MIDI input that stamps what arrives (time.monotonic_ns()).

    source=None opens a virtual port "<client>:in" for others to connect to;
    else it connects to the output port whose name contains `source`.
    """

    def __init__(self, source: str | None = None, client: str = "synth"):
        self.events: list[tuple[int, list[int]]] = []
        self._cond = threading.Condition()
        self._rt = _rt("input", client)
        self._rt.ignore_types(sysex=True, timing=False, active_sense=True)
        self._rt.set_callback(self._on_midi)
        if source is None:
            self._rt.open_virtual_port("in")
        else:
            self._rt.open_port(_find(self._rt.get_ports(), source), "in")
            time.sleep(0.05)  # a new JACK connection carries data after a cycle or two

    def _on_midi(self, event, data=None):
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

    def clear(self) -> None:
        with self._cond:
            self.events.clear()

    def close(self) -> None:
        if self._rt is not None:
            self._rt.close_port()
            self._rt.cancel_callback()
            self._rt.delete()
            self._rt = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JackSender:
    """A keyboard stand-in: a JACK MIDI output, virtual ("<client>:out") or connected to `target`."""

    def __init__(self, target: str | None = None, client: str = "keys"):
        self._rt = _rt("output", client)
        if target is None:
            self._rt.open_virtual_port("out")
        else:
            self._rt.open_port(_find(self._rt.get_ports(), target), "out")
            time.sleep(0.05)

    def send(self, data) -> None:
        """Raw bytes (any list of ints, valid MIDI or not) or a mido message."""
        self._rt.send_message(data.bytes() if isinstance(data, mido.Message) else list(data))

    def close(self) -> None:
        if self._rt is not None:
            self._rt.close_port()
            self._rt.delete()
            self._rt = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
