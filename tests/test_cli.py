"""cadenza-play at the edge: every error is one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadenza.player.__main__ import build_parser, flag_overrides
from support.daemon import one_line_exit_2, run_player


def test_flags_become_settings_overrides():
    args = build_parser().parse_args(
        ["--tempo", "90", "--mode", "duet", "--input", "none", "--top-p", "0.9", "--client-name", "cz", "--seed", "4"]
    )
    assert flag_overrides(args) == {
        "play.tempo": 90.0,
        "play.mode": "duet",
        "midi.input": "none",
        "play.top_p": 0.9,
        "midi.client_name": "cz",
        "play.seed": 4,
    }


def test_bad_bundle(tmp_path):
    bad = tmp_path / "bad.cadenza"
    bad.write_bytes(b"not a zip")
    assert "bad.cadenza" in one_line_exit_2(run_player("--render", tmp_path / "o.mid", "--model", bad))
    assert "nothing.cadenza" in one_line_exit_2(run_player("--model", tmp_path / "nothing.cadenza", "--input", "none"))


def test_bad_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[play]\ntempo = 'fast'\n")
    assert "play.tempo" in one_line_exit_2(run_player("--config", cfg, "--render", tmp_path / "o.mid"))
    assert "does not exist" in one_line_exit_2(run_player("--config", tmp_path / "none.toml"))
    assert "play.tempo" in one_line_exit_2(run_player("--tempo", "1000", "--render", tmp_path / "o.mid"))


def test_bad_seed_file(tmp_path):
    bad = tmp_path / "p.mid"
    bad.write_bytes(b"MThd garbage")
    assert "p.mid" in one_line_exit_2(run_player("--render", tmp_path / "o.mid", "--seed-file", bad))


def test_render_only_flags_need_render(tmp_path):
    assert "--render" in one_line_exit_2(run_player("--beats", "4"))


@pytest.mark.jack
def test_missing_port_lists_what_there_is(jack_server, bundle):
    from support.jack import JackReceiver

    with JackReceiver(None, client="synthA"):
        line = one_line_exit_2(
            run_player("--backend", "jack", "--output", "no-such-synth", "--input", "none", "--model", bundle)
        )
        assert "no-such-synth" in line and "synthA" in line
        listing = run_player("--backend", "jack", "--list-ports")
        assert listing.returncode == 0 and "synthA" in listing.stdout


@pytest.mark.skipif(Path("/dev/snd/seq").exists(), reason="this machine has an ALSA sequencer")
def test_no_midi_system_renders_an_answer_instead(tmp_path):
    """`make play` on a machine without MIDI: one line saying so, then a rendered answer to the example phrase."""
    import mido

    out = tmp_path / "answer.mid"
    r = run_player("--backend", "alsa", "--or-render", out, "--seed", "2", "--tempo", "120")
    assert r.returncode == 0, r.stderr
    said = [ln for ln in r.stderr.splitlines() if ln.startswith("cadenza-play:")]
    assert said[0].startswith("cadenza-play: no MIDI system") and "answer.mid" in said[0]
    mid = mido.MidiFile(out)
    assert [t.name for t in mid.tracks] == ["phrase", "answer"]
    now, times = 0, []
    for m in mid.tracks[1]:
        now += m.time
        if m.type in ("note_on", "note_off"):
            times.append(now)
    answer_beats = (times[-1] - times[0]) / mid.ticks_per_beat
    assert 50 <= answer_beats <= 60  # 30 seconds at 120 BPM: 60 beats from the phrase's gap on
    assert any(m.type == "note_on" for m in mid.tracks[1])
