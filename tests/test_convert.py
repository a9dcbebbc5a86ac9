"""cadenza-convert on a tiny run: every variant, the fidelity report, plain ops, the clip, the CLI's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cadenza.player import events
from cadenza.player.bundle import load_bundle

pytest.importorskip("tensorflow")

from cadenza.convert import build as build_mod  # noqa: E402
from cadenza.convert import edgetpu, fidelity, stepmodel  # noqa: E402
from cadenza.convert.__main__ import main  # noqa: E402
from support.models import converted  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# what the step model may contain: the cell's arithmetic, and the (de)quantization at its edges
PLAIN_OPS = {
    "ADD",
    "CONCATENATION",
    "FULLY_CONNECTED",
    "GATHER",
    "LOGISTIC",
    "MAXIMUM",
    "MINIMUM",
    "MUL",
    "RESHAPE",
    "SPLIT",
    "TANH",
}
EDGE_OPS = {"QUANTIZE", "DEQUANTIZE"}


@pytest.fixture(scope="module")
def conv():
    return converted()


def test_bundle_describes_itself(conv):
    b = load_bundle(conv.bundle)
    m = b.meta
    assert m["format"] == 1 and m["vocab"] == events.layout() and m["ticks_per_beat"] == events.TICKS_PER_BEAT
    assert m["variant"] == conv.report["bundled"] in stepmodel.CPU_VARIANTS
    assert m["states"] == [{"name": n, "shape": [1, 32]} for n in ("h1", "c1", "h2", "c2")]
    assert set(m["inputs"]) == {"token", "h1", "c1", "h2", "c2"}
    assert set(m["outputs"]) == {"logits", "h1", "c1", "h2", "c2"}
    assert m["config"]["hidden"] == 32 and m["config"]["cell_clip"] == 10.0 and m["corpus"] == m["config"]["corpus"]
    for key in ("test_nll", "baseline_test_nll", "test_accuracy", "interpreter_test_nll", "interpreter_test_tokens"):
        assert key in m["metrics"], key
    assert m["created"].endswith("+00:00")
    assert b.edgetpu is None  # no compiler here


def test_fidelity_report_has_every_variant(conv):
    rep = json.loads(conv.bundle.with_name("tiny.fidelity.json").read_text())
    assert set(rep["variants"]) == set(stepmodel.CPU_VARIANTS) | {"edgetpu_input"}
    for _name, row in rep["variants"].items():
        assert row["size_bytes"] > 1000
        assert row["latency"]["steps"] == 500 and 0 < row["latency"]["median_us"] <= row["latency"]["p99_us"]
        assert row["test"]["tokens"] > 50 and row["test"]["nll"] > 0
        assert row["agreement"]["steps"] == 300
    rows = rep["variants"]
    assert rows["fp32"]["agreement"]["argmax_agreement"] == 1.0  # the float step model is the Keras model
    assert rows["fp32"]["agreement"]["max_abs_logit_diff"] < 1e-3
    assert rows["int8"]["size_bytes"] < rows["fp32"]["size_bytes"] / 2
    assert rep["reference"] == "keras" and rep["numpy_vs_keras_max_abs_logit_diff"] < 1e-3
    assert rep["keras_latency"]["median_us"] > 0 and rep["speedup_vs_keras"] > 1
    assert rep["bundled"] == build_mod.choose_variant(rows)
    assert "variant" in build_mod.table(rep) and "*" + rep["bundled"] in build_mod.table(rep)


def test_variants_use_plain_ops_only(conv):
    for name, path in conv.variants.items():
        ops = set(fidelity.model_ops(load_bundle(path).model))
        assert ops <= PLAIN_OPS | EDGE_OPS, (name, ops - PLAIN_OPS)
        assert {"FULLY_CONNECTED", "SPLIT", "MINIMUM", "MAXIMUM", "LOGISTIC", "TANH"} <= ops, name
    assert set(fidelity.model_ops(load_bundle(conv.variants["fp32"]).model)) <= PLAIN_OPS


def test_int8_weights_and_activations_are_int8(conv):
    from cadenza.player.runtime import make_interpreter

    interp = make_interpreter(load_bundle(conv.variants["int8"]).model)
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    fc = [op for op in interp._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    assert len(fc) == 3
    for op in fc:
        x, w = op["inputs"][:2]
        assert tensors[x]["dtype"] == np.int8 and tensors[w]["dtype"] == np.int8
        assert tensors[op["outputs"][0]]["dtype"] == np.int8


def test_edgetpu_model_has_only_edgetpu_ops(conv):
    from cadenza.player.runtime import make_interpreter

    model = conv.edgetpu_input.read_bytes()
    ops = fidelity.model_ops(model)
    assert edgetpu.unsupported_ops(ops) == [] and "GATHER" not in ops and "DEQUANTIZE" not in ops
    interp = make_interpreter(model)
    ins = {d["name"]: d for d in interp.get_input_details()}
    onehot = next(d for n, d in ins.items() if "onehot" in n)
    assert list(onehot["shape"]) == [1, events.VOCAB_SIZE]
    assert all(d["dtype"] == np.int8 for d in ins.values())
    assert all(d["dtype"] == np.int8 for d in interp.get_output_details())
    assert conv.report["edgetpu"]["compiled"] is False and conv.report["edgetpu"]["unsupported_ops"] == []


def test_missing_compiler_message_says_where_and_how():
    msg = edgetpu.missing_compiler_message(Path("models/bach_edgetpu_input.tflite"), Path("models/bach.cadenza"))
    assert "x86-64" in msg and "Debian" in msg
    assert "edgetpu_compiler -s bach_edgetpu_input.tflite" in msg
    assert "cadenza-convert add-edgetpu models/bach.cadenza models/bach_edgetpu_input_edgetpu.tflite" in msg


def test_add_edgetpu_repacks_the_bundle(conv, tmp_path):
    bundle = tmp_path / "b.cadenza"
    bundle.write_bytes(conv.bundle.read_bytes())
    compiled = tmp_path / "b_edgetpu_input_edgetpu.tflite"  # stand-in: the compiler's output keeps the I/O names
    compiled.write_bytes(conv.edgetpu_input.read_bytes())
    (tmp_path / "b_edgetpu_input.tflite").write_bytes(conv.edgetpu_input.read_bytes())
    assert main(["add-edgetpu", str(bundle), str(compiled)]) == 0
    b = load_bundle(bundle)
    assert b.edgetpu == compiled.read_bytes() and "onehot" in b.meta["edgetpu"]["inputs"]
    assert b.model == load_bundle(conv.bundle).model


def test_auto_picks_the_smallest_within_two_percent():
    def row(size, nll):
        return {"size_bytes": size, "test": {"nll": nll}, "agreement": {"argmax_agreement": 1.0}}

    rows = {"fp32": row(400, 2.00), "fp16": row(200, 2.00), "dynamic": row(100, 2.05), "int8": row(90, 2.06)}
    assert build_mod.choose_variant(rows) == "fp16"
    rows["dynamic"] = row(100, 2.039)
    assert build_mod.choose_variant(rows) == "dynamic"


def test_clip_holds_the_cell_state(tmp_path):
    """Drive c upward by ~+1 per step (i, f, o saturated, g = +1): it must stop at +clip, as in training."""
    from cadenza.convert.calibrate import collect, dataset
    from cadenza.convert.reference import Reference, random_weights

    clip, H = 3.0, 8
    w = random_weights(events.VOCAB_SIZE, 4, H, seed=3, scale=0.1)
    for layer in (1, 2):
        w[f"lstm{layer}/bias"][:] = 8.0  # every gate saturated open, g = tanh(8) ~ 1
    ref = Reference(w, clip)
    samples = collect(ref, [], n_samples=100, free_steps=60, n_free_runs=1)
    for variant, tol in (("fp32", 1e-6), ("int8", 0.1)):
        model = stepmodel.convert(w, clip, variant, dataset(samples, events.VOCAB_SIZE))
        sm = fidelity.step_model(
            model, build_mod.bundle_meta(_source(w, clip), variant, stepmodel.tensor_map(model), {})
        )
        state = ref.zero_state()
        for _ in range(12):
            sm.step(events.START)
            _, state = ref.step(events.START, state)
        h1, c1, h2, c2 = sm.get_state()
        assert np.allclose(c1, clip, atol=tol) and np.allclose(c2, clip, atol=tol), (variant, c1, c2)
        assert np.allclose(state[1], clip) and np.allclose(state[3], clip)  # the reference clips too
        assert np.allclose(h2, state[2], atol=max(tol, 1e-5)), variant


def _source(w, clip):
    from cadenza.convert.source import Source

    return Source(weights=w, config={"cell_clip": clip, "corpus": "none"}, report={}, train_pieces=[], test_pieces=[])


def _cli(*args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "cadenza.convert", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def test_cli_missing_run_dir_is_one_line_exit_2(tmp_path):
    proc = _cli(str(tmp_path / "runs" / "nope"), "--out", str(tmp_path / "x.cadenza"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0] and "no such run directory" in lines[0], proc.stderr


def test_cli_missing_files_is_one_line_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main([str(run), "--out", str(tmp_path / "x.cadenza")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing model.keras, report.json" in err[0]


def test_cli_damaged_model_is_one_line_exit_2(conv, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for f in ("config.json", "report.json"):
        (run / f).write_bytes((conv.run_dir / f).read_bytes())
    (run / "model.keras").write_bytes(b"not a keras file")
    assert main([str(run), "--out", str(tmp_path / "x.cadenza")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.keras" in err[0] and "cannot load" in err[0]
    assert not (tmp_path / "x.cadenza").exists()


FAKE_COMPILER = """#!/bin/sh
# stands in for edgetpu_compiler: -s -o OUTDIR MODEL -> OUTDIR/NAME_edgetpu.tflite and a log
out="$3"; model="$4"; name=$(basename "$model" .tflite)
cp "$model" "$out/${name}_edgetpu.tflite"
echo "Edge TPU Compiler version 16.0 (stand-in)"
echo "Model successfully compiled but not all operations are supported by the Edge TPU."
"""


def test_with_a_compiler_the_edgetpu_model_goes_into_the_bundle(conv, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "edgetpu_compiler").write_text(FAKE_COMPILER)
    (bin_dir / "edgetpu_compiler").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    report, said = {}, []
    section, compiled = build_mod._edgetpu(conv.edgetpu_input.read_bytes(), report, tmp_path / "b.cadenza", said.append)
    assert compiled == conv.edgetpu_input.read_bytes()
    assert "stand-in" in report["edgetpu"]["compiler_log"] and report["edgetpu"]["compiled"] is True
    assert "onehot" in section["inputs"] and "stand-in" in section["compiler_log"]
