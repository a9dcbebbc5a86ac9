"""The shared event codec: round trips, live encoding, awkward MIDI."""

from __future__ import annotations

import mido
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.player import events as ev
from cadenza.player.events import Note


def _notes_strategy():
    """Quantized, well-formed notes: on the grid, binned velocity, no same-pitch overlap."""
    note = st.tuples(
        st.integers(0, 600),  # start tick
        st.integers(ev.LOW_PITCH, ev.HIGH_PITCH),
        st.integers(1, ev.MAX_NOTE_TICKS - 1),  # length
        st.integers(0, ev.N_VELOCITY_BINS - 1),
    )

    def build(raw):
        by_pitch: dict[int, list[Note]] = {}
        for start, pitch, length, b in sorted(raw):
            prev = by_pitch.setdefault(pitch, [])
            if prev and start < prev[-1].end:
                continue  # drop overlapping notes of one pitch: not quantized input
            prev.append(Note(start, pitch, start + length, ev.bin_to_velocity(b)))
        return sorted(n for ns in by_pitch.values() for n in ns)

    return st.lists(note, max_size=60).map(build)


def _midi_of(notes: list[Note], ticks_per_beat: int, channels: int = 1, type_: int = 1) -> mido.MidiFile:
    """Notes spread over several tracks and channels, as real files are."""
    mid = mido.MidiFile(type=type_, ticks_per_beat=ticks_per_beat)
    scale = ticks_per_beat // ev.TICKS_PER_BEAT
    n_tracks = 1 if type_ == 0 else channels
    tracks = [mido.MidiTrack() for _ in range(n_tracks)]
    mid.tracks.extend(tracks)
    per_track: list[list[tuple[int, mido.Message]]] = [[] for _ in range(n_tracks)]
    for i, n in enumerate(notes):
        ch = i % channels
        k = ch % n_tracks
        per_track[k].append((n.start * scale, mido.Message("note_on", note=n.pitch, velocity=n.velocity, channel=ch)))
        # half the note-offs as note_on velocity 0, as many files write them
        off = (
            mido.Message("note_on", note=n.pitch, velocity=0, channel=ch)
            if i % 2
            else mido.Message("note_off", note=n.pitch, channel=ch)
        )
        per_track[k].append((n.end * scale, off))
    per_track[0].insert(0, (0, mido.MetaMessage("set_tempo", tempo=500000)))
    per_track[0].append((24 * scale, mido.MetaMessage("set_tempo", tempo=300000)))
    for track, evs in zip(tracks, per_track):
        evs.sort(key=lambda e: e[0])
        last = 0
        for t, m in evs:
            track.append(m.copy(time=t - last))
            last = t
    return mid


@settings(max_examples=150, deadline=None)
@given(_notes_strategy(), st.sampled_from([24, 96, 480]), st.integers(1, 4), st.sampled_from([0, 1]))
def test_round_trip_quantized_files(notes, tpb, channels, type_):
    mid = _midi_of(notes, tpb, channels=channels, type_=type_)
    tokens = ev.encode_midi(mid)
    assert tokens[0] == ev.START
    assert ev.decode_notes(tokens) == notes


@settings(max_examples=100, deadline=None)
@given(_notes_strategy())
def test_tokens_survive_a_midi_file_and_back(notes):
    import io

    tokens = ev.encode_notes(notes)
    buf = io.BytesIO()
    ev.tokens_to_midi(tokens, tempo_bpm=93).save(file=buf)
    buf.seek(0)
    assert np.array_equal(ev.encode_midi(mido.MidiFile(file=buf)), tokens)


