"""Send-time error of the player's notes against their beat grid, measured at a separate receiver.

    python bench/timing.py --notes 2000                  # the scheduler, idle machine
    python bench/timing.py --notes 2000 --busy           # with a process spinning on the other core
    python bench/timing.py --notes 2000 --spin 0         # no spinning before a deadline
    python bench/timing.py --notes 2000 --bare           # baseline: a bare sleep-until loop, no engine
    python bench/timing.py --notes 2000 --cpu-dma-latency 0   # CPUs kept out of deep idle (PM QoS)

The player's real scheduler (RealClock, TempoMap, Engine, Scheduler, built by
player.assemble.build_player; SCHED_FIFO when allowed) sends to a virtual JACK
output (player.midi.OutputPort) on a private JACK server (dummy driver, 16-frame
period); bench/receiver.py, another process, stamps arrivals with
time.monotonic_ns(). Error = arrival - the note's grid time.
The step model is the real one (--model, default: the tiny converted test bundle)
for the inference cost, but the notes it plays come from a script (a note every
--every ticks) so the run is dense and every note is on the grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from bench import jackrig  # noqa: E402
from cadenza.player import events as ev  # noqa: E402
from cadenza.player.assemble import build_player, plain_settings  # noqa: E402
from cadenza.player.clock import RealClock  # noqa: E402
from cadenza.player.daemon import set_realtime  # noqa: E402
from cadenza.player.scheduler import NoInbox  # noqa: E402
from support.fakes import ScriptModel  # noqa: E402


class CostedScript(ScriptModel):
    """Plays the script, but pays for a real model step each time (the inference cost)."""

    def __init__(self, model, script):
        super().__init__(script)
        self.model = model

    def step(self, token):
        self.model.step(int(token) if int(token) < self.model.vocab_size else 0)
        return super().step(token)


def default_model():
    from cadenza.player.runtime import open_model

    path = Path("/tmp/cadenza-bench-tiny.cadenza")
    if not path.exists():
        import shutil

        from support.models import converted

        shutil.copy(converted().bundle, path)
    return open_model(path)


def arpeggio(every: int) -> list[int]:
    out = []
    for p in (60, 64, 67, 72, 67, 64):
        out += [ev.note_on(p), ev.shift(max(1, every // 2)), ev.note_off(p)]
        if every - every // 2 > 0:
            out.append(ev.shift(every - max(1, every // 2)))
    return out


class StampedSink:
    """The port, with the moment each send() was called (the player's own timing, before JACK)."""

    def __init__(self, out):
        self.out = out
        self.called: list[float] = []

    def send(self, msg):
        self.called.append(time.monotonic())
        self.out.send(msg)

    def all_notes_off(self):
        self.out.all_notes_off()


def run_scheduler(out, model, notes: int, tempo: float, every: int, spin: float):
    clock = RealClock(spin)
    settings = plain_settings(mode="solo", tempo=tempo, temperature=0.0, top_p=1.0, seed=0)
    sent = []
    sink = StampedSink(out)
    sch = build_player(
        settings,
        CostedScript(model, arpeggio(every)),
        clock=clock,
        inbox=NoInbox(clock),
        sink=sink,
        t0=clock.now() + 0.3,  # time to settle before the first note
        on_sent=lambda tm, d: sent.append((d, tm.message.bytes(), sink.called[-1])),
    ).scheduler
    duration = notes * every * 60.0 / (tempo * 24) + 0.5
    sch.begin()
    sch.run(until=clock.now() + duration)
    sch.end()
    return sent


def run_bare(out, notes: int, tempo: float, every: int):
    dt = every * 60.0 / (tempo * 24)
    t0 = time.monotonic() + 0.3
    sent = []
    for i in range(notes):
        t = t0 + i * dt
        d = t - time.monotonic()
        if d > 0:
            time.sleep(d)
        msg = mido.Message("note_on", note=60 + i % 12, velocity=64)
        t_call = time.monotonic()
        out.send(msg)
        sent.append((t, msg.bytes(), t_call))
        off = mido.Message("note_off", note=60 + i % 12)
        out.send(off)
        sent.append((t, off.bytes(), t_call))
    return sent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notes", type=int, default=2000)
    ap.add_argument("--tempo", type=float, default=150.0)
    ap.add_argument("--every", type=int, default=2, help="ticks between notes (default 2: 30 notes/s at 150 BPM)")
    ap.add_argument("--spin", type=float, default=0.0003, help="seconds spun before each deadline")
    ap.add_argument("--busy", action="store_true", help="keep the other core busy")
    ap.add_argument("--bare", action="store_true", help="a bare sleep loop instead of the player")
    ap.add_argument("--model", help="bundle whose step cost the engine pays (default: the tiny test bundle)")
    ap.add_argument("--period", type=int, default=16, help="JACK period in frames")
    ap.add_argument("--name", help="result name under bench/out/")
    ap.add_argument("--jack-no-rt", action="store_true", help="jackd without real-time scheduling")
    ap.add_argument(
        "--watch",
        type=float,
        default=None,
        help="the output port's reconnect check interval in s (default: player/midi/port.py's)",
    )
    ap.add_argument(
        "--cpu-dma-latency",
        type=int,
        default=-1,
        metavar="US",
        help="hold the CPUs' wake-up latency under US µs during the run, as the player's "
        "cpu_dma_latency setting does (system-wide: jackd and the receiver too); -1 = not",
    )
    args = ap.parse_args(argv)
    from cadenza.player.daemon import hold_wakeup_latency
    from cadenza.player.midi import OutputPort, open_backend
    from cadenza.player.runtime import open_model

    name = args.name or ("bare" if args.bare else f"timing-spin{args.spin * 1e3:g}ms") + (
        "-busy" if args.busy else "-idle"
    )
    if args.cpu_dma_latency >= 0:
        name += f"-pmqos{args.cpu_dma_latency}"
    pm_qos = hold_wakeup_latency(args.cpu_dma_latency) if args.cpu_dma_latency >= 0 else None
    model = None if args.bare else (open_model(args.model) if args.model else default_model())
    with jackrig.jack(args.period, realtime=not args.jack_no_rt):
        rt = set_realtime()  # before the port's threads, so they inherit it (as the daemon does)
        backend = open_backend("jack")
        kw = {} if args.watch is None else {"reconnect_interval": args.watch}
        out = OutputPort("virtual", backend, "cadenza", **kw)
        time.sleep(0.2)
        duration = args.notes * args.every * 60.0 / (args.tempo * 24) + 3
        with jackrig.receiver("cadenza:out", duration, name) as recv_path, jackrig.busy_core(args.busy):
            if args.bare:
                sent = run_bare(out, args.notes, args.tempo, args.every)
            else:
                sent = run_scheduler(out, model, args.notes, args.tempo, args.every, args.spin)
        out.close()
        received = [r for r in jackrig.read_received(recv_path) if (r[1][0] & 0xF0) in (0x80, 0x90)]
    notes = [(d, b) for d, b, _ in sent if (b[0] & 0xF0) in (0x80, 0x90)]
    at_send = [ts - d for d, b, ts in sent if (b[0] & 0xF0) == 0x90 and b[2] > 0]  # when send() was called
    errors, mismatched = [], 0
    for (deadline, b), (t, data) in zip(notes, received):
        if list(b) != list(data):
            mismatched += 1
        errors.append(t - deadline)
    on_errors = [e for (d, b), e in zip(notes, errors) if (b[0] & 0xF0) == 0x90 and b[2] > 0]
    result = {
        "name": name,
        "sent": len(notes),
        "received": len(received),
        "mismatched": mismatched,
        "sched_fifo": rt,
        "jack_period": args.period,
        "jackd_realtime": not args.jack_no_rt,
        "tempo": args.tempo,
        "every_ticks": args.every,
        "spin_ms": args.spin * 1e3,
        "busy": args.busy,
        "bare": args.bare,
        "watch_s": args.watch,
        "note_on_ms": jackrig.stats_ms(on_errors),
        "all_note_msgs_ms": jackrig.stats_ms(errors),
        "note_on_at_send_ms": jackrig.stats_ms(at_send),
        "load_avg": open("/proc/loadavg").read().split()[0],
        "cpu_dma_latency_us": args.cpu_dma_latency if pm_qos is not None else None,
    }
    jackrig.save(name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
