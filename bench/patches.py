"""Patch switches through cadenza-play on JACK, at an independent receiver; load time and memory per patch.

    python bench/patches.py [--switches 100] [--tempo 240] [--period 64] [--bank A.cadenza,B.cadenza,...]

The player plays solo with a bank of the given bundles at programs 0, 1, 2, ... (each with a synth program
of its own, 10 + its number, so the receiver sees where each patch begins); a keyboard client sends a
Program Change to the next patch every 1.2 to 2.6 s (seeded), `--switches` times. The receiver (a libjack
client in this process, stamping each event in its process callback) gets everything the player sends.

Per switch, from the player's log line "patch N: NAME from the bar line at tick T (S s)" (S on
time.monotonic(), which both processes share): the new patch's first note at the receiver minus the bar
line's time; its synth program the same way. After SIGTERM: notes left sounding at the receiver (a note-on
with no later note-off or CC 123/120 on its channel), and the longest note. Memory: the player's own pages
(RssAnon + RssFile) with the bank loaded, and again with an empty bank (`[patches]` with no entry, the one
model only); load time per patch from the player's "patches:" line. Writes bench/out/patches.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from bench import jackrig  # noqa: E402
from bench.resources import mem_kb  # noqa: E402
from support.daemon import Player, sounding_after  # noqa: E402
from support.jack import JackReceiver, JackSender  # noqa: E402

SWITCH = re.compile(r"patch (\d+): (\S+) from the bar line at tick (\d+) \(([\d.]+) s\)")
LOADED = re.compile(r"patches: (.*) \(opened in ([\d.]+) s\)")


def config(folder: Path, bank: list[str], tempo: float, client: str, empty: bool = False) -> Path:
    lines = [
        f'model = "{Path(bank[0]).resolve()}"',
        "[midi]",
        'backend = "jack"',
        'output = "synth-bench"',
        'input = "virtual"',
        f'client_name = "{client}"',
        "[play]",
        'mode = "solo"',
        f"tempo = {tempo}",
        "seed = 1",
        "[patches]",
    ]
    if not empty:
        lines += [f'{i} = {{ model = "{Path(b).resolve()}", program = {10 + i} }}' for i, b in enumerate(bank)]
    path = folder / ("empty.toml" if empty else "bank.toml")
    path.write_text("\n".join(lines) + "\n")
    return path


def own_mb(pid: int) -> float:
    m = mem_kb(pid)
    return round((m.get("RssAnon", 0) + m.get("RssFile", 0)) / 1024, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bank", default="models/bach.cadenza,models/folk.cadenza")
    ap.add_argument("--switches", type=int, default=100)
    ap.add_argument("--tempo", type=float, default=240.0)
    ap.add_argument("--period", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    bank = [str(Path(b)) for b in args.bank.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="cadenza-patches-"))
    rng = random.Random(args.seed)
    result: dict = {"bank": bank, "tempo": args.tempo, "jack_period": args.period, "switches_asked": args.switches}
    with jackrig.jack(args.period):
        # the player's own pages with the one model only
        empty = Player(config(folder, bank, args.tempo, "cpe", empty=True), "--output", "virtual")
        with empty:
            empty.wait_ready()
            time.sleep(2.0)
            result["own_mb_one_model"] = own_mb(empty.pid)
        rx = JackReceiver(None, client="synth-bench")
        player = Player(config(folder, bank, args.tempo, "cpb"))
        try:
            player.start()
            player.wait_ready()
            loaded = LOADED.search(player.log())
            result["load"] = {"line": loaded.group(1), "total_s": float(loaded.group(2))} if loaded else None
            with JackSender("cpb", client="keys-cpb") as keys:
                time.sleep(2.0)
                program = 0
                for _ in range(args.switches):
                    program = (program + 1) % len(bank)
                    keys.send(mido.Message("program_change", program=program))
                    time.sleep(rng.uniform(1.2, 2.6))
                time.sleep(2.0)
                result["own_mb_bank"] = own_mb(player.pid)
            code = player.stop(signal.SIGTERM, timeout=20)
            rx.settle()
        finally:
            player.close()
            rx.close()
        log = player.log()
    events = [(t / 1e9, mido.Message.from_bytes(b)) for t, b in rx.events]
    switches = [(int(m.group(1)), float(m.group(4))) for m in SWITCH.finditer(log)]
    first_note, program_at = [], []
    for prog, bar in switches:
        note = next((t for t, m in events if t >= bar - 0.02 and m.type == "note_on" and m.velocity), None)
        change = next(
            (t for t, m in events if m.type == "program_change" and m.program == 10 + prog and t >= bar - 0.02), None
        )
        if note is not None:
            first_note.append(note - bar)
        if change is not None:
            program_at.append(change - bar)
    # the longest note at the receiver
    started: dict = {}
    longest = 0.0
    for t, m in events:
        if m.type == "note_on" and m.velocity:
            started[(m.channel, m.note)] = t
        elif m.type in ("note_off", "note_on"):
            t0 = started.pop((m.channel, m.note), None)
            if t0 is not None:
                longest = max(longest, t - t0)
    msgs = [m for _, m in events]
    result.update(
        {
            "exit_code": code,
            "switches_done": len(switches),
            "bar_to_first_note_ms": jackrig.stats_ms(first_note),
            "bar_to_synth_program_ms": jackrig.stats_ms(program_at),
            "notes": sum(1 for m in msgs if m.type == "note_on" and m.velocity),
            "notes_left_sounding": len(sounding_after(msgs)),
            "longest_note_s": round(longest, 3),
            "torn_buffers": rx.torn,
            "errors_in_log": [ln for ln in log.splitlines() if "ERROR" in ln or "Traceback" in ln][:5],
        }
    )
    if result.get("own_mb_bank") is not None:
        result["own_mb_per_extra_patch"] = round(
            (result["own_mb_bank"] - result["own_mb_one_model"]) / max(1, len(bank) - 1), 1
        )
    out = jackrig.OUT / "patches.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
