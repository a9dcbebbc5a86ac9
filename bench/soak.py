"""Soak: the player for hours, checked for hung notes, over-long notes, drift and memory growth.

    python bench/soak.py --sim-hours 24 --model tiny.cadenza        # simulated clock (CI: tests/test_fault_soak.py)
    python bench/soak.py --minutes 30 --model tiny.cadenza          # real time: cadenza-play on JACK

Simulated: the live engine, conductor, input router and scheduler on a SimClock
(the code --render runs), in duet mode with a keyboard phrase every few minutes
(so rollbacks and the encoder are exercised), as fast as the model steps. Every
message the scheduler sends is checked: no note longer than the codec allows
(events.MAX_NOTE_TICKS), every deadline on the tempo grid (t0 + tick * seconds per
tick, computed afresh: the time base must not accumulate error), nothing sent
off its deadline, nothing sounding when the player stops; resident memory is
read from /proc/self/status once a simulated hour.

Real time: cadenza-play (duet, virtual JACK ports, a keyboard playing a phrase
now and then) in a subprocess, a JACK receiver on its output; RSS from
/proc/PID/status each minute, lateness against the note grid, sounding notes at
the end. Needs a JACK server (JACK_DEFAULT_SERVER) or starts its own.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from cadenza.player import events as ev  # noqa: E402

TEMPO = 100.0
SPT = 60.0 / (TEMPO * ev.TICKS_PER_BEAT)  # seconds per tick


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size (VmRSS) in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def phrase(t0: float, seed: int) -> list[tuple[float, mido.Message]]:
    """A short keyboard phrase: eight notes, some overlapping, from t0 (seconds)."""
    import random

    rnd = random.Random(seed)
    out, t = [], t0
    for _ in range(8):
        note = rnd.randint(48, 84)
        dur = rnd.choice((0.15, 0.3, 0.6))
        out.append((t, mido.Message("note_on", note=note, velocity=rnd.randint(30, 120))))
        out.append((t + dur, mido.Message("note_off", note=note)))
        t += rnd.choice((0.15, 0.3))
    return out


class CheckingSink:
    """The scheduler's sink: checks what goes out, keeps counts, no list of messages (memory stays flat)."""

    def __init__(self, clock, t0: float) -> None:
        self.clock = clock
        self.t0 = t0
        self.sounding: dict[tuple[int, int], int] = {}  # (channel, note) -> tick it began
        self.notes = 0
        self.messages = 0
        self.longest_ticks = 0
        self.max_grid_error = 0.0  # |deadline - (t0 + tick * SPT)|, seconds
        self.max_late = 0.0  # |send time - deadline|, seconds
        self.sounding_at_silence = 0  # notes the engine left on when all-notes-off came
        self.overlong = 0

    def send(self, msg: mido.Message) -> None:
        self.messages += 1

    def on_sent(self, tm, deadline: float) -> None:
        msg = tm.message
        self.max_grid_error = max(self.max_grid_error, abs(deadline - (self.t0 + tm.tick * SPT)))
        self.max_late = max(self.max_late, abs(self.clock.now() - deadline))
        key = (msg.channel, msg.note) if msg.type in ("note_on", "note_off") else None
        if key is None:
            return
        if msg.type == "note_on" and msg.velocity > 0:
            self.notes += 1
            self.sounding[key] = tm.tick
            return
        start = self.sounding.pop(key, None)
        if start is not None:
            length = tm.tick - start
            self.longest_ticks = max(self.longest_ticks, length)
            self.overlong += length > ev.MAX_NOTE_TICKS

    def all_notes_off(self) -> None:
        self.sounding_at_silence = max(self.sounding_at_silence, len(self.sounding))
        self.sounding.clear()


@dataclass
class SoakResult:
    sim_hours: float
    wall_s: float
    cpu_s: float  # this process's CPU time: what the run costs, whatever else the machine runs
    steps: int
    notes: int
    messages: int
    phrases: int
    left_sounding: int
    longest_note_ticks: int
    max_note_ticks: int
    overlong_notes: int
    max_grid_error_s: float
    max_late_s: float
    rss_start_kb: int
    rss_end_kb: int
    rss_by_hour_kb: list = field(default_factory=list)

    @property
    def rss_growth_kb(self) -> int:
        return self.rss_end_kb - self.rss_start_kb


