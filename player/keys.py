"""Keys: Krumhansl–Schmuckler estimation, and the pull that keeps an answer in its phrase's key.

The duration-weighted pitch-class histogram is correlated with the Krumhansl–Kessler
probe-tone profile of each major and minor key; the best correlation wins.

The player listens with a KeyTracker (the keyboard's notes, as they end) and, when
it answers, adds `bias(key, strength)` to the model's logits (`lean`): for every
NOTE_ON, strength × log(profile[pitch class] / profile[tonic]). The tonic is not
changed; the other degrees lose what the profile says listeners expect of them less
(strength 1: the fifth −0.20, the third −0.37, a chromatic note about −1 nat).
The NOTE_ONs' total probability is kept: the lean chooses which note, not whether
to play one, so the answer is as dense as the model makes it.
It is the profile the estimate scores against, so the tonic, not only the scale,
is what the answer leans to: C major and A minor share their notes, not their profile.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from . import events as ev

MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


def histogram(notes: Iterable) -> np.ndarray:
    """[12] total duration per pitch class; notes have .pitch, .start, .end (events.Note)."""
    h = np.zeros(12)
    for n in notes:
        h[n.pitch % 12] += max(n.end - n.start, 1)
    return h


def estimate(notes: Iterable) -> tuple[int, str] | None:
    """(tonic pitch class, "major"|"minor"), or None without notes."""
    return _best(histogram(notes))


def name(key: tuple[int, str] | None) -> str:
    return "-" if key is None else f"{NAMES[key[0]]} {key[1]}"


_SPELLINGS = {
    "c": 0,
    "b#": 0,
    "c#": 1,
    "db": 1,
    "d": 2,
    "d#": 3,
    "eb": 3,
    "e": 4,
    "fb": 4,
    "e#": 5,
    "f": 5,
    "f#": 6,
    "gb": 6,
    "g": 7,
    "g#": 8,
    "ab": 8,
    "a": 9,
    "a#": 10,
    "bb": 10,
    "b": 11,
    "cb": 11,
}


def parse(text: str) -> tuple[int, str]:
    """'D minor', 'eb major', 'F# min', 'Bb' (major) -> (tonic pitch class, mode); ValueError otherwise."""
    words = text.replace("♯", "#").replace("♭", "b").strip().split()
    if not words or len(words) > 2 or words[0].lower() not in _SPELLINGS:
        raise ValueError(f"not a key: {text!r} (expected e.g. 'D minor' or 'Eb major')")
    mode = "major"
    if len(words) == 2:
        m = words[1].lower()
        if m in ("major", "maj"):
            mode = "major"
        elif m in ("minor", "min"):
            mode = "minor"
        else:
            raise ValueError(f"not a key: {text!r} (the mode is major or minor)")
    return _SPELLINGS[words[0].lower()], mode


def parse_setting(text: str) -> str | tuple[int, str] | None:
    """The player's key setting: "auto", "off" (None), or a key name ("D minor") -> (tonic, mode)."""
    t = text.strip().lower()
    if t == "auto":
        return "auto"
    if t in ("off", "none", ""):
        return None
    return parse(text)


def profile(key: tuple[int, str]) -> np.ndarray:
    """[12] the key's probe-tone profile, indexed by pitch class."""
    tonic, mode = key
    return np.roll(MAJOR if mode == "major" else MINOR, tonic)


def bias(key: tuple[int, str] | None, strength: float, vocab_size: int) -> np.ndarray | None:
    """[vocab_size] float32 to add to the logits: NOTE_ON tokens pulled to `key`; None when off."""
    if key is None or strength <= 0:
        return None
    prof = profile(key)
    per_pc = (strength * np.log(prof / prof.max())).astype(np.float32)  # [12], 0 at the tonic
    out = np.zeros(vocab_size, np.float32)
    pitches = np.arange(ev.LOW_PITCH, ev.HIGH_PITCH + 1)
    out[ev.NOTE_ON_BASE + pitches - ev.LOW_PITCH] = per_pc[pitches % 12]
    return out


_ON = slice(ev.NOTE_ON_BASE, ev.NOTE_OFF_BASE)


def _logsumexp(z: np.ndarray) -> float:
    top = float(z.max())
    return top + float(np.log(np.exp(z - top).sum()))


def lean(logits: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """logits + bias (a new array), the NOTE_ON tokens shifted together so their total probability is kept."""
    z = logits + bias
    before, after = _logsumexp(logits[_ON]), _logsumexp(z[_ON])
    if np.isfinite(before) and np.isfinite(after):
        z[_ON] += before - after
    return z


class KeyTracker:
    """The keyboard's pitch-class histogram, note by note, for the key of what it plays.

    A note counts its duration in ticks when it ends (a held note counts up to now).
    `half_life` (ticks) makes old notes fade, so in a duet the key follows modulations;
    None keeps everything until `reset` (one phrase in call-response).
    """

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = half_life
        self.hist = np.zeros(12)
        self.tick = 0.0  # the time the histogram refers to
        self.held: dict[int, float] = {}

    def reset(self) -> None:
        self.hist[:] = 0
        self.held.clear()

    def _age(self, tick: float) -> None:
        if self.half_life and tick > self.tick:
            self.hist *= 0.5 ** ((tick - self.tick) / self.half_life)
        self.tick = max(self.tick, tick)

    def note_on(self, pitch: int, tick: float) -> None:
        self.held.setdefault(int(pitch), float(tick))

    def note_off(self, pitch: int, tick: float) -> None:
        start = self.held.pop(int(pitch), None)
        if start is not None:
            self._age(tick)
            self.hist[pitch % 12] += max(tick - start, 1.0)

    def estimate(self, tick: float | None = None) -> tuple[int, str] | None:
        """The key of what was heard (held notes count up to `tick` when given); None before any."""
        if tick is not None:
            self._age(tick)
        h = self.hist.copy()
        if tick is not None:
            for p, start in self.held.items():
                h[p % 12] += max(tick - start, 1.0)
        return _best(h)


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.sqrt((x * x).sum(axis=-1, keepdims=True))


_KEYS = [(tonic, mode) for tonic in range(12) for mode in ("major", "minor")]
_PROFILES = _zscore(np.array([profile(k) for k in _KEYS]))  # [24, 12], for one matrix product


def _best(h: np.ndarray) -> tuple[int, str] | None:
    """The key whose profile correlates best with the histogram (Pearson r, as np.corrcoef)."""
    if h.sum() == 0 or h.max() - h.min() <= 1e-9 * h.max():
        return None
    return _KEYS[int((_PROFILES @ _zscore(np.asarray(h, float))).argmax())]


def _model_setting(model, name: str, lo: float, hi: float, default: float) -> float:
    """A number the model's bundle names in model.json `conditioning` (in [lo, hi]), else `default`: a value
    of another type or out of range is ignored."""
    meta = getattr(model, "meta", None)
    cond = meta.get("conditioning") if isinstance(meta, dict) else None
    value = cond.get(name) if isinstance(cond, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi:
        return float(value)
    return default


def model_strength(model) -> float:
    """The lean's strength a model asks for when none is set: its bundle's (model.json
    conditioning.key_strength, for a model told the key) or the player's default (config.KEY_STRENGTH)."""
    from .config import KEY_STRENGTH

    return _model_setting(model, "key_strength", 0.0, 10.0, KEY_STRENGTH)


def model_opening(model) -> float:
    """How many times harder an answer's first bar leans, when not set: its bundle's (model.json
    conditioning.key_opening) or 1 (the same lean throughout)."""
    return _model_setting(model, "key_opening", 1.0, 5.0, 1.0)
