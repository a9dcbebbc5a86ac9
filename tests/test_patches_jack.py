"""The patch bank through the real process on JACK: a Program Change from a keyboard client switches the
model on a bar line (the synth's program with it), STATUS and the journal say so, an empty slot is ignored,
nothing is left sounding; a broken bundle in the bank stops the start with one line."""

from __future__ import annotations

import re
import shutil
import signal
import time

import mido
import pytest

from support.daemon import NotifySocket, jack_player, notes, one_line_exit_2, run_player, sounding_after
from support.jack import JackReceiver, JackSender

pytestmark = pytest.mark.jack


def _bank_config(tmp_path, bundle, broken: bool = False):
    second = tmp_path / "second.cadenza"
    if broken:
        second.write_bytes(b"PK\x03\x04 not a bundle")
    else:
        shutil.copy(bundle, second)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[patches]\n0 = "{bundle}"\n1 = {{ model = "second.cadenza", program = 42 }}\n')
    return cfg


def test_program_change_switches_the_patch_on_a_bar_line(jack_server, bundle, tmp_path):
    ns = NotifySocket()
    cfg = _bank_config(tmp_path, bundle)
    with JackReceiver(None, client="synthp") as rx:
        # solo at 240 BPM: a bar is 1 s
        proc = jack_player(bundle, ns, "--output", "synthp", "--duration", "30", input="virtual", config=cfg)
        try:
            lines = ns.read(until="READY=1")
            assert any(ln.startswith("STATUS=") and ln.endswith(", patch 0 tiny") for ln in lines), lines
            with JackSender("cadenza", client="keysp") as keys:
                time.sleep(1.2)
                keys.send(mido.Message("program_change", program=5))  # an empty slot
                keys.send(mido.Message("program_change", program=1))
                t_asked = time.monotonic()
                lines = ns.read(until="STATUS=solo, 240 BPM, temperature 1.00, key free, patch 1 second", timeout=5)
                assert any(ln.endswith("patch 1 second") for ln in lines), lines
                assert proc.wait_log("from the bar line at tick")
                m = re.search(r"patch 1: second from the bar line at tick (\d+) \(([\d.]+) s\)", proc.log())
                assert m, proc.log()[-2000:]
                bar_time = float(m.group(2))
                assert t_asked < bar_time < t_asked + 1.5  # the next bar line (a bar is 1 s)
                time.sleep(1.5)
                # the synth got its program for the patch, at the bar line, and notes go on after it
                events = [(t / 1e9, mido.Message.from_bytes(b)) for t, b in rx.events]
                changes = [t for t, msg in events if msg.type == "program_change" and msg.program == 42]
                assert len(changes) == 1 and abs(changes[0] - bar_time) < 0.05
                after = [t for t, msg in events if t >= changes[0] and msg.type == "note_on" and msg.velocity]
                assert after and after[0] - bar_time < 0.05  # the new patch's first note, on the bar line
            assert proc.stop(signal.SIGTERM, timeout=10) == 0
            rx.settle()
            assert sounding_after(rx.messages()) == set()
            log = proc.log()
            assert log.count("program change 5: no patch there, ignored (patches: 0 tiny, 1 second)") == 1
            assert len(notes(rx.messages())) > 4
        finally:
            proc.close()
            ns.close()


def test_a_broken_bundle_in_the_bank_is_one_line_and_exit_2(bundle, tmp_path):
    cfg = _bank_config(tmp_path, bundle, broken=True)
    r = run_player("--config", cfg, "--model", bundle, "--output", "nothing", "--duration", "1")
    line = one_line_exit_2(r)
    assert line.startswith("cadenza-play: patch 1 (") and "second.cadenza" in line, line


def test_reload_takes_a_new_bank_and_a_broken_one_keeps_the_old(jack_server, bundle, tmp_path):
    ns = NotifySocket()
    cfg = _bank_config(tmp_path, bundle)
    with JackReceiver(None, client="synthr") as rx:
        proc = jack_player(bundle, ns, "--output", "synthr", "--duration", "30", input="virtual", config=cfg)
        try:
            ns.read(until="READY=1")
            # a third patch, then SIGHUP: the new bank is opened and the patch playing keeps its number
            shutil.copy(bundle, tmp_path / "third.cadenza")
            cfg.write_text(cfg.read_text() + '7 = "third.cadenza"\n')
            proc.send_signal(signal.SIGHUP)
            assert proc.wait_log("reloaded settings and model", timeout=10)
            assert proc.wait_log("7 third (", timeout=1), proc.log()[-2000:]
            with JackSender("cadenza", client="keysr") as keys:
                time.sleep(0.5)
                keys.send(mido.Message("program_change", program=7))
                lines = ns.read(until="STATUS=solo, 240 BPM, temperature 1.00, key free, patch 7 third", timeout=5)
                assert any(ln.endswith("patch 7 third") for ln in lines), lines
                # a bank with a broken bundle: the reload fails in one line, the old bank stays
                (tmp_path / "fourth.cadenza").write_bytes(b"garbage")
                cfg.write_text(cfg.read_text() + '8 = "fourth.cadenza"\n')
                proc.send_signal(signal.SIGHUP)
                assert proc.wait_log("reload failed", timeout=10)
                keys.send(mido.Message("program_change", program=1))
                lines = ns.read(until="STATUS=solo, 240 BPM, temperature 1.00, key free, patch 1 second", timeout=5)
                assert any(ln.endswith("patch 1 second") for ln in lines), lines
            assert proc.stop(signal.SIGTERM, timeout=10) == 0
            rx.settle()
            assert sounding_after(rx.messages()) == set()
            failed = [ln for ln in proc.log().splitlines() if "reload failed" in ln]
            assert len(failed) == 1 and "patch 8 (" in failed[0] and "fourth.cadenza" in failed[0], failed
        finally:
            proc.close()
            ns.close()
