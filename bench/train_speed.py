"""Training throughput of a preset on this machine: tokens per second of the real training step.

    .venv/bin/python bench/train_speed.py --preset default --batches 30 [--set jit=true]

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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a training setting, e.g. jit=true")
    a = p.parse_args(argv)

    import keras
    import numpy as np

    from cadenza.train.config import make_config, parse_assignment
    from cadenza.train.corpus import load_corpus, split_pieces
    from cadenza.train.fit import draw_epoch, step_windows, train_step_fn
    from cadenza.train.model import build_model, zero_states

    cfg = make_config(a.preset, **dict(parse_assignment(t) for t in a.set))
    train_set, _, _ = split_pieces(load_corpus(cfg.corpus), seed=cfg.split_seed)
    rng = np.random.default_rng(0)
    streams, keys = draw_epoch(cfg, [p.tokens for p in train_set], rng)  # as train.fit draws an epoch
    model = build_model(cfg)
    opt = keras.optimizers.Adam(cfg.learning_rate, clipnorm=cfg.clipnorm)

    step = train_step_fn(model, opt, cfg)
    states = zero_states(cfg.batch_size, cfg.hidden)
    wins = list(step_windows(streams, cfg.window, keys))
    t0 = time.perf_counter()
    for x, k, y in wins[:2]:
        _, states = step(x, k, y, states)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for x, k, y in wins[2 : 2 + a.batches]:
        loss, states = step(x, k, y, states)
        float(loss)
        n += x.size
    dt = time.perf_counter() - t0
    per_epoch = sum(len(p.tokens) for p in train_set) / (n / dt)
    print(
        f"preset {a.preset} {' '.join(a.set)}: {n / dt:,.0f} tokens/s ({n} tokens in {dt:.1f} s, "
        f"the first two windows {warm:.1f} s); "
        f"one epoch of {len(train_set)} pieces ~ {per_epoch:.0f} s; os.cpu_count()={os.cpu_count()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
