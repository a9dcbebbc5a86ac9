"""No keyboard yet: call-response plays solo; a keyboard that appears (--input auto) switches it back."""

from __future__ import annotations

import signal
import time

import mido
import pytest

from support.daemon import NotifySocket, jack_player, notes
from support.jack import JackReceiver, JackSender

pytestmark = pytest.mark.jack


def statuses(ns: NotifySocket) -> list[str]:
    return [ln[len("STATUS=") :] for ln in ns.lines if ln.startswith("STATUS=")]


def test_no_keyboard_plays_solo_and_a_keyboard_plugged_in_later_gets_call_response(jack_server, bundle, tmp_path):
    ns = NotifySocket()
    with JackReceiver(None, client="autosynth") as rx:
        proc = jack_player(
            bundle,
            ns,
            "--output",
            "autosynth",
            "--phrase-gap",
            "1",
            "--answer-bars",
            "1",
            "--duration",
            "30",
            mode="call-response",
            input="auto",
            seed=3,
        )
        try:
            ns.read(until="READY=1", timeout=30)
            assert statuses(ns)[0].startswith("solo"), statuses(ns)
            deadline = time.monotonic() + 5
            while len(notes(rx.messages())) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(notes(rx.messages())) >= 3, "no keyboard: it should play on its own"
            with JackSender(None, client="autokeys") as keys:
                deadline = time.monotonic() + 5
                while not any(s.startswith("call-response") for s in statuses(ns)) and time.monotonic() < deadline:
                    ns.read(timeout=0.2)
                assert any(s.startswith("call-response") for s in statuses(ns)), statuses(ns)
                time.sleep(0.3)
                rx.settle()
                before = len(notes(rx.messages()))
                time.sleep(1.0)
                assert len(notes(rx.messages())) == before  # listening now: silent until a phrase ends
                for p in (60, 64, 67):
                    keys.send(mido.Message("note_on", note=p, velocity=90))
                    time.sleep(0.1)
                    keys.send(mido.Message("note_off", note=p))
                deadline = time.monotonic() + 5
                while len(notes(rx.messages())) == before and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert len(notes(rx.messages())) > before, "no answer to the phrase"
            code = proc.stop(signal.SIGTERM, timeout=10)
            err = proc.log()
            assert code == 0 and "Traceback" not in err
            assert "no keyboard connected: playing solo" in err and "autokeys" in err
        finally:
            proc.close()
            ns.close()