def simulate(
    model,
    hours: float,
    phrase_every_s: float = 300.0,
    seed: int = 1,
    warmup_s: float = 600.0,
    idle: float = 0.05,
    progress=None,
) -> SoakResult:
    """`hours` simulated hours of duet on a SimClock; RSS counted from `warmup_s` on."""
    from cadenza.player.assemble import build_player, plain_settings
    from cadenza.player.clock import SimClock
    from cadenza.player.scheduler import ScriptedInbox

    t0 = 1000.0
    clock = SimClock(t0)
    settings = plain_settings(
        mode="duet", tempo=TEMPO, temperature=1.0, top_p=0.95, seed=seed, phrase_gap=2.0, answer_bars=4
    )
    keys = []
    n_phrases = int(hours * 3600 // phrase_every_s)
    for k in range(n_phrases):
        keys += phrase(t0 + (k + 0.5) * phrase_every_s, seed * 100_000 + k)
    inbox = ScriptedInbox(clock, keys)
    sink = CheckingSink(clock, t0)
    # idle: the daemon's longest sleep (50 ms). Larger is faster on a SimClock but not the same
    # loop: the keyboard's last tick reaches the model only at the next pass (see max_late_s).
    player = build_player(settings, model, clock=clock, inbox=inbox, sink=sink, on_sent=sink.on_sent, idle=idle)
    sch, engine = player.scheduler, player.engine
    end = t0 + hours * 3600
    wall, cpu = time.perf_counter(), time.process_time()
    sch.begin()
    sch.run(until=t0 + min(warmup_s, hours * 3600))
    gc.collect()
    rss_start = rss_kb()
    by_hour = []
    hour = t0
    while clock.now() < end:
        hour = min(end, hour + 3600)
        sch.run(until=hour)
        by_hour.append(rss_kb())
        if progress is not None:
            progress(
                f"{(clock.now() - t0) / 3600:5.1f} h  {sink.notes} notes  {engine.steps} steps  "
                f"rss {by_hour[-1]} kB  {time.perf_counter() - wall:.0f} s"
            )
    sch.end()
    gc.collect()
    return SoakResult(
        sim_hours=hours,
        wall_s=round(time.perf_counter() - wall, 1),
        cpu_s=round(time.process_time() - cpu, 1),
        steps=engine.steps,
        notes=sink.notes,
        messages=sink.messages,
        phrases=n_phrases,
        left_sounding=len(sink.sounding) + sink.sounding_at_silence,
        longest_note_ticks=sink.longest_ticks,
        max_note_ticks=ev.MAX_NOTE_TICKS,
        overlong_notes=sink.overlong,
        max_grid_error_s=sink.max_grid_error,
        max_late_s=sink.max_late,
        rss_start_kb=rss_start,
        rss_end_kb=rss_kb(),
        rss_by_hour_kb=by_hour,
    )


# -- real time: the daemon on JACK ------------------------------------------------------


def realtime(model: str, minutes: float, phrase_every_s: float = 20.0, progress=print) -> dict:
    """cadenza-play for `minutes` on JACK in duet; the same checks from the receiver's side."""
    import signal
    import subprocess
    import tempfile

    from support.jack import JackReceiver, JackSender, jack_env, start_free_server

    server = None
    if not os.environ.get("JACK_DEFAULT_SERVER"):
        server = start_free_server("cadenza-soak")
        os.environ.update(jack_env(server.name))
    work = Path(tempfile.mkdtemp(prefix="cadenza-soak-"))
    log_path = work / "player.log"
    cmd = [
        str(Path(sys.executable).parent / "cadenza-play"),
        "--model",
        model,
        "--backend",
        "jack",
        "--client-name",
        "soak",
        "--output",
        "virtual",
        "--input",
        "virtual",
        "--mode",
        "duet",
        "--tempo",
        str(TEMPO),
        "--seed",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), stdin=subprocess.DEVNULL)
    synth = keys = None
    try:
        deadline = time.monotonic() + 60
        while "ready in" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cadenza-play did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        synth = JackReceiver(source="soak:out", client="soak-synth")
        keys = JackSender(
            target="soak-01:in" if "soak-01:in" in log_path.read_text() else "soak:in", client="soak-keys"
        )
        pid = proc.pid
        rss = [rss_kb(pid)]
        t_end = time.monotonic() + minutes * 60
        next_phrase = time.monotonic() + 5
        next_rss = time.monotonic() + 60
        k = 0
        while time.monotonic() < t_end:
            now = time.monotonic()
            if now >= next_phrase:
                base = now
                for dt, msg in sorted(phrase(0.0, k), key=lambda e: e[0]):
                    while time.monotonic() < base + dt:
                        time.sleep(0.002)
                    keys.send(msg)
                k += 1
                next_phrase = now + phrase_every_s
            if now >= next_rss:
                rss.append(rss_kb(pid))
                next_rss = now + 60
                progress(
                    f"{(now - (t_end - minutes * 60)) / 60:5.1f} min  rss {rss[-1]} kB  {len(synth.events)} messages"
                )
            time.sleep(0.05)
        rss.append(rss_kb(pid))
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        time.sleep(0.3)
        events = list(synth.events)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in (keys, synth):
            if c is not None:
                c.close()
        if server is not None:
            server.stop()
    res = analyse(events)
    res.update(
        minutes=minutes,
        exit_code=rc,
        phrases=k,
        rss_kb=rss,
        rss_start_kb=rss[1] if len(rss) > 2 else rss[0],
        rss_end_kb=rss[-1],
        traceback="Traceback" in log_path.read_text(),
    )
    res["rss_growth_kb"] = res["rss_end_kb"] - res["rss_start_kb"]
    return res


