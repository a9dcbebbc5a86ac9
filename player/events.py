"""The MIDI event vocabulary shared by the trainer, the converter and the player.

A piece is a stream of tokens over one merged channel:

    START                      beginning of a piece (the model's primer)
    NOTE_ON(p), NOTE_OFF(p)    the 88 piano keys, MIDI 21..108
    SHIFT(k)                   time moves on k ticks, k = 1..48 (24 ticks per quarter)
    VELOCITY(b)                16 bins; comes before a NOTE_ON whose bin differs
                               from the one in force

Time is musical (clock ticks, 24 per quarter note), so tempo is a playback
setting and an external MIDI clock maps onto the grid one to one. Within a tick
the order is canonical: note-offs by pitch, then note-ons by pitch (each with a
VELOCITY token where the bin changes). Encoding then decoding quantized input
gives back the same notes.

numpy and mido only: this module runs on the Pi.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Iterable, Iterator

import mido
import numpy as np

log = logging.getLogger(__name__)

TICKS_PER_BEAT = 24  # MIDI clock resolution: one token tick == one clock pulse
LOW_PITCH, HIGH_PITCH = 21, 108  # the 88 piano keys
N_PITCHES = HIGH_PITCH - LOW_PITCH + 1
MAX_SHIFT = 48  # two beats; a longer gap is several shifts
N_VELOCITY_BINS = 16
VELOCITY_BIN_WIDTH = 8  # bin b covers velocities 8b+1 .. 8b+8
DEFAULT_VELOCITY = 60  # a bin centre, so it survives a round trip
# A note held longer than this is ended by the codec (encoder and decoder alike),
# so a missing NOTE_OFF from the model can never hang a note for long.
MAX_NOTE_TICKS = 16 * TICKS_PER_BEAT  # four bars of 4/4
DRUM_CHANNEL = 9  # MIDI channel 10, dropped
CC_SUSTAIN = 64  # the sustain pedal (a switch: values >= SWITCH_ON are "down")
CC_ALL_NOTES_OFF = 123
SWITCH_ON = 64  # a MIDI switch controller reads "on" from this value up

PAD = 0
START = 1
N_SPECIAL = 2
NOTE_ON_BASE = N_SPECIAL
NOTE_OFF_BASE = NOTE_ON_BASE + N_PITCHES
SHIFT_BASE = NOTE_OFF_BASE + N_PITCHES  # SHIFT(k) = SHIFT_BASE + k - 1
VELOCITY_BASE = SHIFT_BASE + MAX_SHIFT
VOCAB_SIZE = VELOCITY_BASE + N_VELOCITY_BINS  # 242
# A key-conditioned model has 24 KEY tokens after these, inputs only (player/conditioning.py).
KEY_BASE, N_KEYS = VOCAB_SIZE, 24


def layout(conditioned: bool = False) -> dict:
    """The vocabulary layout, as written into a bundle's model.json (with KEY tokens for a conditioned model)."""
    out = {
        "size": VOCAB_SIZE + (N_KEYS if conditioned else 0),
        "ticks_per_beat": TICKS_PER_BEAT,
        "pad": PAD,
        "start": START,
        "note_on": [NOTE_ON_BASE, N_PITCHES],
        "note_off": [NOTE_OFF_BASE, N_PITCHES],
        "shift": [SHIFT_BASE, MAX_SHIFT],
        "velocity": [VELOCITY_BASE, N_VELOCITY_BINS],
        "low_pitch": LOW_PITCH,
        "velocity_bin_width": VELOCITY_BIN_WIDTH,
        "max_note_ticks": MAX_NOTE_TICKS,
    }
    if conditioned:
        out["key"] = [KEY_BASE, N_KEYS]
    return out


def check_layout(other: dict) -> None:
    """Raise ValueError naming the first field where a bundle's layout differs from ours."""
    mine = layout(conditioned="key" in other)
    for key, value in mine.items():
        theirs = other.get(key)
        if isinstance(value, list) and isinstance(theirs, (list, tuple)):
            theirs = list(theirs)
        if theirs != value:
            raise ValueError(f"vocabulary field {key!r} is {theirs!r}, this player expects {value!r}")


