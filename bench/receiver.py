"""A stand-alone MIDI receiver for latency measurements: stamps what a port sends.

    python bench/receiver.py --port cadenza:out --out recv.jsonl --duration 10

Connects to the output port whose name contains --port (waiting up to --wait
seconds for it to appear), prints READY once connected, then writes one JSON
line per message: {"t_ns": time.monotonic_ns(), "data": [status, ...]}.
CLOCK_MONOTONIC is system wide, so these stamps compare directly with a
sender's time.monotonic_ns() in another process. Runs for --duration seconds
after READY (or until SIGINT/SIGTERM). Timing messages (clock, start, stop) are
kept; sysex and active sensing are not. Needs python-rtmidi only.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time

APIS = {"jack": "API_UNIX_JACK", "alsa": "API_LINUX_ALSA", "coremidi": "API_MACOSX_CORE", "windows": "API_WINDOWS_MM"}


def find_port(names: list[str], query: str) -> int | None:
    exact = [i for i, n in enumerate(names) if n == query]
    matches = exact or [i for i, n in enumerate(names) if query.lower() in n.lower()]
    return matches[0] if len(matches) == 1 else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", required=True, help="part of the name of the output port to listen to")
    ap.add_argument("--out", required=True, help="JSON lines file to write")
    ap.add_argument("--duration", type=float, required=True, help="seconds to listen after READY")
    ap.add_argument("--backend", default="jack", choices=sorted(APIS), help="MIDI system (default: jack)")
    ap.add_argument("--client", default="receiver", help="our client name (default: receiver)")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the port (default: 10)")
    args = ap.parse_args(argv)

    import rtmidi

    stamped: queue.SimpleQueue = queue.SimpleQueue()

    def on_midi(event, data=None):
        stamped.put((time.monotonic_ns(), event[0]))  # stamp first; nothing else on this thread

    try:
        midi_in = rtmidi.MidiIn(rtapi=getattr(rtmidi, APIS[args.backend]), name=args.client)
    except Exception as e:
        print(f"receiver: cannot open {args.backend}: {e}", file=sys.stderr)
        return 2
    midi_in.ignore_types(sysex=True, timing=False, active_sense=True)
    midi_in.set_callback(on_midi)
    deadline = time.monotonic() + args.wait
    while True:
        names = midi_in.get_ports()
        index = find_port(names, args.port)
        if index is not None:
            break
        if time.monotonic() > deadline:
            print(f"receiver: no single port matches {args.port!r}; available: {names}", file=sys.stderr)
            return 2
        time.sleep(0.05)
    midi_in.open_port(index, "in")
    time.sleep(0.05)  # a new JACK connection carries data after a cycle or two

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    count = 0
    with open(args.out, "w") as out:
        print(f"READY {names[index]}", flush=True)
        end = time.monotonic() + args.duration
        while not stop.is_set() and time.monotonic() < end:
            try:
                t_ns, data = stamped.get(timeout=0.05)
            except queue.Empty:
                continue
            out.write(json.dumps({"t_ns": t_ns, "data": list(data)}) + "\n")
            count += 1
        while True:  # what arrived before the end
            try:
                t_ns, data = stamped.get_nowait()
            except queue.Empty:
                break
            out.write(json.dumps({"t_ns": t_ns, "data": list(data)}) + "\n")
            count += 1
    midi_in.cancel_callback()
    midi_in.close_port()
    midi_in.delete()
    print(f"received {count} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
