"""cadenza-train end to end on a small real corpus, and its answers to bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.midifiles import make_corpus

REPO = Path(__file__).resolve().parent.parent


def run_train(*args, cwd=REPO, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-m", "cadenza.train", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real `tiny` training run on a folder of MIDI files (shared by the tests of this file)."""
    base = tmp_path_factory.mktemp("train")
    corpus = make_corpus(base / "corpus", n=12)
    out = base / "run"
    res = run_train(
        "--corpus", corpus, "--preset", "tiny", "--out", out, "--no-progress", "--cache-dir", base / "cache"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_tiny_run_writes_everything(tiny_run):
    out, res = tiny_run
    for name in ("model.keras", "config.json", "report.json", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["hidden"] == 32 and cfg["cell_clip"] == 10.0
    rep = json.loads((out / "report.json").read_text())
    for key in (
        "val_nll",
        "test_nll",
        "test_accuracy",
        "baseline_test_nll",
        "baseline_order",
        "tokens_per_second",
        "max_abs_cell_rollout",
    ):
        assert np.isfinite(rep[key]), key
    # a learnable corpus: both models do far better than uniform over 242 tokens (5.49 nats)
    assert rep["test_nll"] < 4.0
    assert rep["baseline_test_nll"] < 4.0
    assert 0 < rep["max_abs_cell_rollout"] <= cfg["cell_clip"]
    assert 0 < rep["p999_abs_cell_rollout"] <= rep["max_abs_cell_rollout"]
    assert 0 <= rep["share_at_clip_rollout"] <= 1
    assert rep["pieces"] == {"train": 10, "val": 1, "test": 1}
    assert rep["test_tokens"] > 100


def test_saved_model_matches_numpy_reference(tiny_run):
    """The Keras model computes exactly the clipped-cell math the step model will."""
    from cadenza.train.model import export_weights, load_run, numpy_step, zero_states

    out, _ = tiny_run
    model, cfg = load_run(out)
    w = export_weights(model)
    toks = np.array([[1, 40, 120, 200, 7, 180]], np.int32)
    logits, *_ = model([toks, *zero_states(1, cfg["hidden"])])
    state = tuple(np.zeros(cfg["hidden"], np.float32) for _ in range(4))
    for t in range(toks.shape[1]):
        ref, state = numpy_step(w, cfg["cell_clip"], int(toks[0, t]), state)
        np.testing.assert_allclose(np.asarray(logits)[0, t], ref, rtol=1e-4, atol=1e-4)


def test_cell_state_is_clipped_in_training_graph():
    from cadenza.train.config import make_config
    from cadenza.train.model import build_model, zero_states

    cfg = make_config("tiny", cell_clip=0.5)
    model = build_model(cfg)
    # force the cell input gates open with big weights: c would grow without the clip
    cell_in = model.get_layer("lstm1_in")
    k, b = cell_in.get_weights()
    cell_in.set_weights([k * 0 + 5.0, b * 0 + 5.0])
    toks = np.ones((1, 50), np.int32)
    _, h1, c1, h2, c2 = model([toks, *zero_states(1, cfg.hidden)])
    assert float(np.abs(np.asarray(c1)).max()) == pytest.approx(0.5)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run_train("--corpus", tmp_path / "empty", "--preset", "tiny", "--out", tmp_path / "run")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert str(tmp_path / "empty") in res.stderr.strip().splitlines()[-1]


def test_only_bad_files_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mid").write_bytes(b"this is not midi")
    (bad / "b.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x40\x00\x00\x90")
    res = run_train("--corpus", bad, "--preset", "tiny", "--out", tmp_path / "run")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "a.mid" in res.stderr and "b.mid" in res.stderr  # one warning per skipped file


def test_bad_setting_is_a_clear_error(tmp_path):
    res = run_train("--corpus", tmp_path, "--preset", "tiny", "--out", tmp_path / "run", "--set", "hiden=3")
    assert res.returncode == 2
    assert "hiden" in res.stderr and "Traceback" not in res.stderr
    res = run_train("--corpus", tmp_path, "--preset", "huge", "--out", tmp_path / "run")
    assert res.returncode == 2 and "huge" in res.stderr


def test_cosine_step_size_falls_from_the_set_one_to_its_floor_over_the_time_cap(tmp_path):
    from cadenza.train.config import make_config
    from cadenza.train.fit import cosine_step, fit

    cfg = make_config("tiny", lr_schedule="cosine", lr_floor=0.05, learning_rate=1e-2, max_minutes=0.1)
    steps = [cosine_step(cfg, d) for d in np.linspace(-0.5, 1.5, 41)]
    assert steps[0] == pytest.approx(1e-2) and steps[-1] == pytest.approx(5e-4)
    assert cosine_step(cfg, 0.5) == pytest.approx(1e-2 * (0.05 + 0.95 / 2))
    assert all(a >= b for a, b in zip(steps, steps[1:]))  # never rises
    with pytest.raises(ValueError, match="lr_schedule"):
        make_config("tiny", lr_schedule="linear")
    with pytest.raises(ValueError, match="lr_floor"):
        make_config("tiny", lr_floor=2.0)
    # a real (6 s) run on the schedule: it trains, and the best model is kept
    rng = np.random.default_rng(0)
    pieces = [rng.integers(3, 200, size=200).astype(np.int32) for _ in range(4)]
    model, hist = fit(cfg, pieces, pieces[:1], tmp_path, progress=False)
    assert hist.val_loss and np.isfinite(hist.val_loss).all() and (tmp_path / "model.keras").exists()


@pytest.mark.parametrize("key_input", [False, True])
def test_the_xla_compiled_training_step_computes_what_the_plain_one_does(key_input):
    import keras

    from cadenza.train.config import make_config
    from cadenza.train.fit import train_step_fn
    from cadenza.train.model import build_model, zero_states

    cfg = make_config("tiny", key_input=key_input)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 200, (cfg.batch_size, cfg.window)).astype(np.int32)
    k = rng.integers(0, 25, x.shape).astype(np.int32) if key_input else x
    y = rng.integers(0, 200, x.shape).astype(np.int32)
    losses, weights = {}, {}
    init = None
    for jit in (False, True):
        c = make_config("tiny", key_input=key_input, jit=jit)
        model = build_model(c)
        if init is None:
            init = model.get_weights()
        model.set_weights(init)
        step = train_step_fn(model, keras.optimizers.Adam(c.learning_rate, clipnorm=c.clipnorm), c)
        states, out = zero_states(c.batch_size, c.hidden), []
        for _ in range(3):  # the state and the weights carried from one window to the next
            loss, states = step(x, k, y, states)
            out.append(float(loss))
        losses[jit], weights[jit] = out, model.get_weights()
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
    assert losses[True][2] < losses[True][0]  # it learns
    for a, b in zip(weights[True], weights[False]):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("key_input", [False, True])
def test_bfloat16_matmuls_train_near_float32_and_the_kept_model_is_float32(tmp_path, key_input):
    import keras

    from cadenza.train.config import make_config
    from cadenza.train.fit import evaluate, fit
    from cadenza.train.model import build_model

    with pytest.raises(ValueError, match="matmul_dtype"):
        make_config("tiny", matmul_dtype="float16")
    cfg = make_config("tiny", key_input=key_input, matmul_dtype="bfloat16", hidden=64)
    model = build_model(cfg)
    f32 = build_model(make_config("tiny", key_input=key_input, hidden=64))
    rng = np.random.default_rng(5)
    f32.set_weights([w + rng.normal(0, 0.05, w.shape).astype(np.float32) for w in f32.get_weights()])
    model.set_weights(f32.get_weights())
    # the same weights: the two compute the same logits to bfloat16's precision, the states stay float32
    x = rng.integers(0, 200, (4, 40)).astype(np.int32)
    states = [np.zeros((4, 64), np.float32) for _ in range(4)]
    ins = [x, np.full_like(x, 3)] if key_input else [x]
    out16, out32 = model(ins + states), f32(ins + states)
    assert all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in out16)
    diff = np.abs(np.asarray(out16[0]) - np.asarray(out32[0]))
    assert 0 < diff.max() < 0.1 and diff.mean() < 0.01  # rounded, and only rounded
    # a real run: it learns, and what it evaluates and saves is the float32 model with the trained weights
    pieces = [rng.integers(3, 200, size=300).astype(np.int32) for _ in range(6)]
    run = make_config("tiny", matmul_dtype="bfloat16", max_minutes=0.1, epochs=3, patience=9)
    kept, hist = fit(run, pieces, pieces[:2], tmp_path, progress=False)
    assert min(hist.val_loss) < np.log(run.vocab_size)  # better than guessing
    cells = [layer.cell for layer in kept.layers if isinstance(layer, keras.layers.RNN)]
    assert len(cells) == 2 and all(c.matmul_dtype == "float32" for c in cells)
    assert all(layer.dtype_policy.name == "float32" for layer in kept.layers)
    assert evaluate(kept, pieces[:2])[0] == pytest.approx(hist.val_loss[hist.best_epoch], rel=1e-5)


