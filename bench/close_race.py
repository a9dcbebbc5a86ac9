"""Does a JACK output's final silence survive its close? Open, sound a note, close, N times.

    python bench/close_race.py 150

A private JACK server (dummy driver, 16-frame period), a receiver in this process.
Each close must deliver its note-off and all-notes-off before the port is gone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support
from support.jack import JackReceiver, jack_env, start_free_server  # noqa: E402

server = start_free_server("cadenza-race", log_dir="/tmp")
os.environ.update(jack_env(server.name))
import mido  # noqa: E402

from cadenza.player.midi import OutputPort, open_backend  # noqa: E402

jack = open_backend("jack")
fails = 0
N = int(sys.argv[1]) if len(sys.argv) > 1 else 60
try:
    with JackReceiver(client="synth") as synth:
        for _i in range(N):
            with OutputPort("synth:in", jack) as out:
                out.send(mido.Message("note_on", channel=3, note=70, velocity=90))
                assert synth.wait_for(33)
                synth.clear()
            ok = synth.wait_for(33, timeout=2)
            fails += not ok
            synth.clear()
finally:
    server.stop()
print(f"{fails} of {N} closes lost their silence")
