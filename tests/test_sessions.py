"""Recorded sessions as a corpus, and a fine-tune on them end to end: sessions written by the real
SessionRecorder, cadenza-train --from a run, cadenza-convert, the bundle played by cadenza-play --render."""

from __future__ import annotations

import json
import logging
import zipfile

import mido
import numpy as np
import pytest

from cadenza.player import events as ev
from cadenza.player.recorder import SessionRecorder
from cadenza.train import corpus, sessions
from support.daemon import run_player


def _session(folder, phrases, tempo=120.0, answer=(72, 76), t0=1000.0, gap_s=2.0, tempo_at=None):
    """A recording as the player writes it: each phrase (pitches, a half beat each) on the keyboard, then
    a two-note answer from the player, `gap_s` apart; the tempo marked at the start (and `tempo_at`)."""
    rec = SessionRecorder(folder)
    beat = 60.0 / tempo
    rec.tempo(t0, tempo)
    if tempo_at is not None:
        rec.tempo(t0 + tempo_at[0], tempo_at[1])
    t = t0
    for pitches in phrases:
        for p in pitches:
            rec.record("in", t, mido.Message("note_on", note=p, velocity=80))
            rec.record("in", t + beat / 2 - 0.01, mido.Message("note_off", note=p))
            t += beat / 2
        t += beat
        for p in answer:
            rec.record("out", t, mido.Message("note_on", note=p, velocity=70))
            rec.record("out", t + beat - 0.01, mido.Message("note_off", note=p))
            t += beat
        t += gap_s
    return rec.close()


def _ons(tokens):
    t = np.asarray(tokens)
    return list(t[ev.is_note_on(t)] - ev.NOTE_ON_BASE + ev.LOW_PITCH)


def test_a_session_gives_the_keyboard_part_on_the_beat(tmp_path):
    path = _session(tmp_path, [(60, 62, 64), (65, 67)], tempo=120.0)
    mid = mido.MidiFile(path)
    assert sessions.is_session(mid)
    tokens = sessions.session_tokens(mid, "in")
    assert tokens[0] == ev.START and _ons(tokens) == [60, 62, 64, 65, 67]
    assert _ons(sessions.session_tokens(mid, "out")) == [72, 76, 72, 76]
    assert sorted(_ons(sessions.session_tokens(mid, "both"))) == sorted([60, 62, 64, 65, 67, 72, 76, 72, 76])
    # at 120 BPM a half beat is 12 ticks: the keyboard's notes are 12 ticks apart, as played
    notes = ev.decode(tokens)
    starts = [m.tick for m in notes if m.message.type == "note_on" and m.message.velocity]
    assert starts[1] - starts[0] == 12 and starts[2] - starts[1] == 12


def test_tempo_markers_put_the_notes_on_the_beat_after_a_change(tmp_path):
    # 60 BPM from the start, 120 BPM after 1 s: a note at 1.5 s is 1 + 1 = 2 beats in
    rec = SessionRecorder(tmp_path)
    rec.tempo(0.0, 60.0)
    rec.tempo(1.0, 120.0)
    for t, p in ((0.0, 60), (1.5, 62)):
        rec.record("in", t, mido.Message("note_on", note=p, velocity=80))
        rec.record("in", t + 0.2, mido.Message("note_off", note=p))
    tokens = sessions.session_tokens(mido.MidiFile(rec.close()), "in")
    starts = [m.tick for m in ev.decode(tokens) if m.message.type == "note_on" and m.message.velocity]
    assert starts == [0, 2 * ev.TICKS_PER_BEAT]


