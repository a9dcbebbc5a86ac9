"""Response latency: from the moment a phrase's gap is complete to the first note of the answer.

    python bench/latency.py --phrases 30 [--model FILE] [--busy]

A keyboard stand-in (a JACK client in this process) plays short phrases into the
player's virtual input; the player (RealClock, the real engine, scheduler and
ports, call-response) answers on its virtual output; bench/receiver.py, another
process, stamps arrivals. The gap is complete at the phrase's last note-off, as
stamped by the player's input callback, plus phrase_gap beats. Latency = arrival
of the answer's first note-on - that moment.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import mido

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from bench import jackrig  # noqa: E402
from bench.timing import default_model  # noqa: E402
from cadenza.player.assemble import build_player, plain_settings  # noqa: E402
from cadenza.player.clock import RealClock  # noqa: E402
from cadenza.player.daemon import set_realtime  # noqa: E402
from cadenza.player.scheduler import PortInbox  # noqa: E402
from support.jack import JackSender  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phrases", type=int, default=30)
    ap.add_argument("--tempo", type=float, default=240.0)
    ap.add_argument("--gap", type=float, default=1.0, help="phrase_gap in beats")
    ap.add_argument("--model")
    ap.add_argument("--busy", action="store_true")
    args = ap.parse_args(argv)
    from cadenza.player.midi import InputPort, OutputPort, open_backend
    from cadenza.player.runtime import open_model

    model = open_model(args.model) if args.model else default_model()
    beat = 60.0 / args.tempo
    answer_s = 4 * beat  # one bar
    per_phrase = 4 * 0.12 + args.gap * beat + answer_s + 0.4
    name = "latency" + ("-busy" if args.busy else "-idle")
    with jackrig.jack():
        backend = open_backend("jack")
        out = OutputPort("virtual", backend, "cadenza")
        inp = InputPort("virtual", backend, "cadenza")
        keys = JackSender(inp.name, client="keys")
        clock = RealClock()
        settings = plain_settings(
            mode="call-response",
            tempo=args.tempo,
            temperature=1.0,
            top_p=0.95,
            seed=1,
            phrase_gap=args.gap,
            answer_bars=1,
        )
        offs: list[float] = []  # input-callback stamps of each phrase's last note-off

        def heard(t, msg):
            if msg.type == "note_off" or (msg.type == "note_on" and msg.velocity == 0):
                offs.append(t)

        sch = build_player(
            settings, model, clock=clock, inbox=PortInbox(clock, inp), sink=out, align=True, on_input=heard
        ).scheduler
        duration = args.phrases * per_phrase + 2
        with jackrig.receiver(out.name, duration, name) as recv_path, jackrig.busy_core(args.busy):
            rt = [False]

            def loop():
                rt[0] = set_realtime()
                sch.begin()
                sch.run(until=clock.now() + duration - 1)
                sch.end()

            th = threading.Thread(target=loop)
            th.start()
            time.sleep(0.3)
            phrase_ends = []
            for k in range(args.phrases):
                t_start = time.monotonic()
                for _j, p in enumerate((60, 64, 62, 67)):
                    keys.send(mido.Message("note_on", note=p + k % 5, velocity=80))
                    time.sleep(0.1)
                    keys.send(mido.Message("note_off", note=p + k % 5))
                    time.sleep(0.02)
                phrase_ends.append(len(offs))
                time.sleep(max(0.0, t_start + per_phrase - time.monotonic()))
            th.join()
        keys.close()
        inp.close()
        out.close()
        received = jackrig.read_received(recv_path)
    # the gap of phrase k ends at its last note-off + gap; the answer's first note-on is the first after it
    gap_ends = []
    count = 0
    for _ in range(args.phrases):
        count += 4
        if len(offs) >= count:
            gap_ends.append(offs[count - 1] + args.gap * beat)
    ons = [t for t, d in received if (d[0] & 0xF0) == 0x90 and d[2] > 0]
    lat, missing = [], 0
    for k, g in enumerate(gap_ends):
        nxt = gap_ends[k + 1] - args.gap * beat if k + 1 < len(gap_ends) else float("inf")
        first = [t for t in ons if g - 0.05 <= t < nxt]
        if first:
            lat.append(first[0] - g)
        else:
            missing += 1
    result = {
        "name": name,
        "phrases": args.phrases,
        "answers": len(lat),
        "missing": missing,
        "sched_fifo": rt[0],
        "tempo": args.tempo,
        "phrase_gap_beats": args.gap,
        "latency_ms": jackrig.stats_ms(lat),
    }
    jackrig.save(name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
