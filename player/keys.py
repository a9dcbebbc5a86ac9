"""Krumhansl–Schmuckler key estimation: which of the 24 keys a set of notes is in.

The duration-weighted pitch-class histogram is correlated with the Krumhansl–Kessler
probe-tone profile of each major and minor key; the best correlation wins.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

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
    h = histogram(notes)
    if h.sum() == 0 or np.allclose(h, h[0]):
        return None
    best, key = -2.0, None
    for tonic in range(12):
        for mode, prof in (("major", MAJOR), ("minor", MINOR)):
            r = np.corrcoef(h, np.roll(prof, tonic))[0, 1]
            if r > best:
                best, key = r, (tonic, mode)
    return key


def name(key: tuple[int, str] | None) -> str:
    return "-" if key is None else f"{NAMES[key[0]]} {key[1]}"
