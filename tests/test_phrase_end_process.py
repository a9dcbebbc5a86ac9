"""Keys and pedal left down, through the real process: `cadenza-play --render`, and call-response on JACK.

Each case plays eighth notes, then:

    held      notes 69, 71 and 72 struck together, only 69 released (lost note-offs)
    stuck     the sustain pedal pressed before the phrase and never released
    reversed  the pedal reads "down" at rest (127 before the phrase, nothing after); then a second
              phrase, with the pedal recognised as reversed

and measures the time from the last note-on to the first note of the answer. Expected, in beats:
held 16 (MAX_NOTE_TICKS) + phrase_gap; stuck and the first reversed phrase the last note's length +
4 * pedal_hold_bars; the second reversed phrase the last note's length + phrase_gap. The tests run at
240 BPM with pedal_hold_bars = 1; `bench/phrase_end.py` measures the same at 120 BPM with the defaults.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

from cadenza.player.events import MAX_NOTE_TICKS, TICKS_PER_BEAT

REPO = Path(__file__).resolve().parent.parent
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


# -- --render -------------------------------------------------------------------------


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


def note_on_ticks(track) -> list[int]:
    now, out = 0, []
    for m in track:
        now += m.time
        if m.type == "note_on" and m.velocity:
            out.append(now)
    return out


@pytest.mark.parametrize("case", CASES)
def test_render_ends_and_answers_after_the_bound(bundle, tmp_path, case):
    """`cadenza-play --render` with the phrase returns (it used to spin for ever), answering where expected."""
    seed = phrase_file(tmp_path / "phrase.mid", case)
    out = tmp_path / "out.mid"
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cadenza.player",
            "--render",
            out,
            "--model",
            bundle,
            "--seed-file",
            seed,
            "--include-seed",
            "--beats",
            "4",
            "--tempo",
            "120",
            "--seed",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert time.monotonic() - t0 < 30
    mid = mido.MidiFile(out)
    phrase_on, answer_on = note_on_ticks(mid.tracks[0]), note_on_ticks(mid.tracks[1])
    assert answer_on, "no answer"
    delay = (answer_on[0] - phrase_on[-1]) / mid.ticks_per_beat
    # the defaults: phrase_gap 2 beats, pedal_hold_bars 4 (one tick of the model's grid is 1/24 beat)
    assert delay == pytest.approx(expected_beats(case, 2.0, 4)[0], abs=1 / 24 + 1e-9), r.stderr[-2000:]


# -- call-response on JACK ------------------------------------------------------------


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
    from support.jack import JackReceiver, JackSender
    from tests.test_daemon_jack import Notify, start

    beat = 60.0 / tempo
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "pedal.toml"
    cfg.write_text(f"[play]\npedal_hold_bars = {hold_bars}\n")
    ns = Notify(folder / "notify")
    delays: list[float] = []
    with JackReceiver(None, client=f"{client}synth") as rx:
        proc = start(
            model,
            ns,
            "--config",
            cfg,
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
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            ns.close()
    return delays, err, proc.returncode


@pytest.mark.jack
@pytest.mark.parametrize("case", CASES)
def test_call_response_answers_keys_and_pedal_left_down(jack_server, bundle, tmp_path, case):
    """The answer comes, no sooner than the bound (a held key or pedal still delays it) and soon after."""
    tempo, gap, hold = 240.0, 1.0, 1
    delays, err, code = call_response(
        bundle, tmp_path, case, tempo=tempo, phrase_gap=gap, hold_bars=hold, client=f"pe{CASES.index(case)}"
    )
    want = [b * 60.0 / tempo for b in expected_beats(case, gap, hold)]
    assert len(delays) == len(want), (delays, err[-3000:])
    for d, w in zip(delays, want):
        assert w - 0.1 <= d <= w + 1.0, (delays, want, err[-3000:])
    assert code == 0, err[-3000:]
    assert err.count(REVERSED_LOG) == (1 if case in ("stuck", "reversed") else 0), err[-3000:]
