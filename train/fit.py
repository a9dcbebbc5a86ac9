"""The training loop: truncated BPTT with carried state, early stopping, best model kept."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cadenza.player import events

from . import batches, corpus
from .config import TrainConfig
from .model import build_model, is_keyed, zero_states

log = logging.getLogger(__name__)


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    train_tokens: int = 0
    train_seconds: float = 0.0
    best_epoch: int = -1
    stopped: str = ""


def _loss(y, logits):
    """Mean cross-entropy over the music's targets (KEY tokens are inputs: never a target)."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    scored = tf.cast(y < events.VOCAB_SIZE, ce.dtype)
    return tf.reduce_sum(ce * scored) / tf.maximum(tf.reduce_sum(scored), 1.0)


def evaluate(
    model: keras.Model, pieces: list[np.ndarray], window: int = 512, chunk: int = 64
) -> tuple[float, float, int]:
    """(mean NLL in nats/token, top-1 accuracy, tokens scored): each piece from a zero state (a key input
    model told the keys of the pieces' KEY tokens, as conditioning.hold holds them)."""
    hidden = model.get_layer("lstm1").cell.units
    step = _eval_fn(model)
    keyed = is_keyed(model)
    total_nll, total_hit, total_n = 0.0, 0, 0
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # similar lengths pad less
    for g in range(0, len(order), chunk):
        group = [pieces[i] for i in order[g : g + chunk]]
        if keyed:
            arr, ids, mask = batches.padded_keyed(group)
        else:
            (arr, mask), ids = batches.padded(group), None
        states = zero_states(len(arr), hidden)
        for a in range(0, arr.shape[1] - 1, window):
            x = arr[:, a : a + window]
            y = arr[:, a + 1 : a + window + 1]
            x = x[:, : y.shape[1]]
            k = x if ids is None else ids[:, a : a + y.shape[1]]  # (unused without a key input)
            m = mask[:, a : a + y.shape[1]]
            nll, hit, states = step(x, k, y, m, states)
            total_nll += float(nll)
            total_hit += int(hit)
            total_n += int(m.sum())
    return total_nll / max(total_n, 1), total_hit / max(total_n, 1), total_n


def _eval_fn(model):
    if getattr(model, "_cadenza_eval", None) is not None:
        return model._cadenza_eval
    hidden = model.get_layer("lstm1").cell.units
    keyed = is_keyed(model)
    spec = [
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.bool),
        [tf.TensorSpec([None, hidden], tf.float32)] * 4,
    ]

    @tf.function(input_signature=spec)
    def step(x, k, y, m, states):
        logits, *new = model([x, k, *states] if keyed else [x, *states], training=False)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        m = tf.cast(m, tf.float32)
        hit = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32)
        return tf.reduce_sum(ce * m), tf.reduce_sum(hit * m), new

    model._cadenza_eval = step
    return step


