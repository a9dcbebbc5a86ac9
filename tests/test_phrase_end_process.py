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

import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

from support.phrase_end import CASES, REVERSED_LOG, call_response, expected_beats, phrase_file

REPO = Path(__file__).resolve().parent.parent


# -- --render -------------------------------------------------------------------------


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
