"""Settings: the example file, strict checks, overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cadenza.player import config
from cadenza.player.config import ConfigError, Settings, load_config, override, parse_assignment

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "config.toml"


def _write(tmp_path, text) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_example_equals_defaults_and_documents_every_key():
    settings = load_config(EXAMPLE)
    # The example's relative paths are "" or absolute, so nothing is resolved.
    assert settings == Settings()
    text = EXAMPLE.read_text()
    for f in dataclasses.fields(Settings):
        if f.name == "patches":  # a table whose default is its absence: shown commented out
            assert "\n# [patches]\n# 0 = " in text
        elif f.metadata:
            assert f"\n{f.name} = " in text, f.name
        else:
            assert f"\n[{f.name}]\n" in text, f.name
            section = text.split(f"\n[{f.name}]\n", 1)[1].split("\n[", 1)[0]
            for sub in dataclasses.fields(f.default_factory):
                assert f"\n{sub.name} = " in "\n" + section or f"\n# {sub.name} = " in "\n" + section, (
                    f"{f.name}.{sub.name}"
                )


def test_values_are_read_and_typed(tmp_path):
    p = _write(tmp_path, 'model = "m.cadenza"\n[play]\ntempo = 120\nseed = 7\n[midi]\noutput = "fluid"\nthru = true\n')
    s = load_config(p)
    assert s.play.tempo == 120.0 and isinstance(s.play.tempo, float)
    assert s.play.seed == 7
    assert s.midi.output == "fluid" and s.midi.thru is True
    assert s.model == str(tmp_path / "m.cadenza")  # relative to the file
    assert s.midi.channel == 1  # untouched keys keep their defaults


@pytest.mark.parametrize(
    "text, message",
    [
        ('[play]\ntemperature = "hot"\n', "play.temperature must be a number in 0.05..5, got 'hot'"),
        ("[play]\ntempo = 1000\n", "play.tempo must be a number in 20..300, got 1000.0"),
        ("[play]\ntop_p = 0\n", "play.top_p must be a number > 0 and <= 1, got 0.0"),
        ("[midi]\nchannel = 17\n", "midi.channel must be an integer in 1..16, got 17"),
        ("[midi]\nchannel = 1.5\n", "midi.channel must be an integer in 1..16, got 1.5"),
        ("[midi]\nthru = 1\n", "midi.thru must be true or false, got 1"),
        ("[play]\nmode = 'jazz'\n", "play.mode must be one of 'call-response', 'duet', 'solo', got 'jazz'"),
        ("[controls]\npanic = 128\n", "controls.panic must be an integer in -1..127, got 128"),
        ("[play]\ntempi = 100\n", "unknown key 'play.tempi'"),
        ("[sound]\nx = 1\n", "unknown section [sound]"),
        ("modle = 'x'\n", "unknown key 'modle'"),
        ("midi = 3\n", "[midi] must be a table"),
        ("[play\n", "config.toml"),
    ],
)
def test_bad_values_name_the_key_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_default_path(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert load_config(None) == Settings()
    monkeypatch.setattr(config, "DEFAULT_PATH", _write(tmp_path, "[log]\nlevel = 'debug'\n"))
    assert load_config(None).log.level == "debug"


def test_override_checks_and_keeps_the_rest():
    s = override(Settings(), {"play.tempo": 90, "midi.output": "synth", "num_threads": 2})
    assert (s.play.tempo, s.midi.output, s.num_threads) == (90.0, "synth", 2)
    assert s.play.temperature == 1.0
    assert s.replace(**{"play.seed": None}).play.seed is None
    with pytest.raises(ConfigError, match="play.tempo must be"):
        s.replace(**{"play.tempo": "fast"})
    with pytest.raises(ConfigError, match="unknown section"):
        override(s, {"nope.x": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.play.tempo = 3  # type: ignore[misc]


def test_parse_assignment():
    assert parse_assignment("play.tempo=120") == ("play.tempo", 120)
    assert parse_assignment("midi.output = FLUID Synth") == ("midi.output", "FLUID Synth")
    assert parse_assignment("midi.thru=true") == ("midi.thru", True)
    with pytest.raises(ConfigError):
        parse_assignment("tempo")


def test_two_controls_on_one_cc_or_on_the_sustain_pedal_are_refused():
    with pytest.raises(ConfigError, match=r"controls.phrase_end = 21 is already controls.temperature"):
        override(Settings(), {"controls.phrase_end": 21})
    with pytest.raises(ConfigError, match="CC 64 is the sustain pedal"):
        override(Settings(), {"controls.panic": 64})
    s = override(Settings(), {"controls.key_strength": -1, "controls.phrase_end": 26})  # a knob moved, freed first
    assert s.controls.phrase_end == 26
