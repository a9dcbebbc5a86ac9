"""The player's session recordings as training pieces (cadenza-train --corpus DIR_OF_SESSIONS).

    tokens = session_tokens(mido.MidiFile("session-20261126-201500.mid"), part="in")

A recording (player/recorder.py) is a type-1 file in real time (1 ms ticks): track 0 is what the
keyboard played, track 1 what Cadenza answered, and markers on track 0 give the player's tempo
("tempo 100") from where it was set. The notes are put back on the beat with those markers (a file
with none is read at DEFAULT_TEMPO, with a warning), the chosen part is kept ("in", the musician's
own playing, by default; "out"; or "both"), and silences longer than REST_CAP_BEATS are cut to it:
a session of twenty minutes with a phrase now and then must not become minutes of SHIFT tokens.
One recording is one piece, so the held-out split is by session.
"""

from __future__ import annotations

import logging

import mido
import numpy as np

from cadenza.player import events
from cadenza.player.recorder import TEMPO_MARKER, TRACK_NAMES

log = logging.getLogger(__name__)

PARTS = ("in", "out", "both")
DEFAULT_TEMPO = 100.0  # the player's default, for a recording with no tempo marker
REST_CAP_BEATS = 8.0  # two bars of 4/4: a longer silence is cut to this


def is_session(mid: mido.MidiFile) -> bool:
    """A file the session recorder wrote (its two tracks named as it names them)."""
    names = [next((m.name for m in t if m.type == "track_name"), None) for t in mid.tracks]
    return mid.type == 1 and tuple(names[: len(TRACK_NAMES)]) == TRACK_NAMES


def _seconds(mid: mido.MidiFile, track: mido.MidiTrack) -> list[tuple[float, object]]:
    """(seconds, message) of a track, through the file's own tempo (set on track 0)."""
    tempo = 500_000
    for m in mid.tracks[0]:
        if m.type == "set_tempo":
            tempo = m.tempo
            break
    per_tick = tempo / 1e6 / mid.ticks_per_beat
    now, out = 0, []
    for m in track:
        now += m.time
        out.append((now * per_tick, m))
    return out


def _beats(tempo_marks: list[tuple[float, float]], t: float) -> float:
    """Beats played by time t (seconds) under the tempo marks [(seconds, bpm), ...] (sorted, first at 0)."""
    beats = 0.0
    for k, (t0, bpm) in enumerate(tempo_marks):
        t1 = tempo_marks[k + 1][0] if k + 1 < len(tempo_marks) else float("inf")
        if t <= t0:
            break
        beats += (min(t, t1) - t0) * bpm / 60.0
    return beats


def session_tokens(mid: mido.MidiFile, part: str = "in", name: str = "session") -> np.ndarray:
    """Tokens (beginning with START) of one recording's `part`; rests capped at REST_CAP_BEATS."""
    if part not in PARTS:
        raise ValueError(f"session part must be one of {', '.join(PARTS)}, got {part!r}")
    marks = []
    for t, m in _seconds(mid, mid.tracks[0]):
        if m.type == "marker" and m.text.startswith(TEMPO_MARKER + " "):
            try:
                marks.append((t, float(m.text.split()[1])))
            except ValueError:
                continue
    if not marks:
        log.warning("%s: no tempo marker, read at %g BPM", name, DEFAULT_TEMPO)
        marks = [(0.0, DEFAULT_TEMPO)]
    marks.sort()
    marks[0] = (0.0, marks[0][1])  # the first tempo holds from the start
    tracks = {"in": [0], "out": [1], "both": [0, 1]}[part]
    notes = []
    for i in tracks:
        for t, m in _seconds(mid, mid.tracks[i]):
            if m.type in ("note_on", "note_off"):
                notes.append((_beats(marks, t) * events.TICKS_PER_BEAT, m))
    notes.sort(key=lambda e: e[0])
    cap = REST_CAP_BEATS * events.TICKS_PER_BEAT
    out, cut, last = [], 0.0, None
    for tick, m in notes:
        if last is not None and tick - last > cap:
            cut += tick - last - cap
        last = tick
        out.append((tick - cut, m))
    return events.encode_messages(out)
