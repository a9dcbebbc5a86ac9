"""The player's settings: one TOML file, frozen dataclasses, strict checks.

    settings = load_config(Path("/etc/cadenza/config.toml"))
    settings = override(settings, {"play.tempo": 120.0, "midi.output": "fluid"})

One dataclass per TOML section; each field's comment says why its default is
what it is (examples/config.toml documents the same keys for users). An
unknown section or key, a wrong type or an out-of-range value is a ConfigError
with one line that names the key: a typo in a config file must not be ignored.
Flags override the file: the CLI passes them through `override`.

Relative paths in a file (`model`, `record.directory`) are relative to that file.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_PATH = Path("/etc/cadenza/config.toml")
KEY_STRENGTH = 3.5


class ConfigError(ValueError):
    """A bad settings file or value; the message is one line naming the key."""


# A field's check: kind ("int", "float", "bool", "str", "choice", "int?", "float?"),
# bounds (lo, hi, open_lo), choices. Kept in the field metadata beside the default.
def _f(default, kind, lo=None, hi=None, *, open_lo=False, choices=()):
    return field(default=default, metadata={"kind": kind, "lo": lo, "hi": hi, "open_lo": open_lo, "choices": choices})


CC = {"kind": "int", "lo": -1, "hi": 127, "open_lo": False, "choices": ()}  # a controller number, -1 = unused


@dataclass(frozen=True)
class Midi:
    backend: str = _f("", "str")  # "" = rtmidi's default API (ALSA on Linux); alsa|jack|coremidi|windows
    output: str = _f("", "str")  # "" = first output that is not "Midi Through", else a virtual port
    input: str = _f("none", "str")  # no keyboard unless asked: a wrong guess would feed noise to the model
    client_name: str = _f("cadenza", "str")  # how the ports show up in aconnect / jack_lsp
    channel: int = _f(1, "int", 1, 16)  # the synth's usual default channel
    program: int = _f(-1, "int", -1, 127)  # -1 = keep the synth's sound; 0..127 = program change at start
    thru: bool = _f(False, "bool")  # most keyboards sound themselves; echo only for a mute controller
    input_channel: int = _f(0, "int", 0, 16)  # 0 = omni: listen to whatever channel the keyboard uses


MODES = ("call-response", "duet", "solo")  # the player's modes (steering.Conductor plays them)


@dataclass(frozen=True)
class Play:
    mode: str = _f("call-response", "choice", choices=MODES)  # the instrument's point
    tempo: float = _f(100.0, "float", 20.0, 300.0)  # BPM; a moderate chorale tempo
    temperature: float = _f(1.0, "float", 0.05, 5.0)  # the trained distribution as it is
    top_p: float = _f(0.95, "float", 0.0, 1.0, open_lo=True)  # cut the 5% tail of wrong notes
    phrase_gap: float = _f(2.0, "float", 0.25, 64.0)  # beats of silence: half a bar is a breath, two ends a phrase
    answer_bars: int = _f(4, "int", 1, 64)  # a four-bar answer to a typical phrase
    beats_per_bar: int = _f(4, "int", 1, 16)  # 4/4, as in the chorales
    # A pedal down this many bars with no key played counts as lifted (and as reversed: it reads "down" at
    # rest); four bars, as long as a held key keeps a phrase open (the codec's MAX_NOTE_TICKS).
    pedal_hold_bars: int = _f(4, "int", 1, 64)
    seed: int | None = _f(None, "int?")  # None = a new seed each run; set it to replay a session
    velocity_scale: float = _f(1.0, "float", 0.0, 2.0)  # the model's own dynamics
    # "auto": answer in the key of the phrase just played (a duet: of the last few bars); "off"; or a key
    # that always holds, e.g. "D minor". The model alone drifts out of the phrase's key within a bar.
    key: str = _f("auto", "key")
    # How hard the answer leans to the key (bench/steering.py). None: the model's own, which its bundle may
    # name (a model that is told the key needs less: model.json conditioning.key_strength), else KEY_STRENGTH.
    key_strength: float | None = _f(None, "float?", 0.0, 10.0)
    # An answer's first bar leans this many times as hard, so that it opens in the key (1: the same lean
    # throughout). None: the model's own (model.json conditioning.key_opening), else 1.
    key_opening: float | None = _f(None, "float?", 1.0, 5.0)


@dataclass(frozen=True)
class Clock:
    source: str = _f("internal", "choice", choices=("internal", "external"))  # play alone unless a sequencer leads
    send: bool = _f(False, "bool")  # clock bytes to a synth that does not want them can confuse it


@dataclass(frozen=True)
class Controls:
    temperature: int = dataclasses.field(default=21, metadata=CC)  # a knob row on common controllers
    tempo: int = dataclasses.field(default=22, metadata=CC)
    mode: int = dataclasses.field(default=23, metadata=CC)
    answer_bars: int = dataclasses.field(default=24, metadata=CC)
    panic: int = dataclasses.field(default=25, metadata=CC)  # silences everything: worth a button
    phrase_end: int = dataclasses.field(default=-1, metadata=CC)  # no button assumed; silence ends a phrase
    key_strength: int = dataclasses.field(default=26, metadata=CC)  # the next knob in the row
    patch: int = dataclasses.field(default=27, metadata=CC)  # steps through the patch bank; and the next
    sustain_ends_phrase: bool = _f(True, "bool")  # lifting the pedal is a natural "your turn"


@dataclass(frozen=True)
class Record:
    enabled: bool = _f(False, "bool")  # an SD card wears; record only when asked
    directory: str = _f("/var/lib/cadenza/sessions", "str")  # the unit's StateDirectory
    max_files: int = _f(100, "int", 1, 1_000_000)  # a few weeks of sessions
    max_bytes: int = _f(50_000_000, "int", 0, 10**12)  # 50 MB: nothing next to a Pi's SD card


@dataclass(frozen=True)
class Log:
    level: str = _f("info", "choice", choices=("debug", "info", "warning", "error"))  # ports, phrases, reconnects


@dataclass(frozen=True)
class Patch:
    """A patch of the bank ([patches]): the Program Change number that selects it, its model bundle, and a
    program the synth is sent when it takes over (-1: none)."""

    program: int
    model: str
    synth_program: int = -1


@dataclass(frozen=True)
class Settings:
    model: str = _f("", "str")  # "" = the bundle shipped with the player
    num_threads: int = _f(1, "int", 1, 64)  # one core inferring leaves the others to MIDI and the OS
    # µs of CPU wake-up latency to hold while playing (PM QoS, /dev/cpu_dma_latency); -1 = leave the system
    # alone. 0 keeps idle CPUs polling: tighter timing where they would sleep deeply, at the cost of power.
    cpu_dma_latency: int = _f(-1, "int", -1, 10_000_000)
    midi: Midi = field(default_factory=Midi)
    play: Play = field(default_factory=Play)
    clock: Clock = field(default_factory=Clock)
    controls: Controls = field(default_factory=Controls)
    record: Record = field(default_factory=Record)
    log: Log = field(default_factory=Log)
    # [patches]: Program Change number -> bundle (player/patches.py). None (no table): the shipped bundles.
    patches: tuple[Patch, ...] | None = field(default=None, metadata={"kind": "patches", "lo": None, "hi": None})

    def replace(self, **dotted) -> "Settings":
        """`settings.replace(**{"play.tempo": 120.0})`: a checked copy."""
        return override(self, dotted)


_SECTION_CLASSES = {"midi": Midi, "play": Play, "clock": Clock, "controls": Controls, "record": Record, "log": Log}
_PATH_KEYS = {"model", "record.directory"}


def load_config(path: Path | str | None = None) -> Settings:
    """Settings from a TOML file; None = DEFAULT_PATH when it exists, else the defaults."""
    if path is None:
        if not DEFAULT_PATH.is_file():
            return Settings()
        path = DEFAULT_PATH
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    flat = {}
    for key, value in data.items():
        if key == "patches":
            flat[key] = value
        elif key in _SECTION_CLASSES:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table, got {value!r}")
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        elif isinstance(value, dict):
            raise ConfigError(f"unknown section [{key}]; known: {', '.join(_SECTION_CLASSES)}")
        else:
            flat[key] = value
    for key in _PATH_KEYS:
        if isinstance(flat.get(key), str) and flat[key] and not Path(flat[key]).is_absolute():
            flat[key] = str((path.parent / flat[key]).resolve())
    if "patches" in flat:
        flat["patches"] = _parse_patches(flat["patches"], path.parent)
    settings = override(Settings(), flat)
    log.debug("settings from %s", path)
    return settings


def override(settings: Settings, values: Mapping[str, Any]) -> Settings:
    """A copy with "section.key" (or top-level "key") values replaced, each checked."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for dotted, value in values.items():
        section, _, key = dotted.rpartition(".")
        cls = _SECTION_CLASSES.get(section) if section else Settings
        if cls is None:
            raise ConfigError(f"unknown section [{section}] in {dotted!r}; known: {', '.join(_SECTION_CLASSES)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata}
        if key not in fields:
            where = f"[{section}]" if section else "the top level"
            raise ConfigError(f"unknown key {dotted!r}; {where} has: {', '.join(fields)}")
        checked = _check(dotted, value, fields[key].metadata)
        (sections.setdefault(section, {}) if section else top)[key] = checked
    for section, changes in sections.items():
        top[section] = dataclasses.replace(getattr(settings, section), **changes)
    if "controls" in sections:
        _check_controls(top["controls"], sections["controls"])
    return dataclasses.replace(settings, **top)


def _check_controls(controls: "Controls", changed: Mapping[str, Any]) -> None:
    """One knob, one setting: two controls on one CC number would both move."""
    from .events import CC_SUSTAIN

    owner: dict[int, str] = {}
    for f in dataclasses.fields(controls):
        cc = getattr(controls, f.name)
        if isinstance(cc, bool) or not isinstance(cc, int) or cc < 0:
            continue
        if cc == CC_SUSTAIN:
            raise ConfigError(
                f"controls.{f.name} = {cc}: CC {cc} is the sustain pedal, which ends phrases; pick another"
            )
        if cc in owner:
            a, b = (f.name, owner[cc]) if f.name in changed else (owner[cc], f.name)
            raise ConfigError(f"controls.{a} = {cc} is already controls.{b}; give each control its own CC (-1 = none)")
        owner[cc] = f.name


def _parse_patches(table: Any, base: Path | None = None) -> tuple[Patch, ...]:
    """[patches] as read from TOML: {"0": "bach.cadenza", "1": {model = "folk.cadenza", program = 73}}.
    Paths relative to `base` (the config file's folder)."""
    if isinstance(table, tuple) and all(isinstance(p, Patch) for p in table):
        return table
    if not isinstance(table, dict):
        raise ConfigError(f"[patches] must be a table of Program Change numbers, got {table!r}")
    out = []
    for key, value in table.items():
        where = f"patches.{key}"
        if not (isinstance(key, str) and key.isdigit() and 0 <= int(key) <= 127):
            raise ConfigError(f"{where}: a patch is named by its Program Change number, 0..127; got {key!r}")
        if isinstance(value, str):
            model, synth = value, -1
        elif isinstance(value, dict):
            unknown = sorted(set(value) - {"model", "program"})
            if unknown:
                raise ConfigError(f"unknown key '{where}.{unknown[0]}'; a patch has: model, program")
            given = value.get("model")
            if not isinstance(given, str):
                raise ConfigError(f"{where}.model must be the path of a model bundle, got {given!r}")
            model = given
            synth = _check(f"{where}.program", value.get("program", -1), {**CC, "lo": -1})
        else:
            raise ConfigError(f'{where} must be a bundle path or {{ model = "...", program = N }}, got {value!r}')
        if not model:
            raise ConfigError(f"{where}: the model path is empty")
        if base is not None and not Path(model).expanduser().is_absolute():
            model = str((base / model).resolve())
        out.append(Patch(int(key), str(Path(model).expanduser()), synth))
    return tuple(sorted(out, key=lambda p: p.program))


def parse_assignment(text: str) -> tuple[str, Any]:
    """'play.tempo=120' -> ('play.tempo', 120): a TOML value, or a bare string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected section.key=value, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def _check(key: str, value: Any, meta: Mapping[str, Any]) -> Any:
    kind, lo, hi = meta["kind"], meta["lo"], meta["hi"]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if kind == "key":
        from .keys import parse_setting

        try:
            if not isinstance(value, str):
                raise ValueError
            parse_setting(value)
        except ValueError:
            raise ConfigError(f'{key} must be "auto", "off" or a key such as "D minor", got {value!r}') from None
        return value
    if kind == "choice":
        if value not in meta["choices"]:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, meta['choices']))}, got {value!r}")
        return value
    if kind == "patches":
        return None if value is None else _parse_patches(value)
    if kind in ("int?", "float?") and value is None:
        return None
    if kind in ("int", "int?"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer{_range(lo, hi)}, got {value!r}")
    elif kind in ("float", "float?"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key} must be a number{_range(lo, hi, meta['open_lo'])}, got {value!r}")
        value = float(value)
    too_low = lo is not None and (value <= lo if meta["open_lo"] else value < lo)
    if too_low or (hi is not None and value > hi):
        what = "an integer" if kind not in ("float", "float?") else "a number"
        raise ConfigError(f"{key} must be {what}{_range(lo, hi, meta['open_lo'])}, got {value!r}")
    return value


def _range(lo, hi, open_lo=False) -> str:
    if lo is None:
        return ""
    if open_lo:
        return f" > {lo:g} and <= {hi:g}"
    return f" in {lo:g}..{hi:g}"
