"""Training throughput of a preset on this machine: tokens per second of the real training step.

    .venv/bin/python bench/train_speed.py --preset default --batches 30

Times the same compiled step `train.fit` uses (forward, backward, Adam update,
state carried) on windows of real chorale tokens, after two warm-up batches.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--batches", type=int, default=30)
    a = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from cadenza.train import batches
    from cadenza.train.config import make_config
    from cadenza.train.corpus import load_corpus, split_pieces
    from cadenza.train.fit import _loss
    from cadenza.train.model import build_model, zero_states

    cfg = make_config(a.preset)
    train_set, _, _ = split_pieces(load_corpus(cfg.corpus), seed=cfg.split_seed)
    rng = np.random.default_rng(0)
    streams = batches.epoch_streams([p.tokens for p in train_set], cfg.batch_size, cfg.window, cfg.transpositions, rng)
    model = build_model(cfg)
    opt = keras.optimizers.Adam(cfg.learning_rate, clipnorm=cfg.clipnorm)

    @tf.function(reduce_retracing=True)
    def step(x, y, states):
        with tf.GradientTape() as tape:
            logits, *new = model([x, *states], training=True)
            loss = _loss(y, logits)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss, new

    states = zero_states(cfg.batch_size, cfg.hidden)
    wins = list(batches.windows(streams, cfg.window))
    for x, y in wins[:2]:
        _, states = step(x, y, states)
    t0 = time.perf_counter()
    n = 0
    for x, y in wins[2 : 2 + a.batches]:
        _, states = step(x, y, states)
        n += x.size
    dt = time.perf_counter() - t0
    per_epoch = sum(len(p.tokens) for p in train_set) / (n / dt)
    print(
        f"preset {a.preset}: {n / dt:,.0f} tokens/s ({n} tokens in {dt:.1f} s); "
        f"one epoch of {len(train_set)} pieces ~ {per_epoch:.0f} s; os.cpu_count()={os.cpu_count()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
