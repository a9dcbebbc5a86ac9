"""Hostile MIDI input: cadenza-play in duet mode under a flood of random and malformed messages.

    python bench/hostile.py --seconds 60 --rate 20000 --model tiny.cadenza
    python bench/hostile.py --periods 16,64,256 --runs 20 --seconds 15 --rate 20000 --mapped-controls \
        --json bench/out/hostile-campaign.json     # crashes and hanging notes per JACK period

The player runs as the service does (a subprocess, JACK, virtual ports); a JACK
client floods its input with raw bytes (libjack through JACK-Client, its own
process callback writing as much as each cycle's port buffer takes, no checks on
the bytes): random bytes,
sysex up to 1 kB (some unterminated), running status, note-offs without note-ons,
notes on all 16 channels, clock at 10 kHz, pitch bend and CC storms. A receiver
stamps the player's output. Measured: how far the intervals between output notes
are from whole ticks (the note grid), before, during and after the flood; resident
memory at the flood's start and end, notes left sounding after SIGTERM, the
input's dropped/malformed counters as the player logs them, and whether anything
reached stderr as a traceback. The controls are unmapped here (a tempo knob in the
storm would move the grid on purpose).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support


TEMPO = 50.0  # a wide grid (50 ms a tick): lateness up to half a tick reads unambiguously
SPT = 60.0 / (TEMPO * 24)
NO_CONTROLS = {k: -1 for k in ("temperature", "tempo", "mode", "answer_bars", "panic", "phrase_end")}


def hostile_batch(rnd: random.Random, n: int) -> list[list[int]]:
    """`n` messages of the kinds a broken or malicious device sends (raw bytes, unchecked)."""
    out = []
    while len(out) < n:
        kind = rnd.random()
        ch = rnd.randrange(16)
        if kind < 0.20:  # notes on every channel, many never released
            out.append([0x90 | ch, rnd.randrange(128), rnd.randrange(128)])
        elif kind < 0.30:  # note-offs without note-ons
            out.append([0x80 | ch, rnd.randrange(128), rnd.randrange(128)])
        elif kind < 0.45:  # clock at 10 kHz: bursts of timing bytes
            out += [[0xF8]] * 10
        elif kind < 0.55:  # pitch bend storm
            out.append([0xE0 | ch, rnd.randrange(128), rnd.randrange(128)])
        elif kind < 0.65:  # CC storm (sustain, all-notes-off, channel mode, the default knob CCs 21-25)
            out.append(
                [
                    0xB0 | ch,
                    rnd.choice([1, 7, 10, 21, 22, 23, 24, 25, 64, 64, 120, 121, 123, rnd.randrange(128)]),
                    rnd.randrange(128),
                ]
            )
        elif kind < 0.70:  # running status: data bytes without a status byte
            out.append([rnd.randrange(128), rnd.randrange(128)])
        elif kind < 0.73:  # sysex, up to 1 kB, terminated or not
            body = [rnd.randrange(128) for _ in range(rnd.randrange(1, 1022))]
            out.append([0xF0] + body + ([0xF7] if rnd.random() < 0.8 else []))
        elif kind < 0.80:  # data bytes out of range, wrong lengths
            out.append([0x90 | ch, rnd.randrange(128, 256), rnd.randrange(256)][: rnd.randrange(1, 4)])
        elif kind < 0.85:  # realtime and system common bytes
            out.append([rnd.choice([0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF])])
        else:  # anything at all
            out.append([rnd.randrange(256) for _ in range(rnd.randrange(1, 4))])
    return out[:n]


def flood(
    target: str, seconds: float, rate: float, seed: int = 1, client: str = "flood", switch_every: float = 0.0
) -> int:
    """Send hostile_batch messages to the JACK input `target` at `rate` per second; the count sent
    (handed to the server: the sender's queue is paced out by its process callback). With `switch_every`,
    a Program Change on channel 1 every that many seconds, 1, 0, 1, ... (patch switches inside the flood)."""
    from support.jack import JackSender

    rnd = random.Random(seed)
    queued = 0
    with JackSender(target=target, client=client) as keys:
        print("FLOODING", flush=True)
        t0 = time.monotonic()
        end = t0 + seconds
        program, next_switch = 1, t0 + switch_every
        while (now := time.monotonic()) < end:
            if switch_every and now >= next_switch:
                keys.send([0xC0, program])
                queued += 1
                program, next_switch = 1 - program, next_switch + switch_every
            due = min(int((now - t0) * rate) - queued, 500)
            if keys.pending() < 2000:  # never more than a few cycles ahead of the server
                for msg in hostile_batch(rnd, due) if due > 0 else ():
                    keys.send(msg)
                    queued += 1
            time.sleep(0.0005)
        keys.flush(2.0)
        return keys.written


def input_name(log: str, client: str) -> str:
    m = re.search(r"MIDI input: (\S+)", log)
    return m.group(1) if m else f"{client}:in"


def counters(log: str) -> dict:
    """The last input counters the player logged (see player.midi.InputPort)."""
    found = re.findall(
        r"MIDI input \S+: (\d+) received, (\d+) dropped \(queue full\), (\d+) malformed, "
        r"(\d+) over the rate limit",
        log,
    )
    if not found:
        return {}
    r, d, m, limited = map(int, found[-1])
    return {"received": r, "dropped": d, "malformed": m, "limited": limited}


def run(
    model: str,
    seconds: float = 20.0,
    rate: float = 10_000.0,
    quiet_s: float = 4.0,
    seed: int = 1,
    client: str = "hostile",
    folder: Path | None = None,
    mapped_controls: bool = False,
    patches: list[str] | None = None,
    switch_every: float = 2.5,
) -> dict:
    """Flood a duet for `seconds` at `rate` messages/s; the figures as a dict. Needs a JACK server.

    mapped_controls: the default CC map (tempo, mode, panic... knobs in the storm: the grid
    moves, so only survival, memory and silence mean anything then).
    patches: bundles for programs 0, 1, ... ([patches] in the config); the flood then switches between
    the first two every `switch_every` seconds, and the figures count the `patch N:` lines the player logged.
    """
    from support.daemon import Player, rss_kb, sounding_after, write_config
    from support.jack import JackReceiver

    folder = Path(folder or tempfile.mkdtemp(prefix="cadenza-hostile-"))
    # The synth is there first and the player connects to it: every message it sends must arrive.
    synth = JackReceiver(client=f"{client}-synth")
    cfg = write_config(
        folder,
        model,
        client=client,
        mode="duet",
        input="virtual",
        tempo=TEMPO,
        controls=None if mapped_controls else NO_CONTROLS,
        output=f"{client}-synth:in",
        extra="".join(["\n[patches]\n", *(f'{i} = "{b}"\n' for i, b in enumerate(patches))] if patches else []),
    )
    player = Player(cfg).start()
    try:
        player.wait_ready()
        time.sleep(quiet_s)
        # The flood comes from a process of its own: a sender whose JACK buffer is full spins in
        # rtmidi holding the GIL, which would delay this process's receiver and its stamps.
        flooder = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--flood",
                input_name(player.log(), client),
                "--seconds",
                str(seconds),
                "--rate",
                str(rate),
                "--seed",
                str(seed),
                "--switch-every",
                str(switch_every if patches else 0.0),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert flooder.stdout.readline().strip() == "FLOODING", "the flood client did not start"
        t_flood = time.monotonic()
        rss_start = rss_kb(player.pid)
        out, _ = flooder.communicate(timeout=seconds + 60)
        sent = int(out.split()[-1])
        t_end = time.monotonic()
        rss_end = rss_kb(player.pid) if player.proc.poll() is None else 0
        alive = player.proc.poll() is None
        time.sleep(quiet_s / 2)  # after the flood: back to normal
        t_after = time.monotonic()
        rc = player.stop()
        synth.settle()
        events = list(synth.events)
    finally:
        synth.close()
        player.close()
    log = player.log()
    notes = [(t / 1e9, d) for t, d in events if len(d) == 3 and d[0] & 0xE0 == 0x80]
    quiet = [t for t, _ in notes if t < t_flood]
    flooded = [t for t, _ in notes if t_flood <= t < t_end]
    after = [t for t, _ in notes if t_end <= t < t_after]
    res = {
        "seconds": round(t_end - t_flood, 1),
        "messages_sent": sent,
        "rate_per_s": round(sent / max(t_end - t_flood, 1e-9)),
        "alive_after_flood": alive,
        "exit_code": rc,
        "traceback": "Traceback" in log,
        "rss_start_kb": rss_start,
        "rss_end_kb": rss_end,
        "rss_growth_kb": rss_end - rss_start,
        "left_sounding": len(sounding_after(events)),
        "notes_quiet": len(quiet),
        "notes_flood": len(flooded),
        "notes_after": len(after),
        "grid_quiet": _grid_vs(quiet, quiet, SPT),
        "grid_flood": _grid_vs(quiet, flooded, SPT),
        "grid_after": _grid_vs(quiet, after, SPT),
        **{f"input_{k}": v for k, v in counters(log).items()},
        "error_lines": [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line][:5],
        "player_sent": _player_sent(log),
        "synth_received": len(events),
        "synth_torn_cycles": synth.torn,
        "patch_switches": len(re.findall(r"INFO \S+: patch \d+: ", log)),
    }
    return res


def _player_sent(log: str) -> int | None:
    m = re.findall(r"(\d+) MIDI messages sent", log)
    return int(m[-1]) if m else None


def campaign(
    model: str,
    periods: list[int],
    runs: int,
    seconds: float,
    rate: float,
    mapped_controls: bool = True,
    sync: bool = True,
    realtime: bool = False,
    patches: list[str] | None = None,
) -> dict:
    """`runs` floods at each JACK period, each on a fresh server: crashes, notes left sounding, messages.

    sync=False runs jackd in its default asynchronous mode (as most users do), where a client
    late for its cycle makes the server hand a reader a stale buffer or skip a fresh one: messages
    can then be lost or doubled by JACK itself, not by the player.
    """
    from bench.jackrig import BenchJackServer
    from support.jack import jack_env

    class Server(BenchJackServer):
        def command(self) -> list[str]:
            return [a for a in super().command() if sync or a != "--sync"]

    table = {}
    for period in periods:
        rows: list[dict] = []
        failed: list[str] = []
        for i in range(runs):
            server = Server(
                f"cadenza-hostile-{period}{'' if sync else '-async'}{'-rt' if realtime else ''}"
                f"{os.environ.get('CADENZA_HOSTILE_TAG', '')}",
                period=period,
                realtime=realtime,
            )
            server.start()
            os.environ.update(jack_env(server.name))
            try:
                r = run(
                    model,
                    seconds,
                    rate,
                    quiet_s=3.0,
                    seed=1000 * period + i,
                    mapped_controls=mapped_controls,
                    patches=patches,
                )
            except AssertionError as e:  # the player did not start (a JACK server that died under us, say)
                print(json.dumps({"period": period, "run": i, "start_failed": str(e)[-300:]}), flush=True)
                failed.append(str(e)[-300:])
                continue
            finally:
                server.stop(signal.SIGTERM)
            crashed = not r["alive_after_flood"] or (r["exit_code"] or 0) < 0
            rows.append(
                {
                    "crashed": crashed,
                    "exit_code": r["exit_code"],
                    "left_sounding": r["left_sounding"],
                    "messages_sent": r["messages_sent"],
                    "player_sent": r["player_sent"],
                    "synth_received": r["synth_received"],
                    "synth_torn_cycles": r["synth_torn_cycles"],
                    "error_lines": r["error_lines"],
                    "patch_switches": r["patch_switches"],
                }
            )
            print(json.dumps({"period": period, "run": i, **rows[-1]}), flush=True)
        table[period] = {
            "runs": len(rows),
            "failed_to_start": len(failed),
            "crashes": sum(r["crashed"] for r in rows),
            "runs_with_notes_left": sum(r["left_sounding"] > 0 for r in rows),
            "notes_left_sounding": sum(r["left_sounding"] for r in rows),
            "messages_sent_median": sorted(r["messages_sent"] for r in rows)[len(rows) // 2] if rows else None,
            "lost_at_receiver": sum(
                (r["player_sent"] or 0) - r["synth_received"] for r in rows if r["player_sent"] is not None
            ),
            "patch_switches": sum(r["patch_switches"] for r in rows),
            "runs_detail": rows,
        }
    return table


def _grid_vs(ref: list[float], times: list[float], spt: float) -> dict:
    """How far (ms) the intervals between successive note events are from whole ticks.

    Needs no reference phase: a send late by x ms puts its two intervals x ms off the
    grid. Events within the same tick arrive together (interval ~0: on the grid).
    """
    import numpy as np

    t = np.sort(np.asarray(times))
    if len(t) < 2:
        return {"events": len(t)}
    d = np.diff(t)
    err = np.abs(d - np.round(d / spt) * spt) * 1000
    return {
        "events": len(t),
        "p50_ms": round(float(np.percentile(err, 50)), 3),
        "p99_ms": round(float(np.percentile(err, 99)), 3),
        "max_ms": round(float(err.max()), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="bundle (default: a tiny model converted on the spot)")
    ap.add_argument("--seconds", type=float, default=60.0, help="flood duration (default 60)")
    ap.add_argument("--rate", type=float, default=10_000.0, help="messages per second (default 10000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mapped-controls", action="store_true", help="the default CC map (tempo, mode, panic...)")
    ap.add_argument("--json", help="write the figures here as well")
    ap.add_argument("--periods", help="JACK periods, comma-separated: a campaign of --runs floods at each")
    ap.add_argument("--runs", type=int, default=20, help="floods per period in a campaign (default 20)")
    ap.add_argument("--async-jack", action="store_true", help="jackd in its default asynchronous mode (no --sync)")
    ap.add_argument(
        "--realtime", action="store_true", help="jackd with real-time scheduling (-R, its default; needs the privilege)"
    )
    ap.add_argument(
        "--patches", nargs="+", metavar="BUNDLE", help="a patch bank (programs 0, 1, ...): the flood switches 0 <-> 1"
    )
    ap.add_argument("--flood", metavar="PORT", help=argparse.SUPPRESS)  # the flooding client (run by run())
    ap.add_argument("--switch-every", type=float, default=0.0, help=argparse.SUPPRESS)  # (the flooding client)
    args = ap.parse_args(argv)

    if args.flood:
        print(
            f"sent {flood(args.flood, args.seconds, args.rate, args.seed, switch_every=args.switch_every)}", flush=True
        )
        return 0

    from support.jack import jack_env, start_free_server

    model = args.model
    if model is None:
        from support.models import converted

        model = str(converted().bundle)
    if args.periods:
        res = campaign(
            model,
            [int(p) for p in args.periods.split(",")],
            args.runs,
            args.seconds,
            args.rate,
            mapped_controls=args.mapped_controls,
            sync=not args.async_jack,
            realtime=args.realtime,
            patches=args.patches,
        )
        summary = {p: {k: v for k, v in t.items() if k != "runs_detail"} for p, t in res.items()}
        print(json.dumps(summary, indent=1))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
        return 0
    server = None
    if not os.environ.get("JACK_DEFAULT_SERVER"):
        server = start_free_server("cadenza-hostile")
        os.environ.update(jack_env(server.name))
    try:
        res = run(
            model, args.seconds, args.rate, seed=args.seed, mapped_controls=args.mapped_controls, patches=args.patches
        )
    finally:
        if server is not None:
            server.stop(signal.SIGTERM)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
