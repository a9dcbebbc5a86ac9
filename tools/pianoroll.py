"""Draw a MIDI file as a piano roll (PNG), one colour per track.

    cadenza-play --render docs/answer.mid --seed-file examples/phrase.mid --include-seed --seed 7
    .venv/bin/python tools/pianoroll.py docs/answer.mid --out docs/answer.png

`--render --include-seed` writes the phrase and the answer as two tracks, so the
picture shows which is which. Needs matplotlib (the `train` extra).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mido

from cadenza.player import events as ev

COLOURS = ["#9a9a9a", "#2f6db5", "#c0504d", "#4f8f3a"]


def track_notes(mid: mido.MidiFile) -> list[list[tuple[float, float, int]]]:
    """Per track: (start beat, end beat, pitch)."""
    out = []
    for track in mid.tracks:
        now, held, notes = 0, {}, []
        for msg in track:
            now += msg.time
            beat = now / mid.ticks_per_beat
            if msg.type == "note_on" and msg.velocity > 0:
                held[msg.note] = beat
            elif msg.type in ("note_on", "note_off") and msg.note in held:
                notes.append((held.pop(msg.note), beat, msg.note))
        if notes:
            out.append(notes)
    return out


def draw(mid: mido.MidiFile, out: Path, labels: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    tracks = track_notes(mid)
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    lo, hi, end = 127, 0, 0.0
    for k, notes in enumerate(tracks):
        for s, e, p in notes:
            ax.add_patch(Rectangle((s, p - 0.4), e - s, 0.8, color=COLOURS[k % len(COLOURS)], lw=0))
            lo, hi, end = min(lo, p), max(hi, p), max(end, e)
    ax.set_xlim(0, end + 0.5)
    ax.set_ylim(lo - 2, hi + 2)
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI note")
    for bar in range(0, int(end) + 1, 4):
        ax.axvline(bar, color="#dddddd", lw=0.8, zorder=0)
    ax.legend(
        handles=[
            Patch(color=COLOURS[k % len(COLOURS)], label=labels[k] if k < len(labels) else f"track {k}")
            for k in range(len(tracks))
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("midi", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--labels", default="your phrase,Cadenza's answer")
    p.add_argument("--title", default="")
    a = p.parse_args(argv)
    draw(ev.read_midi(a.midi), a.out, a.labels.split(","), a.title)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
