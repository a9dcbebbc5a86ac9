"""Shared by the timing benches: a private JACK server, the receiver process, a busy core, stats."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from support.jack import JackServer, jack_env

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"


class BenchJackServer(JackServer):
    """The tests' server, with jackd's process thread at real-time priority by default (as on a Pi with
    the audio group's rtprio limit: without it, on a loaded machine, JACK's own cycle is late), and
    optionally fewer ports (`port_max`: its shared memory, mapped by every client, grows with it)."""

    def __init__(self, name: str, *, realtime: bool = True, port_max: int | None = None, **kw) -> None:
        super().__init__(name, **kw)
        self.realtime, self.port_max = realtime, port_max

    def command(self) -> list[str]:
        cmd = super().command()
        options = ["--port-max", str(self.port_max)] if self.port_max is not None else []
        if self.realtime:
            cmd.remove("--no-realtime")
            options += ["-R", "-P", "70"]
        return cmd[:1] + options + cmd[1:]


@contextlib.contextmanager
def jack(period: int = 16, realtime: bool = True, port_max: int | None = None):
    OUT.mkdir(parents=True, exist_ok=True)
    server = BenchJackServer(
        f"cadenza-bench-{os.getpid()}", realtime=realtime, port_max=port_max, period=period, log_dir=str(OUT)
    )
    os.environ.update(jack_env(server.name))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def receiver(port: str, duration: float, name: str):
    """bench/receiver.py in its own process; yields the path of its JSON lines."""
    out = OUT / f"{name}.recv.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "receiver.py"),
            "--port",
            port,
            "--out",
            str(out),
            "--duration",
            str(duration),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"receiver did not start: {line!r}")
    try:
        yield out
    finally:
        try:
            proc.wait(timeout=duration + 10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()


@contextlib.contextmanager
def busy_core(on: bool):
    """A process spinning on the other core (when on)."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.terminate()
        proc.wait()


def read_received(path: Path) -> list[tuple[float, list[int]]]:
    rows = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            rows.append((d["t_ns"] / 1e9, d["data"]))
    return rows


def stats_ms(errors_s) -> dict:
    e = np.asarray(errors_s) * 1e3
    if e.size == 0:
        return {"n": 0}
    return {
        "n": int(e.size),
        "p50": round(float(np.percentile(e, 50)), 3),
        "p99": round(float(np.percentile(e, 99)), 3),
        "max": round(float(e.max()), 3),
        "min": round(float(e.min()), 3),
    }


def save(name: str, result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