def train_step_fn(model: keras.Model, opt, cfg: TrainConfig):
    """The compiled training step (forward, backward, the optimizer's update; state carried between windows):
    (x, k, y, states) -> (loss, new states); k, the key ids, is unused by a model without a key input. With
    cfg.jit it is compiled by XLA (every window has the same shape, so it compiles once)."""

    @tf.function(reduce_retracing=True, jit_compile=cfg.jit)
    def train_step(x, k, y, states):
        with tf.GradientTape() as tape:
            logits, *new = model([x, k, *states] if cfg.key_input else [x, *states], training=True)
            loss = _loss(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, [tf.stop_gradient(s) for s in new]

    return train_step


def draw_epoch(
    cfg: TrainConfig, train_pieces: list[np.ndarray], rng: np.random.Generator, rehearse: list | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One epoch's training streams [batch, length], and with a key input the key ids beside them (else None):
    labels, key moves and the pieces told no key drawn anew, rehearsal mixed in, transposed and laid end to end."""
    pieces, min_tokens = train_pieces, cfg.min_epoch_tokens
    if cfg.key_input:  # labels (and key moves, and the pieces told no key) drawn anew for this epoch
        pieces = [
            corpus.rekeyed(p, cfg.key_shift, cfg.key_shift_bars, cfg.key_none, rng, cfg.key_modes) for p in train_pieces
        ]
    elif cfg.key_shift_bars:  # key moves and KEY tokens drawn anew for this epoch
        pieces = [corpus.reshifted(p, cfg.key_shift, cfg.key_shift_bars, rng) for p in train_pieces]
    if rehearse and cfg.rehearsal > 0:  # the new pieces, then the source's, in the set shares
        pieces, min_tokens = batches.rehearsal_mix(pieces, rehearse, cfg.rehearsal, min_tokens, rng), 0
    streams = batches.epoch_streams(
        pieces, cfg.batch_size, cfg.window, cfg.transpositions, rng, min_tokens, keyed=cfg.key_input
    )
    return streams if cfg.key_input else (streams, None)


def step_windows(streams: np.ndarray, window: int, key_streams: np.ndarray | None):
    """The (x, k, y) windows train_step takes; k is x again without a key input (unused there)."""
    for w in batches.windows(streams, window, key_streams):
        yield w if key_streams is not None else (w[0], w[0], w[1])


def cosine_step(cfg: TrainConfig, done: float) -> float:
    """lr_schedule "cosine": the step size when the share `done` of the time cap is gone (clamped to [0, 1])."""
    done = min(1.0, max(0.0, done))
    return cfg.learning_rate * (cfg.lr_floor + (1.0 - cfg.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * done)))


def fit(
    cfg: TrainConfig,
    train_pieces,
    val_pieces,
    out_dir: Path,
    progress: bool = True,
    init: keras.Model | None = None,
    rehearse: list | None = None,
) -> tuple[keras.Model, History]:
    """Train; the best model (by validation NLL) is saved to out_dir/model.keras as it appears.

    Ctrl-C stops the loop and keeps the best model so far.
    """
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg)
    if init is not None:  # fine-tuning: start from a trained model of the same shape
        model.set_weights(init.get_weights())
    opt = keras.optimizers.Adam(learning_rate=cfg.learning_rate, clipnorm=cfg.clipnorm)
    # Trained with bfloat16 matmuls, the model is evaluated and saved as its float32 twin (the same weights):
    # the validation loss that picks the best epoch is the one the float32 step model will have.
    twin = None if cfg.matmul_dtype == "float32" else build_model(replace(cfg, matmul_dtype="float32"))

    def kept() -> keras.Model:
        """The model to evaluate and save: the float32 twin given the trained weights, or the model itself."""
        if twin is None:
            return model
        twin.set_weights(model.get_weights())
        return twin

    hist = History()
    best = math.inf
    best_path = Path(out_dir) / "model.keras"

    train_step = train_step_fn(model, opt, cfg)

    budget = cfg.max_minutes * 60
    deadline = time.monotonic() + budget
    since_best = 0

    def anneal() -> None:  # lr_schedule "cosine": by the share of the time cap gone
        opt.learning_rate.assign(cosine_step(cfg, 1.0 - (deadline - time.monotonic()) / budget))

    try:
        for epoch in range(cfg.epochs):
            t0 = time.monotonic()
            streams, key_streams = draw_epoch(cfg, train_pieces, rng, rehearse)
            n_win = (streams.shape[1] - 1) // cfg.window
            states = zero_states(cfg.batch_size, cfg.hidden)
            losses = []
            bar = _bar(n_win, f"epoch {epoch + 1}/{cfg.epochs}", progress)
            for x, k, y in step_windows(streams, cfg.window, key_streams):
                if cfg.lr_schedule == "cosine":
                    anneal()
                try:
                    loss, states = train_step(x, k, y, states)
                except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as exc:
                    if not cfg.jit or hist.train_tokens:
                        raise
                    # XLA cannot compile the step here (before any update: nothing has changed yet)
                    log.warning("XLA did not compile the training step (%s); training without it", type(exc).__name__)
                    train_step = train_step_fn(model, opt, replace(cfg, jit=False))
                    loss, states = train_step(x, k, y, states)
                losses.append(float(loss))
                hist.train_tokens += x.size
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                if time.monotonic() > deadline:
                    break
            bar.close()
            hist.train_seconds += time.monotonic() - t0
            now = kept()
            val, acc, _ = evaluate(now, val_pieces)
            hist.train_loss.append(float(np.mean(losses)))
            hist.val_loss.append(val)
            hist.epoch_seconds.append(time.monotonic() - t0)
            log.info(
                "epoch %d: train %.4f  val %.4f nats/token  val acc %.3f  (%.0f s)",
                epoch + 1,
                hist.train_loss[-1],
                val,
                acc,
                hist.epoch_seconds[-1],
            )
            if val < best:
                best, since_best, hist.best_epoch = val, 0, epoch
                now.save(best_path)
            else:
                since_best += 1
                if cfg.lr_schedule == "plateau" and since_best % cfg.lr_patience == 0:
                    # halve the step size on a plateau: cheaper than a schedule tuned per corpus
                    opt.learning_rate.assign(opt.learning_rate * 0.5)
                    log.info("learning rate now %.2e", float(opt.learning_rate))
            if since_best >= cfg.patience:
                hist.stopped = f"early stop: no better validation loss in {cfg.patience} epochs"
                break
            if time.monotonic() > deadline:
                hist.stopped = f"time cap of {cfg.max_minutes:g} minutes"
                break
        else:
            hist.stopped = f"all {cfg.epochs} epochs"
    except KeyboardInterrupt:
        hist.stopped = "interrupted; best model so far kept"
        log.warning("interrupted: keeping the best model so far")
    if not best_path.exists():  # interrupted before the first evaluation
        kept().save(best_path)
    best_model = keras.models.load_model(best_path, compile=False)
    return best_model, hist


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="win", leave=False, dynamic_ncols=True)
