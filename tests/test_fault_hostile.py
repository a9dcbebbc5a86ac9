"""Hostile MIDI input through the real JACK path: the player in duet mode, a flooding client, a receiver.

200,000 random and malformed messages in 20 s (bench/hostile.py, run at full size
there, figures in bench/README.md): sysex up to 1 kB, running status, note-offs
without note-ons, notes on all 16 channels, clock at 10 kHz, pitch bend and CC
storms. The player must not crash, must keep its notes on the grid (a generous
bound here), keep its memory and queues bounded and say what it dropped.
"""

from __future__ import annotations

import pytest

from bench.hostile import run

pytest.importorskip("tensorflow")
from support.models import converted  # noqa: E402


@pytest.mark.jack
@pytest.mark.slow
def test_flood_of_hostile_input_in_duet(jack_server, tmp_path):
    r = run(str(converted().bundle), seconds=20.0, rate=10_000.0, quiet_s=3.0, folder=tmp_path)
    print("hostile:", r)
    assert r["messages_sent"] >= 150_000  # the flooder kept up (10k/s asked)
    assert r["alive_after_flood"] and r["exit_code"] == 0
    assert not r["traceback"] and not r["error_lines"], r["error_lines"]
    assert r["left_sounding"] == 0
    assert r["player_sent"] == r["synth_received"]  # every message the player sent arrived
    # Queues bounded and the losses said: the input logged its counters, and most of the
    # flood was cut by the rate limit before it was parsed.
    assert r["input_received"] > 10_000 and r["input_limited"] > 50_000 and r["input_malformed"] > 0
    assert r["input_received"] <= 2000 * r["seconds"] + 2000
    # Memory: the flood may warm caches, it must not accumulate (measured ~1-2 MB over 20 s).
    assert r["rss_growth_kb"] < 16 * 1024
    # Timing: the player kept playing through the flood, its notes still on the grid (intervals a
    # whole number of ticks; a tick is 50 ms here: bound generous, the figures are in bench/).
    assert r["notes_flood"] >= 20
    assert r["grid_flood"]["p50_ms"] < 10.0, r["grid_flood"]


@pytest.mark.jack
@pytest.mark.slow
def test_flood_with_the_knobs_mapped(jack_server, tmp_path):
    # The default CC map: the storm hits panic (bursts of note-offs and all-notes-off), mode and
    # tempo. The short form of `bench/hostile.py --periods 16,64,256 --runs 20 --mapped-controls`.
    r = run(str(converted().bundle), seconds=8.0, rate=20_000.0, quiet_s=2.0, folder=tmp_path, mapped_controls=True)
    print("hostile, knobs mapped:", {k: v for k, v in r.items() if not k.startswith("grid")})
    assert r["messages_sent"] >= 100_000
    assert r["alive_after_flood"] and r["exit_code"] == 0
    assert not r["traceback"] and not r["error_lines"], r["error_lines"]
    assert r["left_sounding"] == 0
    assert r["player_sent"] == r["synth_received"] > 0
