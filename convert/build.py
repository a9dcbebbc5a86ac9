"""From trained weights to a bundle: convert every variant, measure each, pack the chosen one.

    report = build(source, Path("models/bach.cadenza"), Settings(variant="auto"))

writes models/bach.cadenza and models/bach.fidelity.json (the report).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from cadenza.player import conditioning, events
from cadenza.player.bundle import KEY_INPUT_FORMAT, load_bundle, write_bundle

from . import calibrate, edgetpu, fidelity, stepmodel
from .reference import Reference
from .source import Source, keras_step_function

log = logging.getLogger(__name__)

VARIANT_CHOICES = ("auto",) + stepmodel.CPU_VARIANTS
NLL_TOLERANCE = 0.02  # auto: the smallest variant whose test NLL is within 2% of fp32
SPEEDUP_GOAL = 20  # the bundled step against the best Keras one-step call
REPORT_METRICS = (
    "test_nll",
    "val_nll",
    "test_accuracy",
    "baseline_test_nll",
    "baseline_order",
    "tokens_per_second",
    "max_abs_cell_rollout",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    variant: str = "auto"  # which variant goes into the bundle
    edgetpu: bool = False  # also build (and compile, where the compiler exists) the Edge TPU model
    max_test_tokens: int | None = None  # cap on scored test tokens per variant; None: all
    latency_steps: int = 5000  # steps timed per variant (one thread)
    keras_latency_steps: int = 300  # the Keras call is ~100x slower; a few hundred steps suffice
    agreement_steps: int = 2000  # free-running rollout compared token by token
    calibration_samples: int = 1000  # (token, state) pairs for int8
    seed: int = 0
    variants_dir: Path | None = None  # also write one bundle per variant here (NAME.VARIANT.cadenza)


def fidelity_path(out: Path) -> Path:
    return out.with_name(out.name.split(".")[0] + ".fidelity.json")


def bundle_meta(
    source: Source, variant: str, tmap: stepmodel.TensorMap, metrics: dict, edgetpu_section: dict | None = None
) -> dict:
    V, E, H = source.dims
    key_input = "key/dense" in source.weights
    meta = {
        "format": KEY_INPUT_FORMAT if key_input else 1,
        "variant": variant,
        "vocab": events.layout(conditioned=conditioning.accepts(V)),
        "ticks_per_beat": events.TICKS_PER_BEAT,
        "inputs": tmap.inputs,
        "outputs": tmap.outputs,
        "states": [{"name": n, "shape": [1, H]} for n in stepmodel.STATE_NAMES],
        "cell_clip": source.cell_clip,
        "config": source.config,
        "metrics": metrics,
        "corpus": source.config.get("corpus"),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if conditioning.accepts(V):
        meta["conditioning"] = conditioning.describe()  # how the player feeds the KEY tokens
    elif key_input:
        meta["conditioning"] = conditioning.describe("key_input")  # how the player sets the key input
    if edgetpu_section:
        meta["edgetpu"] = edgetpu_section
    return meta


def _keras_latency(source: Source, tokens: np.ndarray, steps: int) -> dict | None:
    if source.keras_model is None:
        return None
    best = None
    for jit in (False, True):
        try:
            fn = keras_step_function(source.keras_model, jit_compile=jit)
            zero = tuple(np.zeros(source.dims[2], np.float32) for _ in range(4))
            state = [zero + ((conditioning.NONE,) if "key/dense" in source.weights else ())]

            def step(t, fn=fn, state=state):
                _, state[0] = fn(t, state[0])

            lat = fidelity.latency(step, tokens, n_steps=steps, warmup=20)
        except Exception as exc:  # XLA may be unavailable; the plain call is the baseline
            log.info("keras step (jit_compile=%s) not measured: %s", jit, exc)
            continue
        lat["method"] = "tf.function" + (" (jit_compile)" if jit else "")
        if best is None or lat["median_us"] < best["median_us"]:
            best = lat
    return best


def build(source: Source, out: Path, settings: Settings = Settings(), say: Callable[[str], None] = print) -> dict:
    """Convert, measure, choose, write the bundle and the fidelity report; returns the report."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    V, E, H = source.dims
    names = list(stepmodel.CPU_VARIANTS) + (["edgetpu_input"] if settings.edgetpu else [])
    if settings.variant not in ("auto",) + tuple(names):
        raise ValueError(f"unknown variant {settings.variant!r}; choose from {', '.join(VARIANT_CHOICES)}")
    ref = Reference(source.weights, source.cell_clip)
    t0 = time.time()

    say(f"calibrating on rollouts ({settings.calibration_samples} samples) ...")
    samples = calibrate.collect(ref, source.train_pieces, n_samples=settings.calibration_samples, seed=settings.seed)
    models: dict[str, bytes] = {}
    for name in names:
        rep = calibrate.dataset(samples, V, onehot=(name == "edgetpu_input"))
        models[name] = stepmodel.convert(source.weights, source.cell_clip, name, rep)
        say(f"converted {name}: {len(models[name]):,} bytes")
    tmaps = {name: stepmodel.tensor_map(model) for name, model in models.items()}

    report: dict = {
        "run": str(source.run_dir) if source.run_dir else None,
        "bundle": str(out),
        "interpreter": fidelity.backend(),
        "dims": {"vocab": V, "embed": E, "hidden": H},
        "cell_clip": source.cell_clip,
        "calibration": {
            "samples": len(samples),  # half teacher-forced, half free-running
            "max_abs_cell": round(max(float(np.abs(st[i]).max()) for _, st in samples for i in (1, 3)), 3),
            **({"keys": _key_shares(samples)} if ref.keyed else {}),
        },
    }
    roll_tokens, roll_logits = _reference_rollout(source, ref, settings, report)
    report["variants"] = {}
    for name, model in models.items():
        sm = fidelity.step_model(model, bundle_meta(source, name, tmaps[name], {}))
        row = {"size_bytes": len(model), "ops": fidelity.model_ops(model)}
        row["latency"] = fidelity.latency(sm.step, roll_tokens, n_steps=settings.latency_steps)
        row["test"] = fidelity.test_nll(sm, source.test_pieces, settings.max_test_tokens)
        row["agreement"] = fidelity.agreement(sm, roll_tokens, roll_logits)
        report["variants"][name] = row
        say(
            f"measured {name}: nll {row['test']['nll']} agreement {row['agreement']['argmax_agreement']} "
            f"median {row['latency']['median_us']} us"
        )
    if settings.variants_dir is not None:
        stem = out.name.split(".")[0]
        Path(settings.variants_dir).mkdir(parents=True, exist_ok=True)
        for name, model in models.items():
            meta = bundle_meta(source, name, tmaps[name], _interpreter_metrics(report["variants"][name]))
            write_bundle(Path(settings.variants_dir) / f"{stem}.{name}.cadenza", meta, model)

    report["keras_latency"] = _keras_latency(source, roll_tokens, settings.keras_latency_steps)
    chosen = choose_variant(report["variants"]) if settings.variant == "auto" else settings.variant
    report["bundled"] = chosen
    row = report["variants"][chosen]
    if report["keras_latency"]:
        report["speedup_vs_keras"] = round(report["keras_latency"]["median_us"] / row["latency"]["median_us"], 1)
        report["speedup_goal_met"] = report["speedup_vs_keras"] >= SPEEDUP_GOAL

    edgetpu_section, edgetpu_model = None, None
    if settings.edgetpu:
        edgetpu_section, edgetpu_model = _edgetpu(models["edgetpu_input"], report, out, say)
    metrics = {k: source.report[k] for k in REPORT_METRICS if k in source.report}
    metrics.update(_interpreter_metrics(row))
    write_bundle(
        out, bundle_meta(source, chosen, tmaps[chosen], metrics, edgetpu_section), models[chosen], edgetpu_model
    )
    load_bundle(out)  # what we wrote must read back
    report["seconds"] = round(time.time() - t0, 1)
    fidelity_path(out).write_text(json.dumps(report, indent=1) + "\n")
    say(table(report))
    say(f"wrote {out} ({chosen}) and {fidelity_path(out)}")
    return report


