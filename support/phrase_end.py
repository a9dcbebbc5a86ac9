"""Keys and pedal left down, played into cadenza-play: the cases, their expected answer times, the phrase
as a MIDI file (for --render) and call-response on JACK (shared by tests/test_phrase_end_process.py and
bench/phrase_end.py).

Each case plays eighth notes, then:

    held      notes 69, 71 and 72 struck together, only 69 released (lost note-offs)
    stuck     the sustain pedal pressed before the phrase and never released
    reversed  the pedal reads "down" at rest (127 before the phrase, nothing after); then a second
              phrase, with the pedal recognised as reversed
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import mido

from cadenza.player.events import MAX_NOTE_TICKS, TICKS_PER_BEAT
from support.daemon import NotifySocket, jack_player
from support.jack import JackReceiver, JackSender

MELODY = (60, 62, 64, 65, 67, 65)
NOTE, STEP = 0.4, 0.5  # beats: an eighth note, a little detached
CASES = ("held", "stuck", "reversed")
REVERSED_LOG = "sustain pedal reads down at rest: treating it as reversed"


def expected_beats(case: str, phrase_gap: float, hold_bars: int, beats_per_bar: int = 4) -> list[float]:
    """Last note-on to the first answer note, per phrase, in beats."""
    if case == "held":
        return [MAX_NOTE_TICKS / TICKS_PER_BEAT + phrase_gap]
    bound = NOTE + hold_bars * beats_per_bar
    return [bound] if case == "stuck" else [bound, NOTE + phrase_gap]


def phrase_file(path: Path, case: str) -> Path:
    """The case's phrase as a MIDI file (480 ticks a beat)."""
    events = []  # (beat, message)
    if case in ("stuck", "reversed"):
        events.append((0.0, mido.Message("control_change", control=64, value=127)))
    for i, p in enumerate(MELODY):
        events += [
            (i * STEP, mido.Message("note_on", note=p, velocity=80)),
            (i * STEP + NOTE, mido.Message("note_off", note=p)),
        ]
    if case == "held":
        t = len(MELODY) * STEP
        events += [(t, mido.Message("note_on", note=p, velocity=80)) for p in (69, 71, 72)]
        events.append((t + NOTE, mido.Message("note_off", note=69)))
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    now = 0
    for beat, msg in sorted(events, key=lambda e: e[0]):
        tick = round(beat * 480)
        track.append(msg.copy(time=tick - now))
        now = tick
    mid.save(str(path))
    return path


def first_note_after(rx, t: float) -> float | None:
    """The arrival (s, monotonic) of the first note-on at the receiver after `t`."""
    with rx._cond:
        events = list(rx.events)
    return next((s / 1e9 for s, b in events if len(b) == 3 and b[0] & 0xF0 == 0x90 and b[2] and s / 1e9 > t), None)


def call_response(
    model,
    folder: Path,
    case: str,
    *,
    tempo: float,
    phrase_gap: float,
    hold_bars: int,
    answer_bars: int = 1,
    client: str = "pe",
) -> tuple[list[float], str, int]:
    """Start cadenza-play (JACK, call-response), play the case's phrase(s) into it; the seconds from the last
    note-on to the first answer note of each phrase, the player's log, and its exit code after SIGTERM."""
    beat = 60.0 / tempo
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "pedal.toml"
    cfg.write_text(f"[play]\npedal_hold_bars = {hold_bars}\n")
    ns = NotifySocket()
    delays: list[float] = []
    with JackReceiver(None, client=f"{client}synth") as rx:
        proc = jack_player(
            model,
            ns,
            "--output",
            f"{client}synth",
            "--phrase-gap",
            str(phrase_gap),
            "--answer-bars",
            str(answer_bars),
            "--duration",
            "120",
            mode="call-response",
            input="virtual",
            tempo=tempo,
            seed=3,
            config=cfg,
        )
        try:
            ns.read(until="READY=1", timeout=60)
            with JackSender("cadenza", client=f"{client}keys") as keys:
                if case in ("stuck", "reversed"):
                    keys.send(mido.Message("control_change", control=64, value=127))
                expected = expected_beats(case, phrase_gap, hold_bars)
                for i, want in enumerate(expected):
                    t_on = 0.0
                    for p in MELODY:
                        keys.send(mido.Message("note_on", note=p, velocity=90))
                        t_on = time.monotonic()
                        time.sleep(NOTE * beat)
                        keys.send(mido.Message("note_off", note=p))
                        time.sleep((STEP - NOTE) * beat)
                    if case == "held":
                        for p in (69, 71, 72):
                            keys.send(mido.Message("note_on", note=p, velocity=90))
                        t_on = time.monotonic()
                        time.sleep(NOTE * beat)
                        keys.send(mido.Message("note_off", note=69))
                    deadline = t_on + want * beat + 5.0
                    while (t := first_note_after(rx, t_on)) is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                    if t is None:
                        break
                    delays.append(t - t_on)
                    if i + 1 < len(expected):
                        time.sleep(answer_bars * 4 * beat + 0.5)  # the answer ends before the next phrase
        finally:
            try:
                code = proc.stop(signal.SIGTERM, timeout=15)
            except subprocess.TimeoutExpired:  # killed by then
                code = proc.poll()
            ns.close()
    return delays, proc.log(), code
