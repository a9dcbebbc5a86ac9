"""Phrases in a key: a scale up an octave, then a cadence in block chords (the harmonic minor for minor
keys). The steering bench plays them into the player; the key tests estimate and follow their keys."""

from __future__ import annotations

from cadenza.player import events as ev

MAJOR_STEPS = [0, 2, 4, 5, 7, 9, 11, 12]
MINOR_STEPS = [0, 2, 3, 5, 7, 8, 11, 12]  # harmonic minor, as a cadence wants its leading tone


def phrase_notes(tonic: int, mode: str, cadence: str = "full") -> list[ev.Note]:
    """The scale of `tonic` `mode` (a pitch class, "major" or "minor"), then I-IV-V-I (`cadence` "half": I-IV-I-V)."""
    base = 60 + (tonic if tonic < 6 else tonic - 12)
    steps = MAJOR_STEPS if mode == "major" else MINOR_STEPS
    notes, t = [], 0
    for s in steps:
        notes.append(ev.Note(t, base + s, t + 12, 80))
        t += 12
    third = 4 if mode == "major" else 3
    chords = [(0, third, 7), (5, 9 if mode == "major" else 8, 12), (7, 11, 14), (0, third, 7)]
    if cadence == "half":  # I-IV-I-V: ends on the dominant, a question that wants an answer
        chords = [(0, third, 7), (5, 9 if mode == "major" else 8, 12), (0, third, 7), (7, 11, 14)]
    for ch in chords:
        for iv in ch:
            notes.append(ev.Note(t, base - 12 + iv, t + 22, 80))
        t += 24
    return notes