def _reference_rollout(source: Source, ref: Reference, settings: Settings, report: dict):
    """The trained model's own free-running rollout (Keras where there is a Keras model): the yardstick
    for agreement, and the token stream the latencies are timed on."""
    if source.keras_model is not None:
        ref_step, report["reference"] = keras_step_function(source.keras_model), "keras"
    else:
        ref_step, report["reference"] = ref.step, "numpy"
    tokens, logits = fidelity.reference_rollout(
        ref_step, ref.zero_state(), events.START, settings.agreement_steps, seed=settings.seed
    )
    if report["reference"] == "keras":  # the exported weights must be the model: the numpy step against Keras
        state, worst = ref.zero_state(), 0.0
        for t, lg in zip(tokens[:200], logits[:200]):
            mine, state = ref.step(int(t), state)
            worst = max(worst, float(np.max(np.abs(mine - lg))))
        report["numpy_vs_keras_max_abs_logit_diff"] = round(worst, 5)
    return tokens, logits


def _key_shares(samples: list) -> dict:
    """How many calibration samples ran with a key, and with none (a key input model)."""
    from collections import Counter

    count = Counter(int(st[4]) != conditioning.NONE for _, st in samples)
    return {"with_key": count[True], "with_none": count[False]}


def _interpreter_metrics(row: dict) -> dict:
    """A variant's measured figures, as model.json's metrics carry them."""
    return {
        "interpreter_test_nll": row["test"]["nll"],
        "interpreter_test_tokens": row["test"]["tokens"],
        "interpreter_argmax_agreement": row["agreement"]["argmax_agreement"],
        "step_latency_us_median": row["latency"]["median_us"],
    }


