"""MIDI ports: names, in-memory unit tests, and the real thing through a private JACK server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mido
import pytest

from cadenza.player import midi
from cadenza.player.midi import InputPort, OutputPort, PortError, open_backend, resolve_port

ROOT = Path(__file__).resolve().parent.parent
CC_SILENCE = 32  # CC 123 + CC 64 on each of 16 channels, sent on every open


# -- names and backends -----------------------------------------------------------------


def test_open_backend_names():
    assert open_backend("jack").api == "UNIX_JACK"
    assert open_backend("ALSA").api == "LINUX_ALSA"
    assert open_backend("mido.backends.rtmidi/UNIX_JACK").api == "UNIX_JACK"
    auto = open_backend("")
    assert auto.name == "mido.backends.rtmidi"
    assert open_backend(None).name == "mido.backends.rtmidi"
    for bad, why in [
        ("fluidsynth", "unknown MIDI backend"),
        ("mido.backends.nope", "cannot load"),
        ("mido.backends.rtmidi/NOPE", "NOPE"),
    ]:
        with pytest.raises(PortError, match=why) as e:
            open_backend(bad)
        assert "\n" not in str(e.value)


@pytest.mark.skipif(sys.platform == "darwin", reason="CoreMIDI is there on macOS")
def test_backend_not_compiled_in():
    with pytest.raises(PortError, match="no MACOSX_CORE support"):
        open_backend("coremidi")


def test_resolve_port():
    avail = [
        "Midi Through:Midi Through Port-0 14:0",
        "USB MIDI:USB MIDI MIDI 1 20:0",
        "FLUID Synth (1234):Synth input port (1234:0) 128:0",
    ]
    assert resolve_port("fluid", avail) == avail[2]
    assert resolve_port("usb midi", avail) == avail[1]
    assert resolve_port(avail[0], avail) == avail[0]
    assert resolve_port("a", ["a", "ab"]) == "a"  # an exact name wins over substrings
    with pytest.raises(PortError) as e:
        resolve_port("hydrogen", ["Midi Through:0", "USB MIDI:1"])
    assert str(e.value) == "no MIDI output matches 'hydrogen'; available: 'Midi Through:0', 'USB MIDI:1'"
    with pytest.raises(PortError, match="2 MIDI inputs match 'midi'"):
        resolve_port("midi", ["Midi Through:0", "USB MIDI:1"], kind="input")
    with pytest.raises(PortError, match="available: none"):
        resolve_port("x", [])


def test_default_output_skips_through_and_our_own():
    assert midi.default_output(["Midi Through:0", "cadenza:in", "cadenza-01:in", "synth:in"]) == "synth:in"
    assert midi.default_output(["Midi Through Port-0", "cadenza:in 130:0"]) is None


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="this machine has an ALSA sequencer")
def test_list_ports_without_alsa_is_one_line(capfd):
    text = midi.format_port_list(open_backend("alsa"))
    assert text.splitlines()[1].startswith("no MIDI system: the ALSA sequencer is missing")
    assert len(text.splitlines()) == 2
    assert "ALSA lib" not in capfd.readouterr().err  # the C library's noise is hidden


def test_list_ports_without_jack_server_is_one_line():
    # In a child: a failed libjack connect must not touch this process's JACK clients.
    code = "from cadenza.player import midi; print(midi.format_port_list(midi.open_backend('jack')))"
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"cadenza-absent-{os.getpid()}", "JACK_NO_START_SERVER": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "MIDI backend: JACK (libjack)",
        "no MIDI system: the JACK server is not running (start jackd, or choose another backend)",
    ]
    assert r.stderr == ""


# -- an in-memory backend: ports that can be unplugged ---------------------------------------


class FakePort(mido.ports.BaseOutput):
    def __init__(self, name, system):
        self.system = system
        self.sent = []
        super().__init__(name)

    def _send(self, msg):
        if self.name not in self.system.present:
            raise OSError(f"{self.name} is gone")
        self.sent.append(msg)


class FakeInput:
    def __init__(self, name, callback):
        self.name, self.callback, self.closed = name, callback, False

    def close(self):
        self.closed = True


class FakeBackend:
    """Duck-types mido.Backend; `present` is the list of ports plugged in."""

    name = "fake"
    api = None

    def __init__(self, *names):
        self.present = list(names)
        self.opened: list[FakePort] = []
        self.inputs: list[FakeInput] = []

    def get_output_names(self):
        return list(self.present)

    get_input_names = get_output_names

    def open_output(self, name, virtual=False, client_name=None):
        if virtual:
            self.present.append(f"{client_name}:{name}")
            name = f"{client_name}:{name}"
        if name not in self.present:
            raise OSError(f"no {name}")
        self.opened.append(FakePort(name, self))
        return self.opened[-1]

    def open_input(self, name, callback=None, virtual=False, client_name=None):
        self.inputs.append(FakeInput(name, callback))
        return self.inputs[-1]


def _notes(port):
    return [m for m in port.sent if m.type in ("note_on", "note_off")]


def test_output_silences_on_open_and_tracks_sounding_notes():
    b = FakeBackend("Midi Through:0", "USB MIDI:1")
    with OutputPort("usb", b, reconnect_interval=0) as out:
        assert (out.name, out.connected) == ("USB MIDI:1", True)
        first = b.opened[0]
        assert len(first.sent) == CC_SILENCE
        assert {(m.control, m.value) for m in first.sent} == {(123, 0), (64, 0)}
        out.send(mido.Message("note_on", note=60, velocity=80))
        out.send(mido.Message("note_on", channel=2, note=64, velocity=80))
        out.send(mido.Message("note_on", note=67, velocity=80))
        out.send(mido.Message("note_on", note=67, velocity=0))  # a note-off by another name
        assert out.sounding() == {(0, 60), (2, 64)}
        first.sent.clear()
        out.all_notes_off()
        assert [(m.channel, m.note) for m in _notes(first)] == [(0, 60), (2, 64)]
        assert out.sounding() == frozenset()
    assert first.closed
    out.close()  # twice is fine


def test_output_lost_and_back_resends_note_offs():
    b = FakeBackend("synth:in")
    calls = []
    out = OutputPort("synth", b, reconnect_interval=0)
    out.on_reconnect = calls.append
    out.send(mido.Message("note_on", note=60, velocity=80))
    b.present.remove("synth:in")  # unplugged
    assert not out.send(mido.Message("note_off", note=60))  # never raises
    assert (out.connected, out.dropped) == (False, 1)
    assert out.sounding() == {(0, 60)}  # its note-off never arrived
    out.maintain()  # still gone: nothing happens
    assert not out.connected and len(b.opened) == 1
    b.present.append("synth:in")
    out.maintain()
    assert out.connected and calls == [out] and out.lost_count == 1
    again = b.opened[-1]
    assert [(m.type, m.note) for m in _notes(again)] == [("note_off", 60)]
    assert len(again.sent) == 1 + CC_SILENCE
    assert out.sounding() == frozenset()
    assert out.send(mido.Message("note_on", note=62))
    out.close()


def test_output_vanished_without_error_is_found_by_maintain():
    b = FakeBackend("USB MIDI:USB MIDI MIDI 1 20:0")
    out = OutputPort("usb midi", b, reconnect_interval=0)
    b.present[:] = []
    out.maintain()
    assert not out.connected
    b.present[:] = ["USB MIDI:USB MIDI MIDI 1 24:0"]  # replugged: ALSA gives it a new client number
    out.maintain()
    assert out.connected and out.name == "USB MIDI:USB MIDI MIDI 1 24:0"
    out.close()


def test_output_auto_and_virtual():
    b = FakeBackend("Midi Through:0", "synth:in")
    with OutputPort("", b, reconnect_interval=0) as out:
        assert out.name == "synth:in"
    b = FakeBackend("Midi Through:0")
    with OutputPort("", b, reconnect_interval=0) as out:
        assert out.name == "cadenza:out" and out.virtual
    with OutputPort("virtual", FakeBackend(), client_name="bach", reconnect_interval=0) as out:
        assert out.name == "bach:out"


def test_output_missing_at_start_is_a_port_error():
    with pytest.raises(PortError, match="no MIDI output matches 'fluid'; available: 'Midi Through:0'"):
        OutputPort("fluid", FakeBackend("Midi Through:0"), reconnect_interval=0)


def test_wait_for_a_port_that_comes_later():
    b = FakeBackend("Midi Through:0")
    with pytest.raises(midi.PortNotFound):
        OutputPort("synth", b, reconnect_interval=0)
    out = OutputPort("synth", b, wait=True, reconnect_interval=0)
    opened = []
    out.on_reconnect = opened.append
    assert not out.connected and not out.send(mido.Message("program_change", program=5))
    out.maintain()
    assert not out.connected
    b.present.append("synth:in")
    out.maintain()
    assert out.connected and out.name == "synth:in" and opened == [out]
    assert len(b.opened[0].sent) == CC_SILENCE
    out.close()
    keys = InputPort("keys", b, wait=True, reconnect_interval=0)
    assert not keys.connected
    b.present.append("keys:out")
    keys.maintain()
    assert keys.connected and keys.name == "keys:out"
    keys.close()


def test_output_reconnect_thread():
    b = FakeBackend("synth:in")
    out = OutputPort("synth", b, reconnect_interval=0.02)
    b.present.clear()
    deadline = time.monotonic() + 2
    while out.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not out.connected
    b.present.append("synth:in")
    while not out.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.connected
    out.close()
    assert not out._thread.is_alive()


def test_input_stamps_queues_and_counts():
    b = FakeBackend("keys:out")
    inp = InputPort("keys", b, queue_size=2, reconnect_interval=0)
    cb = b.inputs[0].callback
    before = time.monotonic()
    cb(mido.Message("note_on", note=60))
    cb(mido.Message("clock"))
    cb(mido.Message("note_off", note=60))  # the queue holds two: dropped, not blocked
    inp._on_midi(([0x3C], 0.0))  # a lone data byte
    inp._on_midi(([0x90, 60], 0.0))  # a truncated note-on
    inp._on_midi((None, 0.0))  # nonsense from below
    assert (inp.dropped, inp.malformed, inp.received) == (1, 3, 2)
    t, msg = inp.get(timeout=1)
    assert before <= t <= time.monotonic() and msg.type == "note_on"
    assert [m.type for _, m in inp.drain()] == ["clock"]
    assert inp.get(timeout=0) is None
    inp.close()
    inp.close()


def test_no_input():
    for q in (None, "", "none", "None"):
        with InputPort(q, FakeBackend("keys:out"), reconnect_interval=0) as inp:
            assert not inp.connected and inp.name == ""
            t = time.monotonic()
            assert inp.get(timeout=0.05) is None
            assert time.monotonic() - t >= 0.04
            inp.maintain()


# -- the real thing: JACK -------------------------------------------------------------------


@pytest.fixture
def jack(jack_server):
    return open_backend("jack")


def _wait(pred, timeout=3.0) -> float:
    """Seconds until pred() held; fails after `timeout`."""
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.005)
    return time.monotonic() - t0


@pytest.mark.jack
@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="with an ALSA sequencer, auto means ALSA")
def test_auto_backend_is_jack_without_alsa(jack_server):
    assert open_backend("").api == "UNIX_JACK"


@pytest.mark.jack
def test_jack_list_ports(jack):
    from support.jack import JackReceiver, JackSender

    with JackReceiver(client="synth"), JackSender(client="keys"):
        inputs, outputs = midi.list_ports(jack)
        assert "synth:in" in outputs and "keys:out" in inputs
        text = midi.format_port_list(jack)
        assert "JACK (libjack)" in text and "'synth:in'" in text


@pytest.mark.jack
def test_jack_virtual_output_delivers_in_order(jack):
    from support.jack import JackReceiver

    with OutputPort("virtual", jack, client_name="cadenza") as out:
        assert out.name == "cadenza:out"
        with JackReceiver(source=out.name) as synth:
            sent = []
            for i in range(50):
                msg = mido.Message("note_on" if i % 2 == 0 else "note_off", note=60 + i // 2, velocity=64)
                sent.append(time.monotonic_ns())
                assert out.send(msg)
                time.sleep(0.002)
            assert synth.wait_for(50)
            got = synth.messages()
            assert [m.bytes() for m in got] == [
                mido.Message("note_on" if i % 2 == 0 else "note_off", note=60 + i // 2, velocity=64).bytes()
                for i in range(50)
            ]
            lat_ms = sorted((t - s) / 1e6 for (t, _), s in zip(synth.events, sent))
            print(f"JACK virtual output latency: median {lat_ms[25]:.2f} ms, max {lat_ms[-1]:.2f} ms")
            assert lat_ms[25] < 20


@pytest.mark.jack
def test_jack_output_target_lost_and_back(jack):
    from support.jack import JackReceiver

    synth = JackReceiver(client="synth")
    reconnects = []
    out = OutputPort("synth", jack, reconnect_interval=0.25)
    out.on_reconnect = reconnects.append
    try:
        assert out.name == "synth:in"
        assert synth.wait_for(CC_SILENCE)  # all-notes-off on open
        synth.clear()
        out.send(mido.Message("note_on", note=60, velocity=90))
        assert synth.wait_for(1)
        synth.close()  # the synth goes away; rtmidi's send would not notice
        lost_after = _wait(lambda: not out.connected)
        assert not out.send(mido.Message("note_off", note=60)) and out.dropped == 1
        assert out.sounding() == {(0, 60)}
        synth = JackReceiver(client="synth")  # ... and comes back
        back_after = _wait(lambda: out.connected)
        assert synth.wait_for(1 + CC_SILENCE)
        first = synth.messages()[:3]
        assert [(m.type, getattr(m, "note", None), getattr(m, "control", None)) for m in first] == [
            ("note_off", 60, None),
            ("control_change", None, 123),
            ("control_change", None, 64),
        ]
        assert reconnects == [out] and out.sounding() == frozenset()
        synth.clear()
        assert out.send(mido.Message("note_on", note=62, velocity=90))
        assert synth.wait_for(1)
        print(f"lost detected after {lost_after:.2f} s, back after {back_after:.2f} s (interval 0.25 s)")
    finally:
        out.close()
        synth.close()


@pytest.mark.jack
def test_jack_close_silences_sounding_notes(jack):
    from support.jack import JackReceiver

    # Closed straight after the silence is queued, a port could leave before the silence did
    # (6 closes in 60 before the drain wait): twenty closes in a row, every one delivered.
    with JackReceiver(client="synth") as synth:
        for i in range(20):
            with OutputPort("synth:in", jack) as out:
                out.send(mido.Message("note_on", channel=3, note=70, velocity=90))
                assert synth.wait_for(CC_SILENCE + 1)
                synth.clear()
            assert synth.wait_for(1 + CC_SILENCE), f"close {i}: the silence was lost"  # delivered
            m = synth.messages()[0]
            assert (m.type, m.channel, m.note) == ("note_off", 3, 70)
            synth.clear()


@pytest.mark.jack
def test_jack_input_receives_notes_and_clock(jack):
    from support.jack import JackSender

    with InputPort("virtual", jack, client_name="cadenza") as keys:
        assert keys.name.endswith(":in") and keys.connected
        with JackSender(target=keys.name) as kb:
            msgs = [
                mido.Message("start"),
                mido.Message("clock"),
                mido.Message("note_on", note=60, velocity=70),
                mido.Message("clock"),
                mido.Message("note_off", note=60),
                mido.Message("stop"),
                mido.Message("continue"),
                mido.Message("control_change", control=64, value=0),
            ]
            t0 = time.monotonic()
            sent_at = []
            for m in msgs:
                sent_at.append(time.monotonic())
                kb.send(m)
                time.sleep(0.001)
            got = []
            while len(got) < len(msgs):
                item = keys.get(timeout=2)
                assert item is not None, f"only {got}"
                got.append(item)
        assert [m for _, m in got] == msgs
        stamps = [t for t, _ in got]
        assert stamps == sorted(stamps) and t0 <= stamps[0] <= time.monotonic()
        late_ms = [(t - s) * 1000 for t, s in zip(stamps, sent_at)]
        assert all(-1 < x < 50 for x in late_ms), late_ms  # polled, and dated by rtmidi's deltas


@pytest.mark.jack
def test_jack_input_survives_malformed_bytes(jack):
    from support.jack import JackSender

    with InputPort("virtual", jack) as keys, JackSender(target=keys.name) as kb:
        # A sysex may come in pieces (bridges from ALSA split it); rtmidi skips them all, up to the
        # piece that ends in 0xF7. So an unterminated sysex would hide what follows until an 0xF7.
        for raw in (
            [0x3C],
            [0x90, 60],
            [0xF0] + [0x11] * 1022 + [0xF7],
            [0x90, 200, 1],
            [0xF0, 1, 2],
            [3, 4, 0xF7],
            [0xFE],
        ):
            kb.send(raw)
        kb.send([0x90, 61, 99])
        item = keys.get(timeout=2)
        assert item is not None and item[1] == mido.Message("note_on", note=61, velocity=99)
        assert keys.malformed >= 3  # the lone byte, the short note-on, the out-of-range note
        assert keys.get(timeout=0.1) is None  # sysex and active sensing are filtered out


@pytest.mark.jack
def test_jack_named_input_lost_and_back(jack):
    from support.jack import JackSender

    kb = JackSender(client="keystation")
    keys = InputPort("keystation", jack, reconnect_interval=0.25)
    try:
        assert keys.name == "keystation:out"
        time.sleep(0.05)
        kb.send([0x90, 60, 1])
        assert keys.get(timeout=2)[1].note == 60
        kb.close()
        _wait(lambda: not keys.connected)
        kb = JackSender(client="keystation")
        _wait(lambda: keys.connected)
        time.sleep(0.05)
        kb.send([0x90, 62, 1])
        assert keys.get(timeout=2)[1].note == 62
    finally:
        keys.close()
        kb.close()


JACK_DEATH = textwrap.dedent("""
    import os, signal, sys, time, mido
    sys.path.insert(0, sys.argv[1])
    from cadenza.player.midi import OutputPort, InputPort, open_backend
    from support.jack import JackReceiver, jack_env, start_free_server
    server = start_free_server("cadenza-death")
    os.environ.update(jack_env(server.name))
    b = open_backend("jack")
    out = OutputPort("virtual", b, reconnect_interval=0.2)
    keys = InputPort("virtual", b, reconnect_interval=0.2)
    server.stop(signal.SIGKILL)      # no goodbye: the socket file stays behind
    t0 = time.monotonic()
    for i in range(5000):            # far more than rtmidi's ring buffer holds
        out.send(mido.Message("note_on", note=60, velocity=1))
    print("sends", round(time.monotonic() - t0, 2), "lost", not out.connected, "dropped", out.dropped, flush=True)
    t0 = time.monotonic()
    while keys.connected and time.monotonic() - t0 < 3:  # closing a dead client holds the GIL ~1 s
        time.sleep(0.02)
    print("input lost", not keys.connected, flush=True)
    server.start()
    t0 = time.monotonic()
    while not (out.connected and keys.connected) and time.monotonic() - t0 < 5:
        time.sleep(0.02)
    print("back", out.connected, keys.connected, out.name.endswith(":out"), flush=True)
    with JackReceiver(source=out.name) as synth:
        out.send(mido.Message("note_on", note=64, velocity=1))
        print("delivered", synth.wait_for(1), flush=True)
    out.close(); keys.close(); server.stop()
    print("done", flush=True)
