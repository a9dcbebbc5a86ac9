"""Process death and signals: SIGKILL mid-note, SIGTERM during a port reopen, SIGHUP with a broken config.

The player runs as the service does (a subprocess with a config file, JACK), and
plays to a synth's port by name, so the synth outlives the player and sees what a
restart sends first.
"""

from __future__ import annotations

import signal
import time

import pytest

from support.daemon import Player, sounding_after, wait_sounding, write_config
from support.jack import JackReceiver

pytest.importorskip("tensorflow")
from support.models import converted  # noqa: E402


def _config(tmp_path, client: str, synth: str, **kw):
    cfg = write_config(tmp_path, converted().bundle, client=client, mode="solo", tempo=200.0, **kw)
    cfg.write_text(cfg.read_text().replace('output = "virtual"', f'output = "{synth}"'))
    return cfg


def _is_note_on(d) -> bool:
    return len(d) == 3 and d[0] & 0xF0 == 0x90 and d[2] > 0


@pytest.mark.jack
@pytest.mark.slow
def test_sigkill_mid_note_then_restart_silences_first(jack_server, tmp_path):
    cfg = _config(tmp_path, "killed", "killed-synth")
    with JackReceiver(client="killed-synth") as synth:
        for _ in range(3):  # a note may end between seeing it and the kill: then again
            player = Player(cfg).start()
            try:
                player.wait_ready()
                wait_sounding(synth)
                player.proc.kill()  # no goodbye: the notes stay on at the synth
                player.proc.wait(timeout=10)
            finally:
                player.close()
            time.sleep(0.3)
            hung = sounding_after(list(synth.events))
            if hung:
                break
        assert hung, "the kill left nothing sounding: nothing tested"
        synth.clear()
        with Player(cfg) as again:
            again.wait_ready()
            assert synth.wait_for(20, timeout=10)
            first = [d for _, d in synth.events]
            rc = again.stop()
    print(f"sigkill: {len(hung)} notes hung by the kill; restart sent first {first[:3]}")
    assert first[0] == [0xB0, 123, 0], first[:5]  # the very first message: all notes off
    before_music = first[: next((i for i, d in enumerate(first) if _is_note_on(d)), len(first))]
    assert {(0xB0 | ch, 123, 0) for ch in range(16)} <= {tuple(d) for d in before_music}
    assert rc == 0 and "Traceback" not in again.log()


@pytest.mark.jack
@pytest.mark.slow
def test_sigterm_while_the_port_is_lost_or_reopening(jack_server, tmp_path):
    cfg = _config(tmp_path, "term", "term-synth")
    results = []
    for when in ("lost", "reopening"):
        synth = JackReceiver(client="term-synth")
        player = Player(cfg).start()
        try:
            player.wait_ready()
            wait_sounding(synth)
            synth.close()
            assert player.wait_log("lost", timeout=5)
            if when == "reopening":
                synth = JackReceiver(client="term-synth")  # back: the port's thread reopens it within 1 s
                # SIGTERM the moment the reopen is done (its all-notes-off just sent, notes about to resume)
                assert player.wait_log("back after", timeout=5), player.log()[-2000:]
            else:
                synth = None
            t0 = time.monotonic()
            player.send_signal(signal.SIGTERM)
            rc = player.proc.wait(timeout=10)
            results.append((when, rc, round(time.monotonic() - t0, 2)))
            log = player.log()
            assert rc == 0 and "Traceback" not in log, log[-3000:]
            assert time.monotonic() - t0 < 5
            if synth is not None:
                time.sleep(0.3)
                events = list(synth.events)
                assert events and sounding_after(events) == set(), events[-10:]
                assert [0xB0, 123, 0] in [d for _, d in events]
        finally:
            player.close()
            if synth is not None:
                synth.close()
    print("sigterm:", results)


@pytest.mark.jack
@pytest.mark.slow
def test_sighup_with_a_broken_config_keeps_playing(jack_server, tmp_path):
    cfg = _config(tmp_path, "hup", "hup-synth")
    good = cfg.read_text()
    with JackReceiver(client="hup-synth") as synth, Player(cfg) as player:
        player.wait_ready()
        wait_sounding(synth)
        cfg.write_text(good.replace("tempo = 200.0", 'tempo = "fast"'))
        player.send_signal(signal.SIGHUP)
        assert player.wait_log("reload failed", timeout=10), player.log()[-2000:]
        n = len(synth.events)
        time.sleep(2.0)
        still = len(synth.events) - n
        cfg.write_text(good.replace("tempo = 200.0", "tempo = 150.0"))  # a good one is taken
        player.send_signal(signal.SIGHUP)
        assert player.wait_log("reloaded settings", timeout=10), player.log()[-2000:]
        rc = player.stop()
    log = player.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    print(f"sighup: {still} messages in the 2 s after the failed reload; {errors}")
    assert len(errors) == 1 and "play.tempo" in errors[0], errors
    assert still > 0, "the player stopped playing after the failed reload"
    assert rc == 0 and "Traceback" not in log