def test_long_silences_are_cut_and_a_missing_tempo_is_said(tmp_path, caplog):
    rec = SessionRecorder(tmp_path)
    for t, p in ((0.0, 60), (600.0, 62)):  # ten minutes apart
        rec.record("in", t, mido.Message("note_on", note=p, velocity=80))
        rec.record("in", t + 0.3, mido.Message("note_off", note=p))
    with caplog.at_level(logging.WARNING, logger="cadenza.train.sessions"):
        tokens = sessions.session_tokens(mido.MidiFile(rec.close()), "in", name="s")
    assert ["s: no tempo marker, read at 100 BPM"] == [r.getMessage() for r in caplog.records]
    starts = [m.tick for m in ev.decode(tokens) if m.message.type == "note_on" and m.message.velocity]
    assert starts[1] - starts[0] == 12 + sessions.REST_CAP_BEATS * ev.TICKS_PER_BEAT  # the note, then the cap
    with pytest.raises(ValueError, match="session part must be one of in, out, both"):
        sessions.session_tokens(mido.MidiFile(rec.written[0]), "keys")


def test_a_folder_of_sessions_is_a_corpus_split_by_session(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for k in range(6):
        _session(tmp_path, [tuple(int(x) for x in rng.integers(55, 71, 5)) for _ in range(3)], t0=1000.0 + k)
    (tmp_path / "broken.mid").write_bytes(b"MThd garbage")
    with caplog.at_level(logging.WARNING, logger="cadenza.train.corpus"):
        pieces = corpus.load_corpus(str(tmp_path))
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [f"skipping {tmp_path / 'broken.mid'}: not a readable MIDI file (EOFError)"]
    assert len(pieces) == 6 and all(p.name.startswith("session-") for p in pieces)
    assert all(72 not in _ons(p.tokens) for p in pieces)  # the keyboard's part only (the answers are 72, 76)
    train, val, test = corpus.split_pieces(pieces)
    assert {p.name for p in train} | {p.name for p in val} | {p.name for p in test} == {p.name for p in pieces}
    assert val and test and not ({p.name for p in val} & {p.name for p in test})  # whole sessions held out
    again = corpus.split_pieces(list(reversed(pieces)))  # the same split however the files were listed
    assert [[p.name for p in part] for part in again] == [[p.name for p in part] for part in (train, val, test)]


@pytest.mark.slow
def test_a_tiny_fine_tune_end_to_end(tmp_path):
    """Sessions -> cadenza-train --from a bundle -> report -> cadenza-convert -> cadenza-play --render."""
    pytest.importorskip("tensorflow")
    from cadenza.convert.__main__ import main as convert_main
    from cadenza.train.__main__ import main as train_main
    from support.models import converted

    source = converted().variants["dynamic"]  # a bundle, as shipped: its weights are read back from it
    folder = tmp_path / "sessions"
    rng = np.random.default_rng(1)
    for k in range(8):  # a "musician" who plays pentatonic figures, each session its own
        base = int(rng.integers(55, 67))
        figures = [tuple(base + int(iv) for iv in rng.choice([0, 2, 4, 7, 9, 12], 5)) for _ in range(3)]
        _session(folder, figures, t0=2000.0 + 10 * k)
    out = tmp_path / "runs" / "mine"
    args = ["--epochs", "3", "--set", "min_epoch_tokens=20000"]
    assert train_main(["--corpus", str(folder), "--from", str(source), "--out", str(out), *args]) == 0
    report = json.loads((out / "report.json").read_text())
    ft = report["finetune"]
    assert ft["from_run"] == str(source.resolve()) and report["preset"] == "finetune"
    assert ft["heldout_nll_after"] < ft["heldout_nll_before"]  # it learnt the musician's figures
    assert np.isfinite(ft["source_test_nll_before"]) and np.isfinite(ft["source_test_nll_after"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden"] == 32 and cfg["session_part"] == "in"  # the source's architecture
    bundle = tmp_path / "mine.cadenza"
    args = ["--variant", "fp32", "--latency-steps", "50", "--agreement-steps", "50", "--keras-steps", "20"]
    assert convert_main([str(out), "--out", str(bundle), *args]) == 0
    r = run_player("--model", bundle, "--render", tmp_path / "a.mid", "--beats", "8", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert mido.MidiFile(tmp_path / "a.mid").length > 0


def test_from_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    from cadenza.train.__main__ import main as train_main

    rc = train_main(["--corpus", str(tmp_path), "--from", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"cadenza-train: --from {tmp_path}: not a run directory (it needs model.keras and config.json)"
    ]


@pytest.mark.slow
def test_a_bundle_gives_back_its_weights_within_quantization_error():
    """Each CPU variant's step model read back into export_weights names, then into a Keras model."""
    pytest.importorskip("tensorflow")
    from cadenza.convert.unbundle import bundle_weights
    from cadenza.train.corpus import load_corpus
    from cadenza.train.fit import evaluate
    from cadenza.train.model import export_weights, load_run, load_source
    from support.models import converted

    conv = converted()
    model, cfg = load_run(conv.run_dir)
    original = export_weights(model)
    pieces = [p.tokens for p in load_corpus(cfg["corpus"])]
    nll = evaluate(model, pieces)[0]
    for variant in ("fp32", "fp16", "dynamic", "int8"):
        weights, settings = bundle_weights(conv.variants[variant])
        assert settings["hidden"] == cfg["hidden"] and set(weights) == set(original)
        for name, w in original.items():
            assert weights[name].shape == w.shape, (variant, name)
            layer = name.split("/")[0]  # kernel and recurrent are one FULLY_CONNECTED weight: one scale
            top = max(np.abs(original[k]).max() for k in original if k.split("/")[0] == layer)
            # dynamic: symmetric per-tensor int8, off by at most half a step; int8 (full integer): the table is
            # quantized as an activation (its own range and zero point), within one step
            step = {"fp32": 0.0, "fp16": top / 1024, "dynamic": 0.51 * top / 127, "int8": top / 127}[variant]
            assert np.abs(weights[name] - w).max() <= step + 1e-6, (variant, name)
        rebuilt, _ = load_source(conv.variants[variant])
        # the rebuilt Keras model scores the corpus as the original does (up to its weights' rounding)
        assert evaluate(rebuilt, pieces)[0] == pytest.approx(nll, rel=1e-6 if variant == "fp32" else 5e-3)


def test_a_bundle_of_another_vocabulary_is_refused_in_one_line(tmp_path, capsys):
    from cadenza.player.bundle import default_model_path, load_bundle
    from cadenza.train.__main__ import main as train_main

    shipped = load_bundle(default_model_path())
    meta = dict(shipped.meta, vocab=dict(shipped.meta["vocab"], size=300))
    odd = tmp_path / "odd.cadenza"
    with zipfile.ZipFile(odd, "w") as zf:  # as another version's converter would write it
        zf.writestr("model.json", json.dumps(meta))
        zf.writestr("model.tflite", shipped.model)
    rc = train_main(["--corpus", str(tmp_path), "--from", str(odd), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cadenza-train: {odd}") and "vocabulary" in err[0], err
    # nor can a fine-tune change the source's architecture
    args = ["--corpus", str(tmp_path), "--from", str(default_model_path()), "--out", str(tmp_path / "o")]
    assert train_main([*args, "--set", "hidden=128"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "cadenza-train: --set hidden: a fine-tune keeps the source's hidden (256)"
    ]


def test_an_epoch_of_a_small_corpus_repeats_it_in_new_transpositions():
    from cadenza.train import batches

    pieces = [ev.encode_notes([ev.Note(0, 60 + k, 12)]) for k in range(3)]  # 3 tiny pieces
    one = batches.epoch_streams(pieces, 2, 4, range(-5, 7), np.random.default_rng(0))
    more = batches.epoch_streams(pieces, 2, 4, range(-5, 7), np.random.default_rng(0), min_tokens=400)
    assert more.size >= 400 - 2 * 4 and more.size > 10 * one.size
    same = batches.epoch_streams(pieces, 2, 4, range(-5, 7), np.random.default_rng(0), min_tokens=0)
    np.testing.assert_array_equal(one, same)  # without a minimum, an epoch is one pass, as before


def test_rehearsal_mixes_the_source_pieces_in_the_set_share():
    from cadenza.train import batches

    new = [np.full(100, 7, np.int32) for _ in range(3)]  # 300 tokens
    old = [np.full(50, 9, np.int32) for _ in range(400)]  # 20,000 tokens
    rng = np.random.default_rng(0)
    mix = batches.rehearsal_mix(new, old, 0.5, 3000, rng)
    n_new = sum(len(p) for p in mix if p[0] == 7)
    n_old = sum(len(p) for p in mix if p[0] == 9)
    assert n_new == 1500 and 1500 <= n_old < 1550  # half and half of the 3,000: the new pieces five times over
    assert sum(len(p) for p in batches.rehearsal_mix(new, old, 0.25, 0, rng) if p[0] == 9) in range(100, 150)


def test_a_long_session_split_into_parts_keeps_its_tempo_in_each(tmp_path, monkeypatch, caplog):
    from cadenza.player import recorder as rec_mod

    monkeypatch.setattr(rec_mod, "MAX_EVENTS", 10)
    rec = SessionRecorder(tmp_path)
    rec.tempo(0.0, 120.0)
    for k in range(8):  # 16 notes' events: the first part fills at 10 events
        rec.record("in", 0.5 * k, mido.Message("note_on", note=60 + k, velocity=80))
        rec.record("in", 0.5 * k + 0.2, mido.Message("note_off", note=60 + k))
    rec.close()
    assert len(rec.written) == 2
    with caplog.at_level(logging.WARNING, logger="cadenza.train.sessions"):
        parts = [sessions.session_tokens(mido.MidiFile(p), "in", name=p.name) for p in rec.written]
    assert not caplog.records  # each part has its tempo marker
    assert [len(_ons(t)) for t in parts] == [5, 3] and _ons(parts[1]) == [65, 66, 67]
    assert sum(1 for p in rec.written for m in mido.MidiFile(p).tracks[0] if m.type == "marker") == 2


def test_a_session_with_nothing_played_writes_no_file(tmp_path):
    rec = SessionRecorder(tmp_path)
    rec.tempo(0.0, 120.0)
    assert rec.close() is None and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "keyed",
    [
        ["--set", "key_tokens=true", "--set", "key_shift=0.5", "--set", "key_shift_bars=3"],
        ["--set", "key_input=true", "--set", "key_shift=0.8", "--set", "key_shift_bars=4", "--set", "key_modes=0.3"],
    ],
    ids=["key-tokens", "key-input-mode-moves"],
)
def test_a_fine_tune_from_a_run_trained_with_key_moves_reads_its_source_split(tmp_path, keyed):
    """The source's test split is read without the source's key moves, of tonic or of mode (training-only)."""
    pytest.importorskip("tensorflow")
    from cadenza.train.__main__ import main as train_main
    from support.midifiles import make_corpus

    source_corpus = make_corpus(tmp_path / "corpus", n=8)
    source = tmp_path / "runs" / "moves"
    common = ["--epochs", "1", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    assert train_main(["--corpus", str(source_corpus), "--preset", "tiny", "--out", str(source), *keyed, *common]) == 0
    folder = tmp_path / "sessions"
    for k in range(4):
        _session(folder, [(60 + k, 62, 64, 67, 69)] * 3, t0=2000.0 + 10 * k)
    out = tmp_path / "runs" / "mine"
    args = ["--set", "min_epoch_tokens=2000", *common]
    assert train_main(["--corpus", str(folder), "--from", str(source), "--out", str(out), *args]) == 0
    ft = json.loads((out / "report.json").read_text())["finetune"]
    assert np.isfinite(ft["source_test_nll_before"]) and np.isfinite(ft["source_test_nll_after"])
