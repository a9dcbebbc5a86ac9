"""A key input model: the key beside the token at every step, set by KEY tokens the same way in training,
in the converter and in the player (player/conditioning.py, kind "key_input")."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.player import conditioning as cond
from cadenza.player import events as ev
from cadenza.player import keys

MUSIC = st.integers(ev.START, ev.VOCAB_SIZE - 1)
KEY = st.integers(ev.KEY_BASE, ev.KEY_BASE + ev.N_KEYS - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(MUSIC, KEY), max_size=200))
def test_hold_gives_the_music_and_the_key_in_force_at_each_step(stream):
    music, ids = cond.hold(np.asarray(stream, np.int32))
    assert music.tolist() == [t for t in stream if t < ev.KEY_BASE]
    assert len(ids) == len(music)
    want, key = [], cond.NONE
    for t in stream:  # the rule, step by step
        if t >= ev.KEY_BASE:
            key = t - ev.KEY_BASE
            continue
        if t == ev.START:
            key = cond.NONE
        want.append(key)
    assert ids.tolist() == want
    key, stepped = cond.NONE, []  # the step-at-a-time rule (reference, runtime) gives the same
    for t in stream:
        key, is_step = cond.held(t, key)
        if is_step:
            stepped.append(key)
    assert stepped == want


def test_config_keeps_the_two_kinds_apart():
    from cadenza.train.config import make_config

    cfg = make_config("tiny", key_input=True, key_shift=0.5, key_shift_bars=4)
    assert cfg.vocab_size == ev.VOCAB_SIZE and cfg.keyed  # the key is no token of the vocabulary
    with pytest.raises(ValueError, match="choose one"):
        make_config("tiny", key_input=True, key_tokens=True)
    with pytest.raises(ValueError, match="key_none"):
        make_config("tiny", key_input=True, key_none=1.5)


@pytest.mark.parametrize("seed", range(10))
def test_a_training_piece_is_told_a_key_from_its_first_note_or_none_at_all(seed):
    from cadenza.train.corpus import rekeyed

    rng = np.random.default_rng(seed)
    line = [ev.Note(24 * i, 62 + (0, 2, 3, 5, 7, 8, 10)[i % 7], 24 * i + 20) for i in range(48)]  # D minor
    piece = ev.encode_notes(line)  # (START first)
    notes = ev.decode_notes(piece)
    first = cond.label(notes, np.array([n.start for n in notes]), 0, None)
    for _ in range(5):
        drawn = rekeyed(piece, 0.0, 0.0, 0.3, rng)
        music, ids = cond.hold(drawn)
        assert music.tolist() == piece.tolist()  # no key moves asked: the music untouched
        if (ids == cond.NONE).all():
            continue  # a piece told no key
        assert ids[0] == cond.NONE and (ids[1:] != cond.NONE).all()  # START itself, then a key at every step
        assert cond.key_of(cond.KEY_BASE + int(ids[1])) == first


def test_epoch_streams_cut_tokens_and_keys_together():
    from cadenza.train import batches

    rng = np.random.default_rng(0)
    line = [ev.Note(24 * i, 60 + (0, 2, 4, 5, 7, 9, 11)[i % 7], 24 * i + 20) for i in range(64)]
    piece = cond.insert(ev.encode_notes(line), rng, lead=True)
    toks, ids = batches.epoch_streams([piece] * 6, 2, 16, [0, 3], rng, keyed=True)
    assert toks.shape == ids.shape and not ev.is_key(toks).any()
    flat_ok = set(range(ev.N_KEYS + 1))
    assert set(np.unique(ids).tolist()) <= flat_ok
    for row_t, row_k in zip(toks, ids):  # START restarts "no key"; a key follows at once (the lead)
        for i in np.flatnonzero(row_t == ev.START):
            assert row_k[i] == cond.NONE and (i + 1 >= len(row_k) or row_k[i + 1] != cond.NONE)
    xk = list(batches.windows(toks, 16, ids))
    assert all(len(w) == 3 and w[0].shape == w[1].shape == w[2].shape for w in xk)


@pytest.fixture(scope="module")
def keyed_bundle(tmp_path_factory):
    """A tiny key input run (random weights) converted with the Edge TPU input model too."""
    from cadenza.convert.__main__ import main as convert
    from support.models import TINY, tiny_run

    tmp = tmp_path_factory.mktemp("keyin")
    run_dir = tiny_run(tmp, sizes=dict(TINY, key_input=True), name="tinykeyin")
    out = tmp / "keyin.cadenza"
    rc = convert(
        [str(run_dir), "--out", str(out), "--variant", "fp32", "--edgetpu", "--latency-steps", "100",
         "--agreement-steps", "100", "--keras-steps", "10", "--calibration-samples", "100",
         "--max-test-tokens", "1500", "--save-variants", str(tmp / "variants")]
    )  # fmt: skip
    assert rc == 0
    return run_dir, out, tmp


def _source(run_dir):
    from cadenza.convert.source import load_source

    return load_source(run_dir, with_keras=False)


def test_the_bundle_declares_its_key_input(keyed_bundle):
    from cadenza.player.bundle import KEY_INPUT_FORMAT

    _run, out, _tmp = keyed_bundle
    meta = json.loads(zipfile.ZipFile(out).read("model.json"))
    assert meta["format"] == KEY_INPUT_FORMAT
    assert meta["vocab"]["size"] == ev.VOCAB_SIZE and "key" not in meta["vocab"]
    assert meta["conditioning"]["kind"] == "key_input" and meta["conditioning"]["none"] == cond.NONE
    assert "key" in meta["inputs"]


def test_the_step_model_is_the_trained_one_with_the_key_it_is_told(keyed_bundle):
    """fp32 bundle against the numpy reference over a test piece with its KEY tokens, key by key."""
    from cadenza.convert.reference import Reference
    from cadenza.player.runtime import open_model

    run_dir, out, _tmp = keyed_bundle
    src = _source(run_dir)
    ref, model = Reference(src.weights, src.cell_clip), open_model(out)
    assert model.keyed and ref.keyed
    piece = src.test_pieces[0][:400]
    assert ev.is_key(piece).sum() >= 3  # the piece really tells keys
    state, worst, keyed_steps = ref.zero_state(), 0.0, 0
    for t in piece.tolist():
        lg, state = ref.step(t, state)
        mine = model.step(t)
        assert model.key == state[4]
        keyed_steps += model.key != cond.NONE
        if lg is not None:
            worst = max(worst, float(np.abs(mine - lg).max()))
    assert worst < 1e-4 and keyed_steps > 100


def test_the_key_changes_what_the_model_says_and_a_key_token_is_no_step(keyed_bundle):
    from cadenza.player.runtime import open_model

    _run, out, _tmp = keyed_bundle
    model = open_model(out)
    model.step(ev.START)
    model.step(ev.note_on(60))
    saved = model.get_state()
    last = model.step(ev.shift(12)).copy()
    again = model.step(cond.key_token((7, "major")))  # no step: the same logits, the same state
    assert np.array_equal(again, last) and model.key == 7
    told = {}
    for key in ((0, "major"), (9, "minor"), None):
        model.set_state(saved)
        if key is not None:
            model.step(cond.key_token(key))
        told[key] = model.step(ev.shift(12)).copy()
    assert not np.allclose(told[(0, "major")], told[(9, "minor")])
    assert not np.allclose(told[(0, "major")], told[None])
    model.step(ev.START)
    assert model.key == cond.NONE  # a new piece is told no key until a KEY token comes


def test_get_and_set_state_carry_the_key(keyed_bundle):
    from cadenza.player.runtime import open_model

    _run, out, _tmp = keyed_bundle
    model = open_model(out)
    model.step(ev.START)
    model.step(cond.key_token((2, "minor")))
    model.step(ev.note_on(62))
    saved = model.get_state()
    a = model.step(ev.shift(6)).copy()
    model.step(cond.key_token((5, "major")))
    model.step(ev.note_on(65))
    model.set_state(saved)
    assert model.key == 14
    assert np.array_equal(model.step(ev.shift(6)), a)


def test_every_variant_and_the_edge_tpu_input_model_take_the_key(keyed_bundle):
    from cadenza.convert import edgetpu
    from cadenza.convert.fidelity import model_ops
    from cadenza.player.bundle import load_bundle
    from cadenza.player.runtime import StepModel

    run_dir, out, tmp = keyed_bundle
    report = json.loads((tmp / "keyin.fidelity.json").read_text())
    assert report["calibration"]["keys"]["with_key"] > 0 and report["calibration"]["keys"]["with_none"] > 0
    fp32 = report["variants"]["fp32"]["test"]["nll"]
    for name, row in report["variants"].items():
        assert row["test"]["nll"] == pytest.approx(fp32, rel=0.05), name
    tpu = (tmp / "keyin_edgetpu_input.tflite").read_bytes()
    assert edgetpu.unsupported_ops(model_ops(tpu)) == []
    # the one-hot model steps through the player's runtime with the key as a one-hot input
    bundle = load_bundle(tmp / "variants" / "keyin.edgetpu_input.cadenza")
    sm = StepModel(bundle, use_edgetpu=False)
    assert sm.onehot and sm.keyed
    ref = StepModel(load_bundle(out))
    for t in _source(run_dir).test_pieces[0][:200].tolist():
        x, y = sm.step(t), ref.step(t)
        assert sm.key == ref.key
    assert int(np.argmax(x)) == int(np.argmax(y)) or np.abs(x - y).max() < 1.0


def test_a_bundle_that_says_key_input_must_name_the_key_tensor(keyed_bundle):
    from cadenza.player.bundle import BundleError, check_meta

    _run, out, _tmp = keyed_bundle
    meta = json.loads(zipfile.ZipFile(out).read("model.json"))
    del meta["inputs"]["key"]
    with pytest.raises(BundleError, match="key input"):
        check_meta(meta)


def test_the_engine_tells_the_model_the_phrase_key_and_rolls_it_back(keyed_bundle):
    from cadenza.player.engine import Engine
    from cadenza.player.runtime import open_model
    from cadenza.player.sampling import Sampler

    _run, out, _tmp = keyed_bundle
    model = open_model(out)
    eng = Engine(model, Sampler(temperature=1.0, seed=3), keep_history=True)
    assert eng.key_conditioned
    eng.start()
    assert model.key == cond.NONE
    eng.set_condition((9, "minor"))
    assert model.key == 21
    eng.play(0, until=16 * ev.TICKS_PER_BEAT)
    while eng.generate() is not None and eng.cursor < 8 * ev.TICKS_PER_BEAT:
        pass
    assert model.key == 21  # told again at every bar line
    eng.set_condition((0, "major"))
    assert model.key == 0
    eng.rollback(ev.TICKS_PER_BEAT)  # to before the new key: the key in force then comes back
    assert model.key == 21
    while eng.generate() is not None:
        pass
    assert model.key == 0  # the key the engine follows now, told at the next bar line
    assert all(tok < ev.VOCAB_SIZE for origin, _t, tok in eng.history if origin == "model")
    told = [tok for origin, _t, tok in eng.history if origin == "key"]
    assert told and all(ev.is_key(np.asarray(told)))


def test_the_weights_come_back_out_of_a_keyed_bundle_and_fine_tune(keyed_bundle):
    """`cadenza-train --from BUNDLE` on a key input bundle: its key tables are read back from the step model
    (each to the layer it is added to) and the fine-tune trains the same kind of model."""
    from cadenza.convert.unbundle import bundle_weights
    from cadenza.train.__main__ import main as train_main
    from support.midifiles import make_corpus

    run_dir, out, tmp = keyed_bundle
    weights, config = bundle_weights(out)  # the fp32 bundle: exact
    for name, w in _source(run_dir).weights.items():
        np.testing.assert_allclose(weights[name], w, atol=1e-6, err_msg=name)
    dynamic, _ = bundle_weights(tmp / "variants" / "keyin.dynamic.cadenza")  # quantized tables, dequantized
    for name in ("key/lstm1", "key/lstm2", "key/dense"):
        assert np.abs(dynamic[name] - weights[name]).max() < 0.05 * np.abs(weights[name]).max(), name
    mine = make_corpus(tmp / "mine", n=4)
    ft = tmp / "runs" / "ft"
    common = ["--epochs", "1", "--no-progress", "--cache-dir", str(tmp / "cache"), "--set", "min_epoch_tokens=2000"]
    assert train_main(["--corpus", str(mine), "--from", str(out), "--out", str(ft), *common]) == 0
    cfg = json.loads((ft / "config.json").read_text())
    assert cfg["key_input"] is True and cfg["from_corpus"] == config["corpus"]
    report = json.loads((ft / "report.json").read_text())["finetune"]
    assert np.isfinite(report["heldout_nll_before"]) and np.isfinite(report["source_test_nll_after"])


@pytest.mark.parametrize("tonic", range(12))
@pytest.mark.parametrize("mode", ["major", "minor"])
def test_a_mode_move_puts_a_scale_in_its_parallel_mode_and_back(tonic, mode):
    degrees = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 10)
    line = [ev.Note(24 * i, 60 + tonic + degrees[i % 7] + 12 * (i // 7 % 2), 24 * i + 20) for i in range(28)]
    other = "minor" if mode == "major" else "major"
    flipped = cond.other_mode(line, (tonic, mode))
    assert [(n.start, n.end) for n in flipped] == [(n.start, n.end) for n in line]
    assert keys.estimate(flipped) == (tonic, other)
    # the degrees that tell the modes apart moved a semitone (and minor's seventh up to the leading tone)
    moved = {(a.pitch - tonic) % 12: b.pitch - a.pitch for a, b in zip(line, flipped) if a.pitch != b.pitch}
    assert moved == ({4: -1, 9: -1} if mode == "major" else {3: 1, 8: 1, 10: 1})
    if mode == "major":  # major to minor keeps the leading tone, so flipping back is the line again
        assert cond.other_mode(flipped, (tonic, other)) == line


@pytest.mark.parametrize("seed", range(10))
def test_mode_moves_flip_stretches_at_bar_lines_and_keep_the_rhythm(seed):
    from cadenza.train.config import make_config
    from cadenza.train.corpus import rekeyed

    with pytest.raises(ValueError, match="key_modes"):
        make_config("tiny", key_input=True, key_modes=0.3)  # needs key moves
    with pytest.raises(ValueError, match="key_modes"):
        make_config("tiny", key_tokens=True, key_shift=0.5, key_modes=0.3)  # and the key input
    assert make_config("tiny", key_input=True, key_shift=0.8, key_shift_bars=4, key_modes=0.3).key_modes == 0.3
    scale = (0, 2, 4, 5, 7, 9, 11, 12)  # a D major scale in eighths in every bar, so every stretch says D major
    line = [ev.Note(12 * i, 62 + scale[i % 8], 12 * i + 10) for i in range(192)]
    piece = ev.encode_notes(line)
    flips = ev.decode_notes(cond.shift_segments(piece, np.random.default_rng(seed), mean_bars=3, modes=1.0))
    assert [(n.start, n.end) for n in flips] == [(n.start, n.end) for n in line]
    changed = [n.start for a, n in zip(line, flips) if a.pitch != n.pitch]
    assert changed and min(changed) >= 2 * cond.EVERY_TICKS  # (21 bar lines at one in 3: some flip)
    for bar in range(24):  # each bar all in D major or all in D minor (harmonic: F and Bb, C# kept)
        pcs = {n.pitch % 12 for n in flips if n.start // cond.EVERY_TICKS == bar}
        assert pcs in ({2, 4, 6, 7, 9, 11, 1}, {2, 4, 5, 7, 9, 10, 1})
    # told the minor where the notes are in minor: the labels follow the flip
    drawn = rekeyed(piece, 1.0, 3.0, 0.0, np.random.default_rng(seed), modes=1.0)
    music, ids = cond.hold(drawn)
    assert {cond.key_of(cond.KEY_BASE + int(k)) for k in ids[1:]} <= {(2, "major"), (2, "minor")}
    assert (2, "minor") in {cond.key_of(cond.KEY_BASE + int(k)) for k in ids[1:]}
