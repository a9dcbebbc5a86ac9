"""Session recording: what the keyboard played and what the player answered, as MIDI files.

    rec = SessionRecorder("/var/lib/cadenza/sessions", max_files=100, max_bytes=50_000_000)
    rec.record("in", t, msg)      # from the input's (t_monotonic, msg)
    rec.record("out", t, msg)     # what went to the synth
    rec.close()                   # writes session-20261121-071502.mid, then trims old sessions

A type-1 file: track 0 is the input, track 1 the output. Times are real seconds
from the first event, on a fixed tempo of 60 BPM at 1000 ticks per beat, so one
tick is one millisecond and a DAW shows the session as it happened. Only channel
messages are kept (clock and other real-time bytes have no place in a MIDI file).
The player's own tempo goes in as markers on track 0 ("tempo 100", at the start and
at each change: `rec.tempo(t, bpm)`), so the session can be read back in beats
(cadenza-train reads sessions as a corpus: train/sessions.py).

A long session is cut into parts of MAX_EVENTS events so memory stays bounded on
a Pi. After each write the oldest of our own files (session-*.mid) are deleted
until at most max_files remain and they take at most max_bytes; the file just
written is kept. Nothing here raises into the player: failures are logged once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
from pathlib import Path

import mido

log = logging.getLogger(__name__)

TICKS_PER_BEAT = 1000
TEMPO_US = 1_000_000  # 60 BPM: with 1000 ticks per beat, one tick is 1 ms
MAX_EVENTS = 200_000  # about 20 MB of Python objects; hours of playing
NAME_RE = re.compile(r"^session-\d{8}-\d{6}(-\d+)?\.mid$")
TRACKS = {"in": 0, "out": 1}
TRACK_NAMES = ("keyboard (in)", "cadenza (out)")
TEMPO_MARKER = "tempo"  # marker text: "tempo 100" (BPM)


class SessionRecorder:
    def __init__(self, directory: str | os.PathLike, max_files: int = 100, max_bytes: int = 50_000_000):
        self.directory = Path(directory)
        self.max_files, self.max_bytes = max_files, max_bytes
        self.written: list[Path] = []
        self.skipped = 0  # non-channel messages left out
        self._lock = threading.Lock()
        self._events: list[tuple[float, int, mido.Message]] = []
        self._started: dt.datetime | None = None
        self._closed = False
        self._warned: set[str] = set()
        self._tempo: mido.MetaMessage | None = None  # the last tempo marker, carried into the next part

    def record(self, direction: str, t_monotonic: float, msg: mido.Message) -> None:
        """Note one message; "in" = from the keyboard, "out" = to the synth. Never raises."""
        try:
            if self._closed:
                return
            if not _is_channel(msg):
                self.skipped += 1
                return
            self._append(t_monotonic, TRACKS[direction], msg)
        except Exception as e:
            self._warn("record", f"session recorder: cannot record {direction!r} {msg!r}: {e}")

    def tempo(self, t_monotonic: float, bpm: float) -> None:
        """The player's tempo from `t_monotonic` on (a marker on the input track). Never raises."""
        try:
            if not self._closed:
                self._tempo = mido.MetaMessage("marker", text=f"{TEMPO_MARKER} {bpm:g}")
                self._append(t_monotonic, TRACKS["in"], self._tempo)
        except Exception as e:
            self._warn("record", f"session recorder: cannot record the tempo: {e}")

    def _append(self, t_monotonic: float, track: int, msg: mido.Message | mido.MetaMessage) -> None:
        with self._lock:
            if self._started is None:
                self._started = dt.datetime.now()
            self._events.append((float(t_monotonic), track, msg))
            full = len(self._events) >= MAX_EVENTS
        if full:
            self._flush()

    def close(self) -> Path | None:
        """Write what was recorded (if anything) and trim old sessions; the file written, or None."""
        if self._closed:
            return None
        self._closed = True
        return self._flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _flush(self) -> Path | None:
        with self._lock:
            events, self._events = self._events, []
            started, self._started = self._started, None
            if events and self._tempo is not None and not self._closed:
                # a long session goes on in a new part: it starts at the tempo in force (as its first event,
                # stamped at this part's last one)
                self._events.append((events[-1][0], TRACKS["in"], self._tempo))
        if not any(not m.is_meta for _, _, m in events):
            return None  # (a part with nothing played: at most the tempo carried over)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self._free_name(started or dt.datetime.now())  # (set with the first event)
            to_midi_file(events).save(path)
            self.written.append(path)
            log.info("session recorded: %s (%d events)", path, len(events))
        except Exception as e:
            self._warn("write", f"session recorder: cannot write to {self.directory}: {e}")
            return None
        self.trim(keep=path)
        return path

    def _free_name(self, started: dt.datetime) -> Path:
        stem = f"session-{started:%Y%m%d-%H%M%S}"
        path, n = self.directory / f"{stem}.mid", 1
        while path.exists():
            n += 1
            path = self.directory / f"{stem}-{n}.mid"
        return path

    def trim(self, keep: Path | None = None) -> list[Path]:
        """Delete our oldest files beyond max_files / max_bytes; the paths deleted."""
        deleted = []
        try:
            files = []
            for p in self.directory.iterdir():
                if NAME_RE.match(p.name) and p.is_file():
                    st = p.stat()
                    files.append((st.st_mtime, p.name, p, st.st_size))
            files.sort()  # oldest first; equal times fall back to the dated name
            total = sum(f[3] for f in files)
            count = len(files)
            for _, _, p, size in files:
                if count <= self.max_files and total <= self.max_bytes:
                    break
                if keep is not None and p == keep:
                    continue
                p.unlink()
                deleted.append(p)
                count -= 1
                total -= size
            if deleted:
                log.info(
                    "session recorder: deleted %d old session(s) to stay within %d files, %d bytes",
                    len(deleted),
                    self.max_files,
                    self.max_bytes,
                )
        except Exception as e:
            self._warn("trim", f"session recorder: cannot trim {self.directory}: {e}")
        return deleted

    def _warn(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("%s", text)


def _is_channel(msg: mido.Message) -> bool:
    return hasattr(msg, "channel")


def to_midi_file(events: list[tuple[float, int, mido.Message]]) -> mido.MidiFile:
    """(t_seconds, track, message) triples -> a type-1 file; times relative to the first event."""
    f = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    tracks = [mido.MidiTrack() for _ in TRACK_NAMES]
    f.tracks.extend(tracks)
    for track, name in zip(tracks, TRACK_NAMES):
        track.append(mido.MetaMessage("track_name", name=name, time=0))
    tracks[0].append(mido.MetaMessage("set_tempo", tempo=TEMPO_US, time=0))
    t0 = min(t for t, _, _ in events)
    last = [0] * len(tracks)
    for t, i, msg in sorted(events, key=lambda e: (e[0], e[1])):
        tick = round((t - t0) * TICKS_PER_BEAT * 1e6 / TEMPO_US)  # seconds -> beats -> ticks
        tracks[i].append(msg.copy(time=tick - last[i]))
        last[i] = tick
    for track in tracks:
        track.append(mido.MetaMessage("end_of_track", time=0))
    return f
