"""Following a drum machine's MIDI clock through JACK: cadenza-play as a process, clock = "external".

A JACK client plays the drum machine: Start, then clock pulses (24 per beat) at
150 BPM, then at 75 BPM, then Stop. The player's notes must sit on the pulses at
both tempos, none before Start, and none sounding after Stop.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from support.daemon import NotifySocket, Player, sounding_after, write_config
from support.jack import JackReceiver, JackSender

pytestmark = [pytest.mark.jack, pytest.mark.slow]

CLOCK, START, STOP = 0xF8, 0xFA, 0xFC


class DrumMachine:
    """Clock pulses from a thread at absolute deadlines; keeps the monotonic time of each pulse sent."""

    def __init__(self, port: JackSender) -> None:
        self.port = port
        self.pulses: list[float] = []
        self.bpm = 150.0
        self._run = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_t = None
        while not self._stop.is_set():
            if not self._run.is_set():
                next_t = None
                time.sleep(0.001)
                continue
            now = time.monotonic()
            next_t = now if next_t is None else next_t
            if now < next_t:
                time.sleep(min(next_t - now, 0.005))
                continue
            self.port.send([CLOCK])
            self.pulses.append(time.monotonic())
            next_t += 60.0 / (self.bpm * 24)

    def start(self) -> None:
        self.port.send([START])
        self._run.set()

    def stop(self) -> None:
        self._run.clear()
        time.sleep(0.01)
        self.port.send([STOP])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.port.close()


def on_pulse_share(note_times: list[float], pulses: list[float], within: float) -> float:
    """The share of notes sent within `within` seconds of a clock pulse."""
    if not note_times:
        return 0.0
    hits = sum(1 for t in note_times if min(abs(t - p) for p in pulses) <= within)
    return hits / len(note_times)


def test_notes_follow_an_external_clock_through_jack(jack_server, bundle, tmp_path):
    cfg = write_config(
        tmp_path,
        bundle,
        client="clk",
        mode="solo",
        input="virtual",
        tempo=100.0,
        extra='\n[clock]\nsource = "external"\n',
    )
    with NotifySocket() as sd, Player(cfg, notify=sd) as player:
        assert sd.wait_for("READY", "1", timeout=60) is not None, player.log()[-3000:]
        synth = JackReceiver(source="clk:out", client="drumsynth")
        drums = DrumMachine(JackSender("clk", client="drums"))  # the player's input: clk-NN:in
        try:
            time.sleep(1.0)
            assert [b for _, b in synth.events if b[0] & 0xF0 == 0x90] == []  # no Start yet: silence

            def segment(bpm: float, seconds: float) -> list[float]:
                drums.bpm = bpm
                t0 = time.monotonic()
                time.sleep(seconds)
                return [
                    t / 1e9
                    for t, b in list(synth.events)
                    if b[0] & 0xF0 == 0x90 and b[2] > 0 and t0 + 0.5 <= t / 1e9 <= t0 + seconds
                ]

            drums.start()
            fast = segment(150.0, 6.0)
            slow = segment(75.0, 8.0)
            drums.stop()
            t_stop = time.monotonic()
            time.sleep(1.0)
            events = list(synth.events)
            pulses = list(drums.pulses)
        finally:
            drums.close()
            synth.close()
        statuses = sd.values("STATUS")
        rc = player.stop()
    log = player.log()
    assert rc == 0 and "Traceback" not in log, log[-3000:]
    assert any("(external clock)" in s for s in statuses), statuses
    assert len(fast) >= 5 and len(slow) >= 5, (len(fast), len(slow), log[-2000:])
    # On the pulses at either tempo (the receiver stamps up to 0.5 ms late; a pulse is 16.7 / 33.3 ms):
    # a player still on the 150 BPM grid at 75 BPM would put half its notes between pulses.
    share_fast, share_slow = on_pulse_share(fast, pulses, 0.004), on_pulse_share(slow, pulses, 0.004)
    errors = [min(abs(t - p) for p in pulses) * 1e3 for t in fast + slow]
    print(
        f"external clock: {len(fast)} + {len(slow)} notes, on a pulse (±4 ms): {share_fast:.0%} at 150 BPM, "
        f"{share_slow:.0%} at 75 BPM; median distance {statistics.median(errors):.2f} ms"
    )
    assert share_fast >= 0.8 and share_slow >= 0.8, (share_fast, share_slow, sorted(errors))
    # Stop: silence at once, and nothing left sounding.
    late_ons = [t for t, b in events if b[0] & 0xF0 == 0x90 and b[2] > 0 and t / 1e9 > t_stop + 0.05]
    assert late_ons == []
    assert sounding_after(events) == set()
