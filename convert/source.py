"""What the converter starts from: a training run directory, read into weights, settings and data.

    runs/NAME/model.keras     the trained Keras model
    runs/NAME/config.json     the training settings (vocab_size, embed_dim, hidden, cell_clip, corpus, ...)
    runs/NAME/report.json     the trainer's metrics (test_nll, baseline_test_nll, ...)

The model and the corpus are read through train.model and train.corpus, so the
converter sees exactly the weights and the test split the trainer used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from .reference import dims

log = logging.getLogger(__name__)

RUN_FILES = ("model.keras", "config.json", "report.json")


class SourceError(ValueError):
    """A run directory the converter cannot use; one line naming the path and the problem."""


@dataclasses.dataclass
class Source:
    """Trained weights plus what the fidelity checks need."""

    weights: dict  # train.model.export_weights names -> arrays
    config: dict
    report: dict
    train_pieces: list  # token arrays (int32), for calibration
    test_pieces: list  # token arrays, for the test NLL
    keras_model: object | None = None  # the trained model itself, for the agreement and speed comparison
    run_dir: Path | None = None

    @property
    def cell_clip(self) -> float:
        return float(self.config["cell_clip"])

    @property
    def dims(self) -> tuple[int, int, int]:
        return dims(self.weights)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object")
    return data


def check_run_dir(run_dir: Path) -> None:
    if not run_dir.exists():
        raise SourceError(f"{run_dir}: no such run directory (train one with cadenza-train)")
    if not run_dir.is_dir():
        raise SourceError(f"{run_dir}: not a directory")
    missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
    if missing:
        raise SourceError(f"{run_dir}: missing {', '.join(missing)} (is the training run finished?)")


def keras_step_function(model, jit_compile: bool = False) -> Callable:
    """The Keras model as a one-step call: a tf.function around model([token, h1, c1, h2, c2]) (with the key
    id after the token for a key input model, whose state then ends with it, as reference.Reference's)."""
    import tensorflow as tf

    from cadenza.player import conditioning
    from cadenza.train.model import is_keyed

    if not is_keyed(model):

        @tf.function(reduce_retracing=True, jit_compile=jit_compile)
        def call(token, h1, c1, h2, c2):
            return model([token, h1, c1, h2, c2], training=False)

        def step(token, state):
            out = call(np.array([[token]], np.int32), *(s[None].astype(np.float32) for s in state))
            logits, h1, c1, h2, c2 = (np.asarray(t) for t in out)
            return logits.reshape(-1), (h1[0], c1[0], h2[0], c2[0])

        return step

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def call_keyed(token, key, h1, c1, h2, c2):
        return model([token, key, h1, c1, h2, c2], training=False)

    def step_keyed(token, state):
        key, is_step = conditioning.held(int(token), int(state[4]))
        if not is_step:
            return None, tuple(state[:4]) + (key,)
        ins = (np.array([[token]], np.int32), np.array([[key]], np.int32))
        out = call_keyed(*ins, *(s[None].astype(np.float32) for s in state[:4]))
        logits, h1, c1, h2, c2 = (np.asarray(t) for t in out)
        return logits.reshape(-1), (h1[0], c1[0], h2[0], c2[0], key)

    return step_keyed


def split_like_training(config: dict) -> tuple[list, list]:
    """The training and test pieces (token arrays) of the run, split exactly as the trainer split them."""
    from cadenza.train import corpus as corpus_mod
    from cadenza.train.config import TrainConfig

    try:
        train, _val, test = corpus_mod.splits_for(TrainConfig.from_dict(config))
    except (corpus_mod.CorpusError, ValueError) as exc:
        raise SourceError(f"corpus {config['corpus']!r}: {exc}") from None
    as_arrays = lambda ps: [np.asarray(p.tokens, np.int32) for p in ps]  # noqa: E731
    return as_arrays(train), as_arrays(test)


def load_source(run_dir: str | Path, with_keras: bool = True) -> Source:
    """Read a run directory through train.model and train.corpus."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    config = _read_json(run_dir / "config.json")
    report = _read_json(run_dir / "report.json")
    for key in ("cell_clip", "corpus"):
        if key not in config:
            raise SourceError(f"{run_dir / 'config.json'}: no {key!r}")
    from cadenza.train import model as model_mod

    try:
        keras_model, config_loaded = model_mod.load_run(run_dir)
        weights = {k: np.asarray(v, np.float32) for k, v in model_mod.export_weights(keras_model).items()}
    except Exception as exc:  # a damaged or foreign model.keras fails in many ways inside Keras
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{run_dir / 'model.keras'}: cannot load the trained model ({first})") from None
    config = {**config, **(config_loaded or {})}
    V, E, H = dims(weights)
    if config.get("vocab_size", V) != V:
        raise SourceError(f"{run_dir}: config says vocab_size {config['vocab_size']}, the model has {V}")
    train, test = split_like_training(config)
    return Source(
        weights=weights,
        config=config,
        report=report,
        train_pieces=train,
        test_pieces=test,
        keras_model=keras_model if with_keras else None,
        run_dir=run_dir,
    )
