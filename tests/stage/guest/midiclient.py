"""The stage's synth and keyboard: ALSA sequencer clients (python-rtmidi from the installed venv).

midiclient.py synth NAME LOG      a synth: a virtual input port; every message it receives is one
                                  line of LOG: "<unix time> <hex bytes>"; runs until SIGTERM
midiclient.py keys NAME TREE      a keyboard: a virtual output port; reads commands on stdin,
                                  answers one line each on stdout:
    notes NOTE,NOTE,... SECONDS   a phrase: each note for SECONDS, one after the other
    send HEX HEX ...              raw messages (each "90,3c,64")
    flood N SEED RATE             N hostile messages (bench/hostile.py's hostile_batch), RATE a second
    quit
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
import warnings

import rtmidi

warnings.filterwarnings("ignore")  # rtmidi warns of each malformed message the flood sends on purpose


def synth(name: str, log_path: str) -> None:
    log = open(log_path, "a", buffering=1)
    port = rtmidi.MidiIn(rtmidi.API_LINUX_ALSA, name=name)
    port.ignore_types(sysex=True, timing=True, active_sense=True)

    def on_msg(event, data=None):
        msg, _ = event
        log.write(f"{time.time():.6f} {' '.join(f'{b:02x}' for b in msg)}\n")

    port.set_callback(on_msg)
    port.open_virtual_port("in")
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print("ready", flush=True)
    while not stop:
        time.sleep(0.1)
    # Not close_port(): under emulation, closing while the input thread waits for the GIL in a
    # callback can deadlock (the thread is joined with the GIL held). Every line is already written.
    log.flush()
    os._exit(0)


def keys(name: str, tree: str) -> None:
    port = rtmidi.MidiOut(rtmidi.API_LINUX_ALSA, name=name)
    port.open_virtual_port("out")
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        t0 = time.monotonic()
        if cmd == "notes":
            notes, length = [int(n) for n in args[0].split(",")], float(args[1])
            for n in notes:
                port.send_message([0x90, n, 90])
                time.sleep(length * 0.9)
                port.send_message([0x80, n, 0])
                time.sleep(length * 0.1)
            print(f"ok {len(notes)} {time.time():.6f}", flush=True)
        elif cmd == "send":
            for m in args:
                port.send_message([int(b, 16) for b in m.split(",")])
            print(f"ok {len(args)} {time.time():.6f}", flush=True)
        elif cmd == "flood":
            sys.path.insert(0, tree)
            from bench.hostile import hostile_batch

            msgs = hostile_batch(random.Random(int(args[1])), int(args[0]))
            every = 1.0 / float(args[2])
            sent = 0
            for i, m in enumerate(msgs):
                delay = t0 + i * every - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    port.send_message(m)
                    sent += 1
                except Exception:  # rtmidi refuses some malformed messages itself
                    pass
            print(f"ok {sent} {time.monotonic() - t0:.3f}", flush=True)
        elif cmd == "quit":
            break
    port.close_port()
    port.delete()


if __name__ == "__main__":
    if sys.argv[1] == "synth":
        synth(sys.argv[2], sys.argv[3])
    else:
        keys(sys.argv[2], sys.argv[3])
