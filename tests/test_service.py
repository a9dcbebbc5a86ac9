"""The service as systemd runs it: the installed cadenza-play, a config file, the notify socket, SIGTERM.

systemd's side is played by the test: an AF_UNIX datagram socket in NOTIFY_SOCKET,
WATCHDOG_USEC in the environment, SIGTERM to stop. A JACK receiver stands in for
the synth on the player's virtual output.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from support.daemon import CADENZA_PLAY, NotifySocket, Player, sounding_after, write_config
from support.jack import JackReceiver

pytest.importorskip("tensorflow")

WATCHDOG_USEC = 2_000_000  # pings due every second (half of it)
SLACK_S = 0.75  # a loaded two-core machine delays a ping now and then; systemd would wait 2 s


def notes_of(events) -> list:
    return [d for _, d in events if len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2] > 0]


@pytest.mark.jack
@pytest.mark.slow
def test_service_notifies_plays_and_stops_clean(jack_server, bundle, tmp_path):
    assert CADENZA_PLAY.exists()
    cfg = write_config(tmp_path, bundle, client="svc", mode="solo", tempo=120.0)
    cfg.write_text("cpu_dma_latency = 0\n" + cfg.read_text())
    with NotifySocket() as sd, Player(cfg, notify=sd, watchdog_usec=WATCHDOG_USEC) as player:
        t_ready = sd.wait_for("READY", "1", timeout=60)
        assert t_ready is not None, player.log()[-3000:]
        fds = os.listdir(f"/proc/{player.proc.pid}/fd")
        holds = [f for f in fds if os.path.realpath(f"/proc/{player.proc.pid}/fd/{f}") == "/dev/cpu_dma_latency"]
        synth = JackReceiver(source="svc:out", client="svc-synth")
        try:
            time.sleep(4.0)
            n_before_stop = len(synth.events)
            t_term = time.monotonic()
            player.send_signal(signal.SIGTERM)
            rc = player.proc.wait(timeout=15)
            t_exit = time.monotonic()
            synth.settle()  # the last messages through the JACK graph
            events = list(synth.events)
        finally:
            synth.close()
        log = player.log()
    assert rc == 0, log[-3000:]
    assert t_exit - t_term < 5, "SIGTERM must stop the player promptly"
    assert "Traceback" not in log
    # The wake-up latency request is held while playing where permitted, else one line says why not.
    held, refused = log.count("CPU wake-up latency held at 0 µs"), log.count("cannot hold CPU wake-up latency")
    assert (held, refused, len(holds)) in ((1, 0, 1), (0, 1, 0)), (held, refused, holds)

    # READY=1 once, carrying the status; STATUS= says mode, tempo and temperature.
    assert len(sd.times("READY", "1")) == 1
    statuses = sd.values("STATUS")
    assert statuses and all(
        re.fullmatch(r"(call-response|duet|solo), \d+ BPM, temperature \d\.\d\d.*", s) for s in statuses
    ), statuses
    assert statuses[0].startswith("solo, 120 BPM, temperature 1.00")

    # WATCHDOG=1 from READY to STOPPING, never further apart than WATCHDOG_USEC/2 (+ slack).
    t_stop = sd.wait_for("STOPPING", "1", timeout=5)
    assert t_stop is not None and t_term <= t_stop <= t_exit + 0.1
    pings = [t for t in sd.times("WATCHDOG", "1") if t_ready <= t <= t_stop]
    assert len(pings) >= 3, pings
    gaps = [b - a for a, b in zip([t_ready] + pings, pings + [t_stop])]
    print(
        f"service: {len(pings)} watchdog pings, longest gap "
        f"{max(gaps):.3f} s; {len(notes_of(events))} notes; exit {rc} {t_exit - t_term:.2f} s after SIGTERM"
    )
    assert max(gaps) <= WATCHDOG_USEC / 2e6 + SLACK_S, gaps

    # The notes reached the synth, and none is left sounding.
    notes = notes_of(events)
    assert n_before_stop > 0 and len(notes) >= 3, events[:20]
    assert sounding_after(events) == set()
    last_on = max(i for i, (_, d) in enumerate(events) if len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2] > 0)
    tail = [d for _, d in events[last_on + 1 :]]
    assert [0xB0, 123, 0] in tail  # and the all-notes-off on the way out
