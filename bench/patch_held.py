"""Notes held to the codec's limit with and without patch switches, on the simulated clock.

    python bench/patch_held.py [--seconds 280] [--every 2.3] [--bank models/bach.cadenza,models/folk.cadenza]

The player in duet on a SimClock (120 BPM, temperature 1, nobody playing), first with no switch, then with a
Program Change to the other patch every --every seconds. Counts the notes played and those that lasted
MAX_NOTE_TICKS (four bars: the codec ended them, nobody else did). A switch that leaves the old patch's notes
to a new model that never releases them shows here. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from cadenza.player import events as ev  # noqa: E402
from cadenza.player.patches import Bank, Slot  # noqa: E402
from cadenza.player.runtime import open_model  # noqa: E402
from support.rig import SPT, rig  # noqa: E402


def run(paths: list[str], seconds: float, every: float | None) -> dict:
    models = [open_model(p) for p in paths]
    bank = Bank([Slot(i, p, Path(p).stem, m) for i, (p, m) in enumerate(zip(paths, models))])
    n = int(seconds / every) if every else 0
    events = [(1.3 + every * k, mido.Message("program_change", program=(k + 1) % len(paths))) for k in range(n)]
    sch, sink = rig(models[0], mode="duet", events=events, bank=bank, patch=0)
    sch.engine.sampler.temperature = 1.0
    sch.begin()
    sch.run(until=sch.clock.now() + seconds)
    sch.end()
    start: dict[int, float] = {}
    lengths = []
    for t, m in sink.sent:
        if m.type == "note_on" and m.velocity:
            start[m.note] = t
        elif m.type in ("note_on", "note_off") and m.note in start:
            lengths.append(t - start.pop(m.note))
    limit = ev.MAX_NOTE_TICKS * SPT
    return {
        "switches": sch.background.switches if sch.background is not None else 0,
        "notes": len(lengths),
        "held_to_the_limit": sum(1 for x in lengths if x >= limit - 1e-6),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bank", default="models/bach.cadenza,models/folk.cadenza")
    ap.add_argument("--seconds", type=float, default=280.0)
    ap.add_argument("--every", type=float, default=2.3)
    args = ap.parse_args(argv)
    paths = args.bank.split(",")
    out = {"no_switch": run(paths, args.seconds, None), "switching": run(paths, args.seconds, args.every)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