def choose_variant(rows: dict) -> str:
    """The smallest CPU variant whose test NLL is within NLL_TOLERANCE of fp32 (fp32 itself otherwise)."""
    base = rows["fp32"]["test"]["nll"]
    if base is None:  # no test data: fall back to agreement with the reference
        ok = [n for n in stepmodel.CPU_VARIANTS if rows[n]["agreement"]["argmax_agreement"] >= 0.98]
    else:
        ok = [n for n in stepmodel.CPU_VARIANTS if rows[n]["test"]["nll"] <= base + NLL_TOLERANCE * abs(base)]
    return min(ok or ["fp32"], key=lambda n: rows[n]["size_bytes"])


def _edgetpu(model: bytes, report: dict, out: Path, say) -> tuple[dict | None, bytes | None]:
    ops = fidelity.model_ops(model)
    bad = edgetpu.unsupported_ops(ops)
    section = {"ops": ops, "unsupported_ops": bad}
    report["edgetpu"] = section
    if bad:
        say(f"Edge TPU model has ops the Edge TPU lacks: {', '.join(bad)}; not compiled")
        return None, None
    tmap = stepmodel.tensor_map(model)
    if edgetpu.compiler_path() is None:
        path = out.with_name(out.name.split(".")[0] + "_edgetpu_input.tflite")
        path.write_bytes(model)
        section["compiled"] = False
        section["input_model"] = str(path)
        say(edgetpu.missing_compiler_message(path, out))
        return None, None
    compiled, compiler_log = edgetpu.compile_model(model)
    section.update({"compiled": True, "compiler_log": compiler_log})
    say(compiler_log.strip())
    return {"inputs": tmap.inputs, "outputs": tmap.outputs, "compiler_log": compiler_log}, compiled


def add_edgetpu(bundle_path: Path, compiled_path: Path, input_model: Path | None = None) -> Path:
    """Re-pack a bundle with an Edge TPU model compiled elsewhere (tensor names from the uncompiled input)."""
    bundle = load_bundle(bundle_path)
    compiled = Path(compiled_path).read_bytes()
    if input_model is None:  # edgetpu_compiler writes NAME_edgetpu.tflite beside NAME.tflite
        name = Path(compiled_path).name
        input_model = Path(compiled_path).with_name(name[: -len("_edgetpu.tflite")] + ".tflite")
    tmap = stepmodel.tensor_map(Path(input_model).read_bytes())
    meta = dict(bundle.meta)
    meta["edgetpu"] = {"inputs": tmap.inputs, "outputs": tmap.outputs, "compiled_from": str(input_model)}
    return write_bundle(bundle_path, meta, bundle.model, compiled)


def table(report: dict) -> str:
    """The report as a text table, one row per variant."""
    head = (
        f"{'variant':<14}{'size KB':>9}{'median us':>11}{'p99 us':>9}{'test NLL':>10}{'tokens':>8}{'agree':>7}"
        f"{'max|dl|':>9}  ops"
    )
    lines = [head, "-" * len(head)]
    for name, r in report["variants"].items():
        mark = "*" if name == report.get("bundled") else " "
        nll = r["test"]["nll"]
        lines.append(
            f"{mark}{name:<13}{r['size_bytes'] / 1024:>9.1f}{r['latency']['median_us']:>11.1f}"
            f"{r['latency']['p99_us']:>9.1f}{(f'{nll:.4f}' if nll is not None else '-'):>10}{r['test']['tokens']:>8}"
            f"{r['agreement']['argmax_agreement']:>7.3f}{r['agreement']['max_abs_logit_diff']:>9.3f}"
            f"  {' '.join(r['ops'])}"
        )
    k = report.get("keras_latency")
    if k:
        lines.append(
            f"keras one-step call ({k['method']}): median {k['median_us']:.1f} us, p99 {k['p99_us']:.1f} us; "
            f"bundled variant is {report.get('speedup_vs_keras')}x faster"
        )
    lines.append(
        f"* bundled: {report.get('bundled')}  (interpreter {report['interpreter']}, 1 thread; "
        f"agreement vs {report['reference']} over {report['variants'][report['bundled']]['agreement']['steps']} steps)"
    )
    return "\n".join(lines)