# -- token helpers ----------------------------------------------------------


def note_on(pitch: int) -> int:
    return NOTE_ON_BASE + pitch - LOW_PITCH


def note_off(pitch: int) -> int:
    return NOTE_OFF_BASE + pitch - LOW_PITCH


def shift(ticks: int) -> int:
    if not 1 <= ticks <= MAX_SHIFT:
        raise ValueError(f"shift must be in 1..{MAX_SHIFT} ticks, got {ticks}")
    return SHIFT_BASE + ticks - 1


def velocity(bin_: int) -> int:
    return VELOCITY_BASE + bin_


# Token-type predicates, for an int or a numpy array of tokens (elementwise). The decoder below
# inlines the same comparisons on its hot path.


def is_note_on(t):
    return (t >= NOTE_ON_BASE) & (t < NOTE_OFF_BASE)


def is_note_off(t):
    return (t >= NOTE_OFF_BASE) & (t < SHIFT_BASE)


def is_shift(t):
    return (t >= SHIFT_BASE) & (t < VELOCITY_BASE)


def is_key(t):
    """A KEY token (inputs of a key-conditioned model: player/conditioning.py)."""
    return (t >= KEY_BASE) & (t < KEY_BASE + N_KEYS)


def shift_ticks(t):
    """The ticks a SHIFT token moves time by (meaningful where is_shift)."""
    return t - SHIFT_BASE + 1


def velocity_to_bin(v: int) -> int:
    return (min(max(int(v), 1), 127) - 1) // VELOCITY_BIN_WIDTH


def bin_to_velocity(b: int) -> int:
    return VELOCITY_BIN_WIDTH * b + VELOCITY_BIN_WIDTH // 2  # 4, 12, ..., 124


def fold_pitch(p: int) -> int:
    """Fold a MIDI note into the piano's range by whole octaves."""
    while p < LOW_PITCH:
        p += 12
    while p > HIGH_PITCH:
        p -= 12
    return p