def test_the_shipped_bundles_were_trained_with_the_presets_the_readme_names():
    """models/bach.cadenza is `--preset default`, models/folk.cadenza `--preset folk`: every training setting."""
    import dataclasses

    from cadenza.player.bundle import load_bundle
    from cadenza.train.config import TrainConfig, make_config

    for name, preset, corpus in (("bach", "default", "bach"), ("folk", "folk", "folk")):
        got = dataclasses.asdict(TrainConfig.from_dict(load_bundle(REPO / "models" / f"{name}.cadenza").meta["config"]))
        want = dataclasses.asdict(make_config(preset, corpus=corpus))
        differ = {k: (got[k], want[k]) for k in want if got[k] != want[k] and k != "preset"}
        assert not differ, (name, differ)


def test_a_transposition_listed_more_than_once_is_drawn_that_much_more_often():
    from cadenza.player import events
    from cadenza.train.batches import epoch_streams

    piece = np.array([events.note_on(60), events.shift(6), events.note_off(60)], np.int32)
    streams = epoch_streams([piece] * 4000, 4, 16, (0, 0, 0, 1), np.random.default_rng(0))
    at = {s: int(np.sum(streams == events.note_on(60 + s))) for s in (0, 1)}
    assert 0.72 < at[0] / (at[0] + at[1]) < 0.78  # 3 in 4, of ~4,000 draws
