"""The player's step model: every variant against a numpy LSTM, in ai-edge-litert and in tflite-runtime 2.14."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cadenza.player import events
from cadenza.player.bundle import Bundle, BundleError, load_bundle, write_bundle
from cadenza.player.runtime import StepModel, open_model

pytest.importorskip("tensorflow")
from support.models import converted  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# variant -> (mean |logit difference|, least argmax agreement) against float64 numpy, each step taken
# from the reference's own state (a random model is chaotic: carried, an 8-bit error of one step grows
# without bound, which says nothing about the conversion). Logits span ~8 nats per step.
ONE_STEP = {
    "fp32": (1e-4, 1.0),
    "fp16": (0.01, 0.97),
    "dynamic": (0.05, 0.93),  # measured 0.012, 0.99
    "int8": (0.15, 0.88),  # measured 0.043, 0.97
    "edgetpu_input": (0.15, 0.88),
}
CARRIED = {"fp32": (1e-4, 1.0), "fp16": (0.02, 0.95)}  # float variants also hold over 160 carried steps


def numpy_lstm(w: dict, clip: float, tokens) -> tuple[np.ndarray, list]:
    """The model, written out again: logits [T, V] from zero state, and the state before each step."""
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    H = w["lstm1/recurrent"].shape[0]
    h, c = [np.zeros(H), np.zeros(H)], [np.zeros(H), np.zeros(H)]
    out, states = [], []
    for t in tokens:
        states.append((h[0], c[0], h[1], c[1]))
        x = w["embedding"][t].astype(np.float64)
        for k in range(2):
            z = x @ w[f"lstm{k + 1}/kernel"] + h[k] @ w[f"lstm{k + 1}/recurrent"] + w[f"lstm{k + 1}/bias"]
            i, f, g, o = np.split(z, 4)
            c[k] = np.clip(sig(f) * c[k] + sig(i) * np.tanh(g), -clip, clip)
            h[k] = x = sig(o) * np.tanh(c[k])
        out.append(x @ w["dense/kernel"] + w["dense/bias"])
    return np.asarray(out), states


@pytest.fixture(scope="module")
def conv():
    return converted()


@pytest.fixture(scope="module")
def tokens(conv) -> np.ndarray:
    piece = events.encode_midi(conv.root / "corpus" / "piece03.mid")
    return piece[:160]


@pytest.fixture(scope="module")
def expected(conv, tokens) -> tuple[np.ndarray, np.ndarray]:
    """Reference logits [T, V] and the states before each step [T, 4, H]."""
    from cadenza.train.model import export_weights, load_run

    model, cfg = load_run(conv.run_dir)
    logits, states = numpy_lstm(export_weights(model), cfg["cell_clip"], tokens)
    return logits, np.asarray(states, np.float32)


def check_close(variant: str, got: np.ndarray, want: np.ndarray, table: dict) -> None:
    worst, least = table[variant]
    diff = float(np.mean(np.abs(got - want)))
    agree = float(np.mean(np.argmax(got, 1) == np.argmax(want, 1)))
    assert diff <= worst and agree >= least, f"{variant}: mean |dlogit| {diff:.4f}, argmax agreement {agree:.3f}"


def run_tokens(model: StepModel, tokens, states=None) -> np.ndarray:
    """Logits of each step: state carried from zero, or (states given) set before each step."""
    model.reset()
    out = []
    for i, t in enumerate(tokens):
        if states is not None:
            model.set_state(states[i])
        out.append(model.step(int(t)).copy())
    return np.stack(out)


@pytest.mark.parametrize("variant", sorted(ONE_STEP))
def test_variant_matches_numpy_in_litert(conv, tokens, expected, variant):
    logits, states = expected
    model = open_model(conv.variants[variant])
    assert model.vocab_size == events.VOCAB_SIZE and model.hidden == 32
    assert model.onehot == (variant == "edgetpu_input")
    check_close(variant, run_tokens(model, tokens, states), logits, ONE_STEP)
    if variant in CARRIED:
        check_close(variant, run_tokens(model, tokens), logits, CARRIED)


TFLITE_SCRIPT = r"""
import json, sys
import numpy as np
from cadenza.player.runtime import backend_name, open_model
paths, data, out = json.loads(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
tokens, states = data["tokens"], data["states"]
logits = {}
for variant, path in paths.items():
    m = open_model(path)
    one, carried = [], []
    for t, s in zip(tokens, states):
        carried.append(m.step(int(t)).copy())
    for t, s in zip(tokens, states):
        m.set_state(s)
        one.append(m.step(int(t)).copy())
    logits[variant + "/carried"], logits[variant + "/one"] = np.stack(carried), np.stack(one)
np.savez(out, **logits)
print(json.dumps({"backend": backend_name(), "numpy": np.__version__, "tensorflow": "tensorflow" in sys.modules}))
"""


def source_tree(tmp_path: Path) -> str:
    """A folder whose `cadenza` namespace is this tree's packages, for an interpreter without the install."""
    ns = tmp_path / "src" / "cadenza"
    ns.mkdir(parents=True)
    for pkg in ("player", "convert", "train"):
        (ns / pkg).symlink_to(REPO / pkg, target_is_directory=True)
    return str(ns.parent)


def tflite_python() -> str:
    exe = os.environ.get("CADENZA_TFLITE_PYTHON") or str(REPO / ".venv-tflite" / "bin" / "python")
    if not Path(exe).exists():
        pytest.skip("no tflite-runtime 2.14 environment (make venv-tflite; make test sets CADENZA_TFLITE_PYTHON)")
    return exe


def test_every_variant_runs_in_tflite_runtime_2_14(conv, tokens, expected, tmp_path):
    """The 32-bit Pi's interpreter (numpy < 2) loads and steps every model the converter writes."""
    logits, states = expected
    paths = {v: str(p) for v, p in conv.variants.items()}
    np.savez(tmp_path / "in.npz", tokens=np.asarray(tokens), states=states)
    out = tmp_path / "logits.npz"
    proc = subprocess.run(
        [tflite_python(), "-c", TFLITE_SCRIPT, json.dumps(paths), str(tmp_path / "in.npz"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=source_tree(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["backend"] == "tflite_runtime" and info["numpy"].startswith("1.") and not info["tensorflow"]
    got = np.load(out)
    assert sorted(got.files) == sorted(f"{v}/{m}" for v in ONE_STEP for m in ("one", "carried"))
    for variant in ONE_STEP:
        check_close(variant, got[f"{variant}/one"], logits, ONE_STEP)
        if variant in CARRIED:
            check_close(variant, got[f"{variant}/carried"], logits, CARRIED)


def test_runtime_never_imports_tensorflow(conv):
    code = (
        "import sys; from cadenza.player.runtime import open_model, backend_name; m = open_model(sys.argv[1]); "
        "m.step(1); print(backend_name(), 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(conv.bundle)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["ai_edge_litert", "False"]


def test_state_can_be_saved_restored_and_reset(conv, tokens):
    model = open_model(conv.bundle)
    for t in tokens[:20]:
        model.step(int(t))
    saved = model.get_state()
    assert len(saved) == 4 and all(s.shape == (32,) and s.dtype == np.float32 for s in saved)
    a = [model.step(int(t)).copy() for t in tokens[20:30]]
    model.set_state(saved)
    b = [model.step(int(t)).copy() for t in tokens[20:30]]
    np.testing.assert_array_equal(a, b)
    model.reset()
    assert all(not s.any() for s in model.get_state())
    fresh = open_model(conv.bundle)
    np.testing.assert_array_equal(model.step(events.START), fresh.step(events.START))
    with pytest.raises(ValueError, match="4 arrays"):
        model.set_state(saved[:3])
    with pytest.raises(ValueError, match="32 values"):
        model.set_state([np.zeros(5)] * 4)


def test_step_writes_into_out_and_checks_the_token(conv):
    model = open_model(conv.bundle)
    buf = np.empty(events.VOCAB_SIZE, np.float32)
    assert model.step(events.START, out=buf) is buf
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.step(events.VOCAB_SIZE)


def test_int8_io_state_survives_get_and_set(conv, tokens):
    model = open_model(conv.variants["edgetpu_input"])
    for t in tokens[:30]:
        model.step(int(t))
    saved = model.get_state()
    a = model.step(5).copy()
    model.set_state(saved)
    np.testing.assert_array_equal(model.step(5), a)


def test_without_the_edgetpu_delegate_the_cpu_model_runs(conv, tmp_path, caplog):
    b = load_bundle(conv.bundle)
    tpu = load_bundle(conv.variants["edgetpu_input"])
    meta = dict(b.meta, edgetpu={"inputs": tpu.meta["inputs"], "outputs": tpu.meta["outputs"]})
    path = write_bundle(tmp_path / "tpu.cadenza", meta, b.model, edgetpu=tpu.model)
    with caplog.at_level(logging.INFO, logger="cadenza.player.runtime"):
        model = open_model(path)
    assert not model.on_edgetpu and not model.onehot
    assert [r for r in caplog.records if "Edge TPU not used" in r.getMessage()]
    np.testing.assert_array_equal(model.step(events.START), open_model(conv.bundle).step(events.START))


def _mismatch(conv, tmp_path, **changes) -> Path:
    b = load_bundle(conv.bundle)
    return write_bundle(tmp_path / "m.cadenza", dict(b.meta, **changes), b.model)


def test_model_json_that_disagrees_with_the_tensors(conv, tmp_path):
    meta = load_bundle(conv.bundle).meta
    cases = {
        "state size": ({"states": [dict(s, shape=[1, 33]) for s in meta["states"]]}, "state h1 is [1, 33]"),
        "tensor name": ({"inputs": dict(meta["inputs"], c2="nope:0")}, "'nope:0' for 'c2'"),
        "swapped roles": ({"outputs": dict(meta["outputs"], logits=meta["outputs"]["h1"])}, "logits have shape"),
    }
    for name, (changes, problem) in cases.items():
        path = _mismatch(conv, tmp_path, **changes)
        with pytest.raises(BundleError) as err:
            open_model(path)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(str(path)) and problem in msg, (name, msg)


def test_a_model_for_another_vocabulary_is_refused(conv, tmp_path):
    from cadenza.convert import stepmodel
    from cadenza.convert.reference import random_weights

    model = stepmodel.convert(random_weights(100, 4, 32), 10.0, "fp32")
    tmap = stepmodel.tensor_map(model)
    meta = dict(load_bundle(conv.bundle).meta, inputs=tmap.inputs, outputs=tmap.outputs)
    with pytest.raises(BundleError, match=r"logits have shape \[1, 100\], but the vocabulary has 242"):
        StepModel(Bundle(tmp_path / "x.cadenza", meta, model))


def test_a_damaged_model_inside_a_good_bundle(conv, tmp_path):
    b = load_bundle(conv.bundle)
    path = write_bundle(tmp_path / "m.cadenza", b.meta, b.model[: len(b.model) // 3])
    with pytest.raises(BundleError) as err:
        open_model(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: model.tflite does not load"), msg