def shifts_for(gap: int) -> list[int]:
    """The SHIFT tokens for a gap of `gap` ticks (none for 0)."""
    out = [shift(MAX_SHIFT)] * (gap // MAX_SHIFT)
    if gap % MAX_SHIFT:
        out.append(shift(gap % MAX_SHIFT))
    return out


def describe(token: int) -> str:
    """A readable name, for logs and tests: 'ON 60', 'SHIFT 12', ..."""
    t = int(token)
    if t == PAD:
        return "PAD"
    if t == START:
        return "START"
    if NOTE_ON_BASE <= t < NOTE_OFF_BASE:
        return f"ON {t - NOTE_ON_BASE + LOW_PITCH}"
    if NOTE_OFF_BASE <= t < SHIFT_BASE:
        return f"OFF {t - NOTE_OFF_BASE + LOW_PITCH}"
    if SHIFT_BASE <= t < VELOCITY_BASE:
        return f"SHIFT {t - SHIFT_BASE + 1}"
    if VELOCITY_BASE <= t < VOCAB_SIZE:
        return f"VEL {t - VELOCITY_BASE}"
    return f"?{t}"


def transpose(tokens: np.ndarray, semitones: int) -> np.ndarray:
    """Transpose a token array, folding notes pushed off the keyboard back by octaves (KEY tokens move too)."""
    tokens = np.asarray(tokens, dtype=np.int32).copy()
    for base in (NOTE_ON_BASE, NOTE_OFF_BASE):
        mask = (tokens >= base) & (tokens < base + N_PITCHES)
        idx = tokens[mask] - base + semitones
        idx = np.where(idx < 0, idx + 12 * ((-idx + 11) // 12), idx)
        idx = np.where(idx >= N_PITCHES, idx - 12 * ((idx - N_PITCHES) // 12 + 1), idx)
        tokens[mask] = base + idx
    mask = is_key(tokens)
    k = tokens[mask] - KEY_BASE
    tokens[mask] = KEY_BASE + (k // 12) * 12 + (k % 12 + semitones) % 12
    return tokens


# -- notes ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, order=True)
class Note:
    """A note on the token grid: [start, end) in ticks."""

    start: int
    pitch: int
    end: int
    velocity: int = DEFAULT_VELOCITY


# -- encoding ---------------------------------------------------------------


class StreamEncoder:
    """Encodes note messages into tokens as they arrive, one tick at a time.

    Feed it messages stamped with their time in ticks (floats are rounded to
    the grid); it holds the events of the current tick until time moves on, then
    emits them in canonical order, so live input and a file give the same
    tokens. The file encoder is this class fed from a file.

        enc = StreamEncoder()
        tokens = enc.feed(msg, tick)      # tokens now complete (earlier ticks)
        tokens += enc.advance(now_tick)   # flush the current tick, end long notes
    """

    def __init__(self, max_note_ticks: int = MAX_NOTE_TICKS) -> None:
        self.max_note_ticks = max_note_ticks
        self.reset()

    def reset(self, tick: int = 0) -> None:
        """Forget everything: nothing sounding, nothing buffered, time at `tick`."""
        self.tick = tick  # the tick whose events are buffered
        self.emitted_tick = tick  # time reached by the tokens emitted so far
        self.velocity_bin: int | None = None
        self.sounding: dict[int, int] = {}  # pitch -> start tick
        self.depth: dict[int, int] = {}  # pitch -> note-ons not yet matched (overlaps)
        self._ons: dict[int, int] = {}  # this tick: pitch -> velocity bin
        self._offs: set[int] = set()  # this tick
        self._deferred_offs: set[int] = set()  # offs of notes that began this tick

    def feed(self, msg: mido.Message, tick: float) -> list[int]:
        """Take one message at `tick`; returns the tokens completed by moving to it."""
        t = max(int(round(tick)), self.tick)
        out = self.advance(t) if t > self.tick else []
        if msg.type not in ("note_on", "note_off") or getattr(msg, "channel", 0) == DRUM_CHANNEL:
            return out
        pitch = fold_pitch(msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            self._on(pitch, velocity_to_bin(msg.velocity))
        else:
            self._off(pitch)
        return out

    def _on(self, pitch: int, bin_: int) -> None:
        self.depth[pitch] = self.depth.get(pitch, 0) + 1
        self._deferred_offs.discard(pitch)
        if pitch in self.sounding:  # re-strike: end the sounding one first
            self._offs.add(pitch)
        self._ons[pitch] = bin_  # two onsets of one pitch in one tick make one note

    def _off(self, pitch: int) -> None:
        n = self.depth.get(pitch, 0)
        if n == 0:
            return  # note-off without note-on
        if n > 1:  # an overlapped note of this pitch is still held
            self.depth[pitch] = n - 1
            return
        del self.depth[pitch]
        if pitch in self._ons:
            self._deferred_offs.add(pitch)  # zero-length note: lasts one tick
        elif pitch in self.sounding:
            self._offs.add(pitch)

    def _flush(self) -> list[int]:
        """Emit the buffered tick's events (time is already at self.tick)."""
        out: list[int] = []
        if self._offs or self._ons:
            out += shifts_for(self.tick - self.emitted_tick)
            self.emitted_tick = self.tick
        for p in sorted(self._offs):
            out.append(note_off(p))
            self.sounding.pop(p, None)
        for p in sorted(self._ons):
            b = self._ons[p]
            if b != self.velocity_bin:
                out.append(velocity(b))
                self.velocity_bin = b
            out.append(note_on(p))
            self.sounding[p] = self.tick
        self._offs = self._deferred_offs
        self._deferred_offs = set()
        self._ons = {}
        return out

    def advance(self, tick: float) -> list[int]:
        """Move time to `tick`, emitting every event before it (and forced note ends)."""
        t = int(round(tick))
        out: list[int] = []
        while t > self.tick:
            out += self._flush()
            nxt = t
            if self.sounding:
                nxt = min(nxt, min(self.sounding.values()) + self.max_note_ticks)
            if self._offs:  # deferred offs fall on the very next tick
                nxt = min(nxt, self.tick + 1)
            self.tick = nxt  # always > self.tick: pending ends lie in the future
            for p, start in list(self.sounding.items()):
                if self.tick - start >= self.max_note_ticks and p not in self._ons:
                    self._offs.add(p)
                    self.depth.pop(p, None)
        return out

    def finish(self) -> list[int]:
        """End of input: flush, then release every held note on the next tick."""
        out = self._flush()
        if self.sounding or self._offs:
            self.tick += 1
            self._offs |= set(self.sounding)
            out += self._flush()
            self.depth.clear()
        return out

    def pending_shift(self, tick: float) -> list[int]:
        """SHIFT tokens for the silence between the last event and `tick` (not emitted)."""
        return shifts_for(max(int(round(tick)) - self.emitted_tick, 0))


class MidiFileError(ValueError):
    """A file that is not a readable MIDI file."""


def read_midi(path: str | Path) -> mido.MidiFile:
    """Open a MIDI file, turning every way it can be broken into MidiFileError."""
    try:
        return mido.MidiFile(str(path), clip=True)
    except Exception as exc:  # mido raises many kinds on broken files
        raise MidiFileError(f"{path}: not a readable MIDI file ({str(exc) or type(exc).__name__})") from None


def file_messages(mid: mido.MidiFile) -> Iterator[tuple[float, mido.Message]]:
    """All note messages of all tracks, merged, stamped in our ticks (tempo-free)."""
    scale = TICKS_PER_BEAT / mid.ticks_per_beat
    for _track_idx, track in enumerate(mid.tracks):
        now = 0
        for msg in track:
            now += msg.time
            if msg.type in ("note_on", "note_off"):
                yield now * scale, msg


def encode_midi(mid: mido.MidiFile | str | Path, start: bool = True) -> np.ndarray:
    """Tokens of a whole file (int32), beginning with START unless start=False."""
    if not isinstance(mid, mido.MidiFile):
        mid = read_midi(mid)
    events = sorted(file_messages(mid), key=lambda e: e[0])  # stable: keeps track order
    return encode_messages(events, start=start)


def encode_messages(events: Iterable[tuple[float, mido.Message]], start: bool = True) -> np.ndarray:
    enc = StreamEncoder()
    out = [START] if start else []
    for tick, msg in events:
        out += enc.feed(msg, tick)
    out += enc.finish()
    return np.asarray(out, dtype=np.int32)


def encode_notes(notes: Iterable[Note], start: bool = True) -> np.ndarray:
    """Tokens of a list of notes (for tests and tools)."""
    events = []
    for n in notes:
        events.append((n.start, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        events.append((n.end, mido.Message("note_off", note=n.pitch)))
    events.sort(key=lambda e: e[0])
    return encode_messages(events, start=start)


# -- decoding ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TimedMessage:
    tick: int
    message: mido.Message


class StreamDecoder:
    """Turns tokens into timed note messages, one token at a time.

    Tolerates anything a sampler can produce: a NOTE_ON of a sounding pitch
    re-strikes it, a NOTE_OFF of a silent pitch is ignored, a note held for
    MAX_NOTE_TICKS is ended. `sounding` is always the set of notes on.
    """

    def __init__(self, channel: int = 0, max_note_ticks: int = MAX_NOTE_TICKS) -> None:
        self.channel = channel
        self.max_note_ticks = max_note_ticks
        self.tick = 0
        self.velocity = DEFAULT_VELOCITY
        self.sounding: dict[int, int] = {}  # pitch -> start tick
        self._checked_channel: int | None = None

    def _msg(self, kind: str, pitch: int, vel: int) -> mido.Message:
        # Checked once per channel: pitches and velocities come from the vocabulary (in range by
        # construction), and mido's checks cost more than the rest of a token's decoding.
        if self._checked_channel != self.channel:
            mido.Message(kind, note=pitch, velocity=vel, channel=self.channel)
            self._checked_channel = self.channel
        return mido.Message(kind, skip_checks=True, note=pitch, velocity=vel, channel=self.channel)

    def feed(self, token: int) -> list[TimedMessage]:
        t = int(token)
        out: list[TimedMessage] = []
        if SHIFT_BASE <= t < VELOCITY_BASE:
            target = self.tick + t - SHIFT_BASE + 1
            out += self._expire(target)
            self.tick = target
        elif NOTE_ON_BASE <= t < NOTE_OFF_BASE:
            p = t - NOTE_ON_BASE + LOW_PITCH
            if p in self.sounding:
                out.append(TimedMessage(self.tick, self._msg("note_off", p, 0)))
            out.append(TimedMessage(self.tick, self._msg("note_on", p, self.velocity)))
            self.sounding[p] = self.tick
        elif NOTE_OFF_BASE <= t < SHIFT_BASE:
            p = t - NOTE_OFF_BASE + LOW_PITCH
            if self.sounding.pop(p, None) is not None:
                out.append(TimedMessage(self.tick, self._msg("note_off", p, 0)))
        elif VELOCITY_BASE <= t < VOCAB_SIZE:
            self.velocity = bin_to_velocity(t - VELOCITY_BASE)
        return out  # START, PAD: nothing to play

    def _expire(self, until: int) -> list[TimedMessage]:
        """Note-offs for notes reaching the length limit at or before `until`."""
        out = []
        for p, start in sorted(self.sounding.items(), key=lambda kv: (kv[1], kv[0])):
            end = start + self.max_note_ticks
            if end <= until:
                out.append(TimedMessage(end, self._msg("note_off", p, 0)))
                del self.sounding[p]
        return out

    def release_all(self) -> list[TimedMessage]:
        """Note-offs, now, for everything sounding (used when a stream ends or is cut)."""
        out = [TimedMessage(self.tick, self._msg("note_off", p, 0)) for p in sorted(self.sounding)]
        self.sounding.clear()
        return out


def decode(tokens: Iterable[int], channel: int = 0) -> list[TimedMessage]:
    """Timed messages of a token stream; every note-on gets its note-off."""
    dec = StreamDecoder(channel=channel)
    out: list[TimedMessage] = []
    for t in tokens:
        out += dec.feed(t)
    out += dec.release_all()
    return out


def decode_notes(tokens: Iterable[int]) -> list[Note]:
    """The notes of a token stream, sorted."""
    notes, open_ = [], {}
    for tm in decode(tokens):
        m = tm.message
        if m.type == "note_on":
            open_[m.note] = (tm.tick, m.velocity)
        elif m.note in open_:
            s, v = open_.pop(m.note)
            notes.append(Note(s, m.note, tm.tick, v))
    return sorted(notes)


def to_midi(
    messages: Iterable[TimedMessage],
    tempo_bpm: float = 100.0,
    ticks_per_beat: int = 480,
    program: int | None = None,
) -> mido.MidiFile:
    """A type-0 MIDI file of timed messages (our ticks are rescaled to ticks_per_beat)."""
    mid = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    if program is not None:
        track.append(mido.Message("program_change", program=program, time=0))
    scale = ticks_per_beat // TICKS_PER_BEAT
    # note-offs before note-ons at the same tick, so a re-strike sounds
    ordered = sorted(messages, key=lambda tm: (tm.tick, tm.message.type == "note_on"))
    last = 0
    for tm in ordered:
        track.append(tm.message.copy(time=(tm.tick - last) * scale))
        last = tm.tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return mid


def tokens_to_midi(tokens: Iterable[int], tempo_bpm: float = 100.0, channel: int = 0) -> mido.MidiFile:
    return to_midi(decode(tokens, channel=channel), tempo_bpm=tempo_bpm)