def analyse(events: list[tuple[int, list[int]]], tempo: float = TEMPO) -> dict:
    """From a receiver's (t_ns, bytes): notes, hung notes, longest note, lateness against the tick grid.

    The grid's phase is the median phase of the note events (the daemon's t0 is not
    known here); an event's error is its distance to the nearest grid point, so it
    measures jitter and drift, not latency (a constant offset lands on the grid).
    """
    spt = 60.0 / (tempo * ev.TICKS_PER_BEAT)
    sounding: dict[tuple[int, int], int] = {}
    longest = 0.0
    notes = 0
    note_times = []
    for t_ns, data in events:
        if not data:
            continue
        status = data[0] & 0xF0
        ch = data[0] & 0x0F
        if status == 0x90 and len(data) == 3 and data[2] > 0:
            notes += 1
            sounding[(ch, data[1])] = t_ns
            note_times.append(t_ns)
        elif status in (0x80, 0x90) and len(data) == 3:
            start = sounding.pop((ch, data[1]), None)
            if start is not None:
                longest = max(longest, (t_ns - start) / 1e9)
            note_times.append(t_ns)
        elif status == 0xB0 and len(data) == 3 and data[1] in (120, 123):
            sounding = {k: v for k, v in sounding.items() if k[0] != ch}
    errors = grid_errors([t / 1e9 for t in note_times], spt)
    return {
        "notes": notes,
        "left_sounding": len(sounding),
        "longest_note_s": round(longest, 3),
        "longest_allowed_s": round(ev.MAX_NOTE_TICKS * spt, 3),
        **errors,
    }


def grid_errors(times: list[float], spt: float) -> dict:
    """Distances (ms) of event times to the nearest point of a grid of period `spt` (phase fitted)."""
    import numpy as np

    if not times:
        return {"grid_events": 0}
    t = np.asarray(times)
    phase = np.angle(np.exp(2j * np.pi * (t - t[0]) / spt).mean())  # circular mean: the grid's offset
    rel = (t - t[0]) / spt - phase / (2 * np.pi)
    err_ms = np.abs(rel - np.round(rel)) * spt * 1000
    # drift: error of the last tenth against the first tenth
    n = max(1, len(t) // 10)
    drift = float(
        np.median(((rel - np.round(rel)) * spt * 1000)[-n:]) - np.median(((rel - np.round(rel)) * spt * 1000)[:n])
    )
    return {
        "grid_events": len(t),
        "grid_p50_ms": round(float(np.percentile(err_ms, 50)), 3),
        "grid_p99_ms": round(float(np.percentile(err_ms, 99)), 3),
        "grid_max_ms": round(float(err_ms.max()), 3),
        "drift_ms": round(drift, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="bundle (default: a tiny model converted on the spot)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--sim-hours", type=float, help="simulated hours on a SimClock")
    g.add_argument("--minutes", type=float, help="real-time minutes: cadenza-play on JACK")
    ap.add_argument("--json", help="write the figures here as well")
    args = ap.parse_args(argv)
    model_path = args.model
    if model_path is None:
        from support.models import converted

        model_path = str(converted().bundle)
    if args.minutes:
        res = realtime(model_path, args.minutes)
    else:
        from cadenza.player.runtime import open_model

        r = simulate(open_model(model_path), args.sim_hours or 24.0, progress=print)
        res = {**asdict(r), "rss_growth_kb": r.rss_growth_kb}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