""")


@pytest.mark.jack
@pytest.mark.slow
def test_jack_server_death_neither_hangs_nor_crashes(jack_server):
    r = subprocess.run([sys.executable, "-c", JACK_DEATH, str(ROOT)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert (
        lines[0].split()[2:] == ["lost", "True", "dropped", lines[0].split()[-1]] and int(lines[0].split()[-1]) > 4000
    )
    assert lines[1:] == ["input lost True", "back True True True", "delivered True", "done"]


@pytest.mark.jack
def test_bench_receiver_stamps_comparable_times(jack, tmp_path):
    out_file = tmp_path / "recv.jsonl"
    with OutputPort("virtual", jack, client_name="cadenza-bench") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "receiver.py"),
                "--port",
                out.name,
                "--out",
                str(out_file),
                "--duration",
                "1.5",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().startswith("READY cadenza-bench:out")
            sent = []
            for i in range(20):
                sent.append(time.monotonic_ns())
                out.send(mido.Message("note_on", note=50 + i, velocity=64))
                time.sleep(0.005)
            out.send(mido.Message("clock"))
            assert proc.wait(timeout=10) == 0, proc.stderr.read()
        finally:
            proc.kill()
    import json

    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["data"] for r in lines] == [[0x90, 50 + i, 64] for i in range(20)] + [[0xF8]]
    lat_ms = [(r["t_ns"] - s) / 1e6 for r, s in zip(lines, sent)]
    assert all(0 < x < 50 for x in lat_ms), lat_ms


@pytest.mark.jack
def test_jack_burst_arrives_whole_and_in_order(jack):
    # A runaway burst (a note-off for every note on every channel, twice) goes out whole: what
    # does not fit a cycle's port buffer waits for the next one, checked at an independent receiver.
    from support.jack import JackReceiver

    with JackReceiver(client="burst-synth") as synth:
        out = OutputPort("burst-synth", jack, client_name="cadenza-burst")
        msgs = [mido.Message("note_off", channel=i % 16, note=i % 128) for i in range(4096)]
        t0 = time.monotonic()
        sent = sum(out.send(m) for m in msgs)
        assert time.monotonic() - t0 < 2  # queued, never spinning
        deferred = out._io.deferred
        out.close()  # waits until the burst has left, then silences
        synth.settle()
        got = synth.messages()
    assert sent == 4096 and out.dropped == 0
    notes = [m for m in got if m.type == "note_off"]
    assert notes == msgs  # all of them, in order, after the open's silence and before the close's
    # CC 123 and 64 on 16 channels at the open, and at the close twice, or more while the server reported xruns
    from cadenza.player.midi.port import JACK_SILENCE_MAX

    silences, rest = divmod(len(got) - len(msgs), 2 * 16)
    assert rest == 0 and 1 + 2 <= silences <= 1 + JACK_SILENCE_MAX, len(got)
    print(f"4096-message burst: {deferred} cycles filled their port buffer")


def test_jack_close_sends_the_silence_again_while_the_server_reports_xruns(jack, caplog):
    # In jackd's asynchronous mode a late client's cycle is lost; the server reports it as an xrun.
    from support.jack import JackReceiver

    with JackReceiver(client="xrun-synth") as synth:
        out = OutputPort("xrun-synth", jack, client_name="cadenza-xrun")
        reported = iter([0, 1, 2, 2, 2, 2, 2, 2])  # an xrun after the first silence, and after the second
        out._xruns = lambda: next(reported)
        with caplog.at_level(logging.INFO, logger="cadenza.player.midi.port"):
            out.close()
        synth.settle()
        got = synth.messages()
    ch0 = [m for m in got if m.type == "control_change" and m.control == 123 and m.channel == 0]
    assert len(ch0) == 1 + 3  # the open's, then three at the close: the last with no xrun after it
    assert any("closing silence sent 3 times" in r.getMessage() for r in caplog.records)


def test_rtmidi_send_warning_is_an_error():
    # ALSA reports a failed send only as a warning through RtMidi's error callback.
    import rtmidi

    from cadenza.player.midi.rtmidi_io import RtmidiIO

    io = RtmidiIO.__new__(RtmidiIO)  # no ALSA here: the send path alone
    io.warning = None
    alsa_warning = "MidiOutAlsa::sendMessage: error sending MIDI message to port."

    class FailingRt:
        def send_message(self, data):
            io._on_error(rtmidi.ERRORTYPE_WARNING, alsa_warning)

    io.rt = FailingRt()
    with pytest.raises(OSError, match="error sending"):
        io.send(mido.Message("note_on", note=60))
    with pytest.raises(rtmidi.RtMidiError):
        io._on_error(rtmidi.ERRORTYPE_INVALID_PARAMETER, "bad")  # errors still raise


@pytest.mark.jack
def test_failed_send_marks_the_port_lost(jack):
    with OutputPort("virtual", jack, client_name="cadenza-warn", reconnect_interval=0) as out:
        io = out._io

        def failing(msg):
            raise OSError("error sending MIDI message to port")

        real, io.send = io.send, failing
        assert not out.send(mido.Message("note_on", note=60))
        assert not out.connected and out.dropped == 1
        io.send = real
        out.maintain()  # a virtual port is simply reopened
        assert out.connected and out.send(mido.Message("note_on", note=60))
