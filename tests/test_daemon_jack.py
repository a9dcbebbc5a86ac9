"""cadenza-play as a process on a JACK server: READY, SIGTERM, SIGHUP, a synth that goes and comes back."""

from __future__ import annotations

import signal
import time

import mido
import pytest

from support.daemon import NotifySocket, jack_player, notes, sounding_after
from support.jack import JackReceiver

pytestmark = pytest.mark.jack


def test_ready_watchdog_sigterm_leaves_nothing_sounding(jack_server, bundle, tmp_path):
    ns = NotifySocket()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[midi]\nchannel = 3\nprogram = 19\n[record]\nenabled = true\ndirectory = '{tmp_path}'\n")
    with JackReceiver(None, client="synth1") as rx:
        proc = jack_player(bundle, ns, "--output", "synth1", config=cfg)
        try:
            lines = ns.read(until="READY=1")
            assert "READY=1" in lines
            assert any(ln.startswith("STATUS=solo, 240 BPM, temperature 1.00") for ln in lines)
            deadline = time.monotonic() + 10
            while len(notes(rx.messages())) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(notes(rx.messages())) >= 10
            assert "WATCHDOG=1" in ns.read(until="WATCHDOG=1")
            code = proc.stop(signal.SIGTERM, timeout=10)
            err = proc.log()
            assert code == 0, err
            assert "STOPPING=1" in ns.read(until="STOPPING=1", timeout=1)
            rx.settle()  # the stop's last messages, however late this process's client runs
            msgs = rx.messages()
            assert sounding_after(msgs) == set(), (msgs[-12:], err[-3000:])
            # the program change went out before the first note, and every note on the configured channel
            first = msgs.index(notes(msgs)[0])
            assert [m.program for m in msgs[:first] if m.type == "program_change"] == [19]
            assert {m.channel for m in notes(msgs)} == {2}
            # the session was recorded: the keyboard (nothing) and what the synth got
            recorded = list(tmp_path.glob("session-*.mid"))
            assert len(recorded) == 1
            out_track = mido.MidiFile(recorded[0]).tracks[1]
            assert sum(1 for m in out_track if m.type == "note_on" and m.velocity) >= 10
        finally:
            proc.close()
            ns.close()


def test_synth_vanishes_and_returns(jack_server, bundle, tmp_path):
    ns = NotifySocket()
    rx = JackReceiver(None, client="synth2")
    proc = jack_player(bundle, ns, "--output", "synth2", "--duration", "20")
    try:
        ns.read(until="READY=1")
        deadline = time.monotonic() + 10
        while len(notes(rx.messages())) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        rx.close()  # the synth goes away while notes sound
        time.sleep(2.0)
        assert proc.poll() is None  # the player carries on
        rx = JackReceiver(None, client="synth2")  # and comes back under the same name
        deadline = time.monotonic() + 10
        while len(notes(rx.messages())) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        msgs = rx.messages()
        assert len(notes(msgs)) >= 5, "no notes after the synth came back"
        first_note = msgs.index(notes(msgs)[0])
        assert any(m.type == "control_change" and m.control == 123 for m in msgs[:first_note])  # silenced first
        assert proc.stop(signal.SIGINT, timeout=10) == 0
        rx.settle()  # the stop's last messages, however late this process's client runs
        assert sounding_after(rx.messages()) == set()
    finally:
        proc.close()
        rx.close()
        ns.close()


def test_sighup_reload_and_a_broken_config_keeps_playing(jack_server, bundle, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[play]\ntemperature = 0.5\n")
    ns = NotifySocket()
    with JackReceiver(None, client="synth3") as rx:
        proc = jack_player(bundle, ns, "--output", "synth3", "--duration", "20", tempo=None, seed=None, config=cfg)
        try:
            assert any("temperature 0.50" in ln for ln in ns.read(until="READY=1"))
            cfg.write_text("[play]\ntemperature = 1.5\n")
            ns.lines.clear()
            proc.send_signal(signal.SIGHUP)
            lines = ns.read(until="STATUS=solo, 100 BPM, temperature 1.50", timeout=5)
            assert any("temperature 1.50" in ln for ln in lines), lines
            cfg.write_text("[play]\ntemperature = 'hot'\n")
            proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            n = len(notes(rx.messages()))
            deadline = time.monotonic() + 8.0  # the tiny model plays sparsely: wait for its next note
            while len(notes(rx.messages())) <= n and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(notes(rx.messages())) > n  # still playing
            assert proc.stop(signal.SIGTERM, timeout=10) == 0
            errors = [ln for ln in proc.log().splitlines() if "reload failed" in ln]
            assert len(errors) == 1 and "play.temperature" in errors[0]
        finally:
            proc.close()
            ns.close()


def test_keyboard_phrase_is_answered_through_the_process(jack_server, bundle, tmp_path):
    from support.jack import JackSender

    ns = NotifySocket()
    with JackReceiver(None, client="synth4") as rx:
        proc = jack_player(
            bundle,
            ns,
            "--output",
            "synth4",
            "--phrase-gap",
            "1",
            "--answer-bars",
            "1",
            "--duration",
            "20",
            mode="call-response",
            input="virtual",
            seed=3,
        )
        try:
            ns.read(until="READY=1")
            with JackSender("cadenza", client="keys4") as keys:
                time.sleep(0.3)
                assert notes(rx.messages()) == []  # call-response: silent until a phrase ends
                for p in (60, 64, 67):
                    keys.send(mido.Message("note_on", note=p, velocity=90))
                    time.sleep(0.1)
                    keys.send(mido.Message("note_off", note=p))
                t_end = time.monotonic()
                deadline = t_end + 5
                while not notes(rx.messages()) and time.monotonic() < deadline:
                    time.sleep(0.01)
                answered = notes(rx.messages())
                assert answered, "no answer"
                # the answer came after the one-beat gap (0.25 s at 240 BPM), not during the phrase
                first_t = next(t for t, b in rx.events if (b[0] & 0xF0) == 0x90 and b[2] > 0) / 1e9
                assert first_t - t_end > 0.2
                time.sleep(1.5)  # one bar at 240 BPM is 1 s: the answer is over, everything released
                assert sounding_after(rx.messages()) == set()
            assert proc.stop(signal.SIGTERM, timeout=10) == 0
        finally:
            proc.close()
            ns.close()


def test_as_a_service_it_waits_for_a_synth_switched_on_later(jack_server, bundle, tmp_path):
    """Under systemd (INVOCATION_ID set) a synth that is not there yet is waited for, then played to."""
    ns = NotifySocket()
    proc = jack_player(bundle, ns, "--output", "latesynth", "--duration", "20", env={"INVOCATION_ID": "0" * 32})
    try:
        assert any(ln == "READY=1" for ln in ns.read(until="READY=1"))  # up, with its model, waiting
        time.sleep(1.0)
        assert proc.poll() is None
        with JackReceiver(None, client="latesynth") as rx:
            deadline = time.monotonic() + 6.0
            while not notes(rx.messages()) and time.monotonic() < deadline:
                time.sleep(0.1)
            got = rx.messages()
        assert notes(got), got[:10]
        first = got[0]
        assert first.type == "control_change" and first.control == 123  # silence before the first note
    finally:
        code = proc.stop(signal.SIGTERM, timeout=10)
        err = proc.log()
        ns.close()
    assert code == 0 and "Traceback" not in err
    assert "waiting" in err and "latesynth" in err
