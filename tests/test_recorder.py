"""Session recording: the file it writes, the cap it keeps, and that it never raises."""

from __future__ import annotations

import os
import time

import mido
import pytest

from cadenza.player import recorder
from cadenza.player.recorder import SessionRecorder


def _abs_times(track):
    t, out = 0, []
    for m in track:
        t += m.time
        if not m.is_meta:
            out.append((t, m))
    return out


def test_writes_type1_file_in_real_time(tmp_path):
    rec = SessionRecorder(tmp_path)
    t = 1000.0
    rec.record("in", t, mido.Message("note_on", note=60, velocity=80))
    rec.record("out", t + 0.5, mido.Message("note_on", note=64, velocity=70, channel=1))
    rec.record("in", t + 0.25, mido.Message("note_off", note=60))  # arrives late from another thread
    rec.record("in", t + 0.3, mido.Message("clock"))  # real-time bytes are not recorded
    rec.record("out", t + 1.5, mido.Message("note_off", note=64, channel=1))
    path = rec.close()
    assert path is not None and recorder.NAME_RE.match(path.name) and rec.skipped == 1
    f = mido.MidiFile(path)
    assert f.type == 1 and f.ticks_per_beat == 1000 and len(f.tracks) == 2
    assert [(tick, m.type) for tick, m in _abs_times(f.tracks[0])] == [(0, "note_on"), (250, "note_off")]
    assert [(tick, m.type, m.channel) for tick, m in _abs_times(f.tracks[1])] == [
        (500, "note_on", 1),
        (1500, "note_off", 1),
    ]
    assert f.length == pytest.approx(1.5)  # seconds, as played
    assert rec.close() is None  # twice is fine


def test_empty_session_writes_nothing(tmp_path):
    assert SessionRecorder(tmp_path / "s").close() is None
    assert not (tmp_path / "s").exists()


def _old(tmp_path, name, size, age):
    p = tmp_path / name
    p.write_bytes(b"x" * size)
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_cap_deletes_oldest_own_files_only(tmp_path):
    olds = [_old(tmp_path, f"session-2020010{i}-120000.mid", 100, 1000 - i) for i in range(1, 6)]
    mine_not = [_old(tmp_path, "notes.txt", 100, 5000), _old(tmp_path, "session-keep.mid", 100, 5000)]
    rec = SessionRecorder(tmp_path, max_files=3, max_bytes=10_000)
    rec.record("out", 1.0, mido.Message("note_on", note=60))
    path = rec.close()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([olds[3].name, olds[4].name, path.name] + [p.name for p in mine_not])


def test_cap_by_bytes_keeps_the_new_file(tmp_path):
    _old(tmp_path, "session-20200101-120000.mid", 400, 100)
    _old(tmp_path, "session-20200102-120000.mid", 400, 50)
    rec = SessionRecorder(tmp_path, max_files=100, max_bytes=500)
    rec.record("in", 1.0, mido.Message("note_on", note=60))
    path = rec.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["session-20200102-120000.mid", path.name])
    rec = SessionRecorder(tmp_path, max_files=100, max_bytes=1)
    rec.record("in", 1.0, mido.Message("note_on", note=60))
    newest = rec.close()
    assert [p.name for p in tmp_path.iterdir()] == [newest.name]  # alone over the cap, but kept


def test_long_sessions_are_cut_into_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "MAX_EVENTS", 10)
    rec = SessionRecorder(tmp_path)
    for i in range(25):
        rec.record("out", i * 0.1, mido.Message("note_on", note=40 + i))
    rec.close()
    assert len(rec.written) == 3
    assert sum(len(_abs_times(mido.MidiFile(p).tracks[1])) for p in rec.written) == 25
    assert len({p.name for p in rec.written}) == 3  # same second: numbered names


def test_never_raises(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rec = SessionRecorder(blocker / "sessions")
    with caplog.at_level("WARNING", logger="cadenza.player.recorder"):
        rec.record("sideways", 1.0, mido.Message("note_on", note=60))
        rec.record("sideways", 1.0, mido.Message("note_on", note=61))
        rec.record("in", 1.0, mido.Message("note_on", note=60))
        assert rec.close() is None
    assert len(caplog.records) == 2  # one line per kind of failure
    assert all("\n" not in r.getMessage() for r in caplog.records)
