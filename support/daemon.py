"""cadenza-play as a subprocess, as systemd runs it: a config file, a notify socket, signals.

    with NotifySocket() as sd, Player(write_config(tmp, model, client="t1"), notify=sd) as p:
        p.wait_ready()
        ...
        assert p.stop() == 0

    p = jack_player(bundle, sd, "--output", "synth1")   # the same, from flags (started, watchdog on)

and what a synth heard: sounding_after(...) and notes(...). Used by the service, daemon and fault tests;
bench/hostile.py drives the same class.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import mido

ROOT = Path(__file__).resolve().parent.parent
CADENZA_PLAY = Path(sys.executable).parent / "cadenza-play"  # the installed console script
UNIT = ROOT / "systemd" / "cadenza.service"


def write_config(
    folder: Path,
    model: str | Path,
    *,
    client: str,
    mode: str = "solo",
    input: str = "none",
    tempo: float = 100.0,
    seed: int | None = 1,
    controls: dict | None = None,
    extra: str = "",
    name: str = "config.toml",
    output: str = "virtual",
) -> Path:
    """A config file like the service's /etc/cadenza/config.toml, for JACK (virtual ports by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f'model = "{model}"',
        "",
        "[midi]",
        'backend = "jack"',
        f'output = "{output}"',
        f'input = "{input}"',
        f'client_name = "{client}"',
        "",
        "[play]",
        f'mode = "{mode}"',
        f"tempo = {tempo}",
    ]
    if seed is not None:
        lines.append(f"seed = {seed}")
    if controls:
        lines += ["", "[controls]"] + [f"{k} = {v}" for k, v in controls.items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


class NotifySocket:
    """The service manager's side of sd_notify: an AF_UNIX datagram socket that keeps (t, fields), and
    every line said in `lines` (read() waits for one)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cadenza-sd-", dir="/tmp")  # sun_path holds 108 bytes only
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict]] = []
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-socket", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            t = time.monotonic()
            lines = data.decode().split("\n")
            fields = dict(line.split("=", 1) for line in lines if "=" in line)
            with self._cond:
                self.messages.append((t, fields))
                self.lines += lines
                self._cond.notify_all()

    def env(self, watchdog_usec: int | None = None) -> dict:
        env = {"NOTIFY_SOCKET": self.path}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def times(self, key: str, value: str | None = None) -> list[float]:
        with self._cond:
            return [t for t, f in self.messages if key in f and (value is None or f[key] == value)]

    def values(self, key: str) -> list[str]:
        with self._cond:
            return [f[key] for _, f in self.messages if key in f]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0, after: float = 0.0) -> float | None:
        """The time the first `key`(=`value`) after `after` arrived, waiting up to `timeout`."""
        with self._cond:
            ok = self._cond.wait_for(lambda: any(t > after for t in self.times(key, value)), timeout)
            return next(t for t in self.times(key, value) if t > after) if ok else None

    def read(self, until: str | None = None, timeout: float = 10.0) -> list[str]:
        """The lines said so far, once one starts with `until` or after `timeout` (`until` None: a moment)."""
        with self._cond:
            if until is None:
                self._cond.wait(min(timeout, 0.1))
            else:
                self._cond.wait_for(lambda: any(ln.startswith(until) for ln in self.lines), timeout)
            return list(self.lines)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        for p in (self.path, self.dir):
            try:
                os.unlink(p) if p == self.path else os.rmdir(p)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Player:
    """cadenza-play --config FILE [args] in a subprocess; stderr goes to a file (read with .log())."""

    def __init__(
        self,
        config: Path | None,
        *args: str,
        notify: NotifySocket | None = None,
        watchdog_usec: int | None = None,
        env: dict | None = None,
    ) -> None:
        self.args = [str(CADENZA_PLAY)] + (["--config", str(config)] if config is not None else []) + list(args)
        self.env = dict(os.environ)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("WATCHDOG_USEC", None)
        self.env["PYTHONUNBUFFERED"] = "1"
        if notify is not None:
            self.env.update(notify.env(watchdog_usec))
        self.env.update(env or {})
        self.notify = notify
        folder = Path(config).parent if config is not None else Path(tempfile.mkdtemp(prefix="cadenza-play-"))
        self.log_path = folder / f"player-{int(time.monotonic() * 1000)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Player":
        self._logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._logf
        )
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 60.0, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return True
            if self.proc.poll() is not None:
                return self.log().count(text) >= count
            time.sleep(0.05)
        return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the player says it is ready (the model loads in a few seconds on a busy machine)."""
        if not self.wait_log("ready in", timeout):
            raise AssertionError(f"cadenza-play not ready (exit {self.proc.poll()}):\n{self.log()[-3000:]}")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig`, wait for the exit; its exit code (or -signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the player's own goodbye: its JACK client is removed
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_logf", None) is not None:
            self._logf.close()
            self._logf = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.close()


def jack_player(
    bundle: str | Path,
    notify: NotifySocket,
    *extra: str | Path,
    mode: str = "solo",
    tempo: float | None = 240,
    seed: int | None = 1,
    input: str = "none",
    config: Path | None = None,
    env: dict | None = None,
) -> Player:
    """cadenza-play on JACK from flags, started, its watchdog on; tempo/seed None leave them to the config."""
    args = ["--backend", "jack", "--model", str(bundle), "--mode", mode, "--input", input]
    for flag, value in (("--tempo", tempo), ("--seed", seed)):
        if value is not None:
            args += [flag, str(value)]
    args += [str(a) for a in extra]
    player = Player(config, *args, notify=notify, watchdog_usec=400000, env={"WATCHDOG_PID": "", **(env or {})})
    return player.start()


def run_player(*args: object, timeout: float = 60.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """cadenza-play with `args` (made strings), to completion: its exit code, stdout and stderr as text."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [str(CADENZA_PLAY), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        stdin=subprocess.DEVNULL,
    )


def one_line_exit_2(r: subprocess.CompletedProcess) -> str:
    """The one `cadenza-play:` line of a run that exited 2 (asserted: no traceback)."""
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("cadenza-play:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def unit_keys() -> dict[str, list[str]]:
    """The service unit's settings: key -> its values, in order (all sections together)."""
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            keys.setdefault(k, []).append(v)
    return keys


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sounding_after(events: Iterable[mido.Message | tuple[int, Sequence[int]]]) -> set[tuple[int, int]]:
    """(channel, note) left on at the receiver: note-ons without a later note-off or CC 123/120.

    `events` are mido messages (JackReceiver.messages()) or its raw (time, bytes) events (.events)."""
    on: set[tuple[int, int]] = set()
    for e in events:
        data = e.bytes() if isinstance(e, mido.Message) else e[1]
        if len(data) != 3:
            continue
        status, ch = data[0] & 0xF0, data[0] & 0x0F
        if status == 0x90 and data[2] > 0:
            on.add((ch, data[1]))
        elif status in (0x80, 0x90):
            on.discard((ch, data[1]))
        elif status == 0xB0 and data[1] in (120, 123):
            on = {k for k in on if k[0] != ch}
    return on


def notes(msgs: Iterable[mido.Message]) -> list[mido.Message]:
    """The note-ons (velocity > 0) among mido messages."""
    return [m for m in msgs if m.type == "note_on" and m.velocity]


def wait_sounding(synth, timeout: float = 20.0) -> set:
    """Until a note sounds at the synth (a JackReceiver; the model rests now and then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        on = sounding_after(list(synth.events))
        if on:
            return on
        time.sleep(0.005)
    raise AssertionError("no note sounding at the synth")