@settings(max_examples=100, deadline=None)
@given(_notes_strategy(), st.randoms(use_true_random=False))
def test_incremental_encoding_equals_file_encoding(notes, rnd):
    """Live messages arrive in any order within a tick and with jitter; same tokens."""
    whole = ev.encode_notes(notes)
    events = []
    for n in notes:
        events.append((n.start, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        events.append((n.end, mido.Message("note_off", note=n.pitch)))
    events.sort(key=lambda e: (e[0], rnd.random()))
    enc = ev.StreamEncoder()
    live = [ev.START]
    for tick, msg in events:
        live += enc.advance(tick + rnd.uniform(-0.49, 0.49) - 0.5)  # the clock ticks between messages
        live += enc.feed(msg, tick + rnd.uniform(-0.49, 0.49))
    live += enc.finish()
    assert live == whole.tolist()


def test_vocabulary_layout():
    assert ev.VOCAB_SIZE == 2 + 88 + 88 + 48 + 16
    assert ev.describe(ev.note_on(60)) == "ON 60"
    assert ev.describe(ev.note_off(21)) == "OFF 21"
    assert ev.describe(ev.shift(48)) == "SHIFT 48"
    assert ev.describe(ev.velocity(15)) == "VEL 15"
    ev.check_layout(ev.layout())
    bad = dict(ev.layout(), size=100)
    with pytest.raises(ValueError, match="size"):
        ev.check_layout(bad)


def test_long_gap_is_several_shifts_and_sub_tick_gap_is_none():
    tokens = ev.encode_notes([Note(0, 60, 10), Note(10 + 100, 62, 120)]).tolist()
    names = [ev.describe(t) for t in tokens]
    assert names == [
        "START",
        "VEL 7",
        "ON 60",
        "SHIFT 10",
        "OFF 60",
        "SHIFT 48",
        "SHIFT 48",
        "SHIFT 4",
        "ON 62",
        "SHIFT 10",
        "OFF 62",
    ]
    enc = ev.StreamEncoder()
    out = enc.feed(mido.Message("note_on", note=60, velocity=64), 5.0)
    out += enc.feed(mido.Message("note_on", note=64, velocity=64), 5.3)  # same tick after rounding
    out += enc.finish()
    assert [ev.describe(t) for t in out] == ["SHIFT 5", "VEL 7", "ON 60", "ON 64", "SHIFT 1", "OFF 60", "OFF 64"]


def test_canonical_order_within_a_tick():
    # offs by pitch, then ons by pitch, velocity only where it changes
    notes = [Note(0, 64, 24, 100), Note(0, 60, 24, 100), Note(24, 67, 48, 100), Note(24, 55, 48, 40)]
    names = [ev.describe(t) for t in ev.encode_notes(notes, start=False)]
    assert names == [
        "VEL 12",
        "ON 60",
        "ON 64",
        "SHIFT 24",
        "OFF 60",
        "OFF 64",
        "VEL 4",
        "ON 55",
        "VEL 12",
        "ON 67",
        "SHIFT 24",
        "OFF 55",
        "OFF 67",
    ]


def test_drums_dropped_and_outside_notes_folded():
    mid = mido.MidiFile(type=0, ticks_per_beat=24)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr += [
        mido.Message("note_on", note=36, velocity=90, channel=9, time=0),  # kick: dropped
        mido.Message("note_on", note=12, velocity=90, time=0),  # C0 -> C1 (24)
        mido.Message("note_on", note=120, velocity=90, time=0),  # C9 -> C8 (108)
        mido.Message("note_off", note=36, channel=9, time=12),
        mido.Message("note_off", note=12, time=0),
        mido.Message("note_off", note=120, time=0),
    ]
    notes = ev.decode_notes(ev.encode_midi(mid))
    assert [(n.pitch, n.start, n.end) for n in notes] == [(24, 0, 12), (108, 0, 12)]


def test_overlapping_same_pitch_and_zero_length_notes():
    enc = ev.StreamEncoder()
    on = lambda p: mido.Message("note_on", note=p, velocity=64)  # noqa: E731
    off = lambda p: mido.Message("note_off", note=p)  # noqa: E731
    out = [ev.START]
    out += enc.feed(on(60), 0)
    out += enc.feed(on(60), 10)  # re-strike while held
    out += enc.feed(off(60), 20)  # ends the first: still held by the second
    out += enc.feed(off(60), 30)
    out += enc.feed(on(62), 40)
    out += enc.feed(off(62), 40)  # zero length: lasts one tick
    out += enc.feed(off(65), 41)  # note-off without note-on: ignored
    out += enc.finish()
    notes = ev.decode_notes(out)
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0, 10), (60, 10, 30), (62, 40, 41)]


def test_notes_longer_than_the_limit_are_ended_by_encoder_and_decoder():
    long_note = [Note(0, 60, ev.MAX_NOTE_TICKS + 100)]
    notes = ev.decode_notes(ev.encode_notes(long_note))
    assert notes == [Note(0, 60, ev.MAX_NOTE_TICKS)]
    # a model that never says NOTE_OFF still gets its note ended
    toks = [ev.note_on(60)] + [ev.shift(48)] * 20
    msgs = ev.decode(toks)
    assert [(m.tick, m.message.type) for m in msgs] == [(0, "note_on"), (ev.MAX_NOTE_TICKS, "note_off")]


def test_decoder_tolerates_any_token_sequence():
    rng = np.random.default_rng(0)
    toks = rng.integers(0, ev.VOCAB_SIZE, size=5000)
    msgs = ev.decode(toks, channel=3)
    held: set[int] = set()
    last = 0
    for tm in msgs:
        assert tm.tick >= last or tm.message.type == "note_off"
        last = max(last, tm.tick)
        assert tm.message.channel == 3
        if tm.message.type == "note_on":
            assert tm.message.note not in held
            held.add(tm.message.note)
        else:
            held.discard(tm.message.note)
    assert not held  # every note-on got its note-off


def test_transpose_folds_into_range():
    toks = np.array([ev.note_on(100), ev.note_off(100), ev.note_on(22), ev.shift(3)])
    up = ev.transpose(toks, 12)
    assert [ev.describe(t) for t in up] == ["ON 100", "OFF 100", "ON 34", "SHIFT 3"]
    down = ev.transpose(toks, -5)
    assert [ev.describe(t) for t in down] == ["ON 95", "OFF 95", "ON 29", "SHIFT 3"]


@pytest.mark.parametrize(
    "payload",
    [b"", b"not a midi file at all", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x90<"],
)
def test_unreadable_files_raise_one_error(tmp_path, payload):
    p = tmp_path / "bad.mid"
    p.write_bytes(payload)
    with pytest.raises(ev.MidiFileError, match="bad.mid"):
        ev.encode_midi(p)
