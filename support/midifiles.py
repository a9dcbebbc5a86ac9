"""Small real MIDI files made on the fly for tests: scales and chord progressions in several keys."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

MAJOR = [0, 2, 4, 5, 7, 9, 11]


def phrase_notes(key: int, rng: np.random.Generator, bars: int = 4) -> list[tuple[int, int, int, int]]:
    """(start_tick@480, pitch, length, velocity): a chorale-like texture, 4 voices on the beat."""
    out = []
    beat = 480
    degrees = [0, 3, 4, 0, 5, 1, 4, 0]
    for i in range(bars * 4):
        root = degrees[(i + int(rng.integers(0, 2))) % len(degrees)]
        chord = [MAJOR[(root + k) % 7] + 12 * ((root + k) // 7) for k in (0, 2, 4)]
        pitches = [48 + key + chord[0], 60 + key + chord[1], 64 + key + chord[2], 72 + key + chord[0]]
        for p in pitches:
            out.append((i * beat, p, beat, 72))
    return out


def write_piece(path: Path, notes, channels: int = 1) -> Path:
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=600000, time=0))
    evs = []
    for k, (start, pitch, length, vel) in enumerate(notes):
        ch = k % channels
        evs.append((start, 1, mido.Message("note_on", note=pitch, velocity=vel, channel=ch)))
        evs.append((start + length, 0, mido.Message("note_off", note=pitch, channel=ch)))
    evs.sort(key=lambda e: (e[0], e[1]))
    last = 0
    for t, _, m in evs:
        track.append(m.copy(time=t - last))
        last = t
    mid.save(path)
    return path


def make_corpus(folder: Path, n: int = 12, seed: int = 0) -> Path:
    """n pieces in n different keys, some in a subfolder (the loader is recursive)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "more").mkdir(exist_ok=True)
    for i in range(n):
        where = folder / "more" if i % 3 == 0 else folder
        write_piece(where / f"piece{i:02d}.mid", phrase_notes(i % 12, rng, bars=6), channels=1 + i % 3)
    return folder
