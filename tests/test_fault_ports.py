"""Output port loss with the player running: the synth's port disappears mid-note and comes back.

The player (a subprocess, solo, JACK) plays to a synth's port by name. The synth
closes its client while notes sound, then a new one of the same name appears: the
player reopens within 2 s, and the first thing the new port receives is the
silence (note-offs for what the player left sounding, CC 123 and CC 64) before any
new note. Twice, to see that nothing grows (threads, file descriptors, memory) and
that no exception reaches stderr.
"""

from __future__ import annotations

import os
import time

import pytest

from support.daemon import Player, rss_kb, sounding_after, wait_sounding, write_config
from support.jack import JackReceiver

pytest.importorskip("tensorflow")
from support.models import converted  # noqa: E402


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _preamble(events) -> list[list[int]]:
    """What arrived before the first note-on."""
    out = []
    for _, d in events:
        if len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2] > 0:
            break
        out.append(d)
    return out


@pytest.mark.jack
@pytest.mark.slow
def test_synth_port_lost_mid_note_and_back(jack_server, tmp_path):
    cfg = write_config(tmp_path, converted().bundle, client="lossy", mode="solo", tempo=200.0, extra="")
    cfg.write_text(cfg.read_text().replace('output = "virtual"', 'output = "lossy-synth"'))
    synth = JackReceiver(client="lossy-synth")  # its port "lossy-synth:in" is there before the player
    with Player(cfg) as player:
        try:
            player.wait_ready()
            time.sleep(1.0)
            base, reopens = None, []
            for cycle in range(2):
                wait_sounding(synth)
                synth.close()  # the synth goes away mid-note
                assert player.wait_log("lost", timeout=5, count=cycle + 1), player.log()[-2000:]
                time.sleep(0.3)
                synth = JackReceiver(client="lossy-synth")
                t_back = time.monotonic()
                assert synth.wait_for(1, timeout=2.5), f"no reopen within 2 s:\n{player.log()[-2000:]}"
                reopen_s = synth.events[0][0] / 1e9 - t_back
                reopens.append(round(reopen_s, 3))
                assert reopen_s < 2.0
                assert synth.wait_for(40, timeout=10)  # the silence, then music again
                pre = _preamble(list(synth.events))
                assert [0xB0, 123, 0] in pre, pre  # all-notes-off on the channel played
                assert [0xB0, 64, 0] in pre
                offs = [d for d in pre if d[0] & 0xF0 in (0x80, 0x90)]
                assert all(d[0] & 0xF0 == 0x80 or d[2] == 0 for d in offs)  # only note-offs before it
                if base is None:
                    time.sleep(0.5)
                    base = (_threads(player.pid), _fds(player.pid), rss_kb(player.pid))
            time.sleep(0.5)
            after = (_threads(player.pid), _fds(player.pid), rss_kb(player.pid))
            rc = player.stop()
            time.sleep(0.3)
            events = list(synth.events)
        finally:
            synth.close()
    log = player.log()
    print(f"port loss: reopened after {reopens} s (from the port's return); threads/fds/rss {base} -> {after}")
    assert rc == 0 and "Traceback" not in log, log[-3000:]
    assert log.count("back after") >= 2
    assert after[0] <= base[0] and after[1] <= base[1], (base, after)  # no thread or descriptor left over
    assert after[2] - base[2] < 4096, (base, after)
    assert sounding_after(events) == set()
