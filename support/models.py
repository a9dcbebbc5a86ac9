"""A tiny training run and its conversion, made once per process: shared by the tests and benches.

    run_dir = tiny_run(root)           # runs/tiny: model.keras (random weights), config.json, report.json
    paths = converted()                # cadenza-convert on it, every variant also as its own bundle

The run is what cadenza-train writes (train.model.build_model with the `tiny`
preset), on a corpus of a few synthetic MIDI files, with random weights scaled
up so the model has opinions (an untrained one predicts nearly uniformly).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from cadenza.player import events

TINY = {"embed_dim": 16, "hidden": 32}


def synthetic_corpus(folder: Path, n_pieces: int = 8, seed: int = 0) -> Path:
    """A folder of short, distinct MIDI files (random walks of chords)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_pieces):
        notes, t, root = [], 0, int(rng.integers(48, 72))
        for _ in range(40):
            dur = int(rng.choice([6, 12, 24]))
            root = int(np.clip(root + rng.integers(-4, 5), 40, 80))
            for iv in (0, 4, 7)[: int(rng.integers(1, 4))]:
                notes.append(events.Note(t, root + iv, t + dur, int(rng.choice([60, 92]))))
            t += dur
        events.tokens_to_midi(events.encode_notes(notes)).save(folder / f"piece{k:02d}.mid")
    return folder


def tiny_run(
    root: Path,
    seed: int = 0,
    weight_scale: float = 3.0,
    preset: str = "tiny",
    sizes: dict | None = None,
    name: str = "tiny",
) -> Path:
    """A run directory as cadenza-train leaves it, with a random model (tiny unless `preset`/`sizes` say)."""
    from cadenza.train.config import make_config
    from cadenza.train.model import build_model

    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    corpus = synthetic_corpus(root / "corpus", seed=seed)
    cfg = make_config(preset, corpus=str(corpus), **(TINY if sizes is None and preset == "tiny" else sizes or {}))
    model = build_model(cfg)
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            (rng.standard_normal(w.shape) * weight_scale / np.sqrt(w.shape[0] if w.ndim > 1 else 10)).astype(np.float32)
            for w in model.get_weights()
        ]
    )
    model.save(run_dir / "model.keras")
    cfg.save(run_dir / "config.json")
    report = {
        "test_nll": 3.5,
        "val_nll": 3.4,
        "test_accuracy": 0.2,
        "baseline_test_nll": 3.9,
        "baseline_order": 3,
        "tokens_per_second": 1000.0,
        "max_abs_cell_rollout": 9.0,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return run_dir


@dataclasses.dataclass(frozen=True)
class Converted:
    root: Path
    run_dir: Path
    bundle: Path  # the auto-chosen bundle, with the Edge TPU input model beside it
    report: dict  # the fidelity report
    variants: dict  # variant name -> its own bundle
    edgetpu_input: Path  # the int8 one-hot model for edgetpu_compiler


@functools.lru_cache(maxsize=None)
def converted() -> Converted:
    """Convert the tiny run once per process (every variant, the Edge TPU model too)."""
    from cadenza.convert.__main__ import main

    root = Path(tempfile.mkdtemp(prefix="cadenza-convert-"))
    atexit.register(shutil.rmtree, root, True)
    run_dir = tiny_run(root)
    out = root / "models" / "tiny.cadenza"
    rc = main(
        [
            str(run_dir),
            "--out",
            str(out),
            "--edgetpu",
            "--latency-steps",
            "500",
            "--agreement-steps",
            "300",
            "--keras-steps",
            "50",
            "--calibration-samples",
            "300",
            "--save-variants",
            str(root / "variants"),
        ]
    )
    if rc != 0:
        raise RuntimeError(f"cadenza-convert exited {rc}")
    report = json.loads(out.with_name("tiny.fidelity.json").read_text())
    variants = {p.name.split(".")[1]: p for p in sorted((root / "variants").glob("tiny.*.cadenza"))}
    return Converted(root, run_dir, out, report, variants, out.with_name("tiny_edgetpu_input.tflite"))
