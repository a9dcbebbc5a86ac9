"""Write examples/phrase.mid: two bars in G major, melody over a walking bass, as a keyboard player would.

.venv/bin/python tools/example_phrase.py
"""

from __future__ import annotations

from pathlib import Path

import mido

# (beat, length in beats, pitch): soprano G4 A4 B4 A4 | G4 F#4 G4 (half), bass G2 .. D3 .. G2
NOTES = [
    (0, 1, 67),
    (1, 1, 69),
    (2, 1, 71),
    (3, 1, 69),
    (4, 1, 67),
    (5, 1, 66),
    (6, 2, 67),
    (0, 2, 43),
    (2, 2, 50),
    (4, 1, 48),
    (5, 1, 50),
    (6, 2, 43),
    (0, 2, 59),
    (2, 2, 62),
    (4, 1, 64),
    (5, 1, 62),
    (6, 2, 59),
]


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "phrase.mid"


def main(out: Path = EXAMPLE) -> None:
    tpb = 480
    evs = []
    for beat, length, pitch in NOTES:
        evs.append((int(beat * tpb), 1, mido.Message("note_on", note=pitch, velocity=80)))
        evs.append((int((beat + length) * tpb) - 10, 0, mido.Message("note_off", note=pitch)))
    evs.sort(key=lambda e: (e[0], e[1]))
    mid = mido.MidiFile(type=0, ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90)))
    last = 0
    for t, _, m in evs:
        track.append(m.copy(time=t - last))
        last = t
    mid.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
