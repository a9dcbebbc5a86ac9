"""How close each converted variant is to the trained model, and how fast it steps.

Everything is measured through player.runtime.StepModel, the code the player
runs, with one interpreter thread:

- latency: median and p99 of single steps over a long token stream
- test NLL: whole test pieces stepped one token at a time, state carried within a piece
- argmax agreement: a free-running rollout of the trained model, fed token by token
  to the variant; the share of steps where both pick the same next token
"""

from __future__ import annotations

import time

import numpy as np

from cadenza.player import events
from cadenza.player.bundle import Bundle
from cadenza.player.runtime import StepModel, backend_name, make_interpreter

from .reference import free_run, log_softmax


def backend() -> str:
    return backend_name()


def model_ops(model: bytes) -> list[str]:
    """The builtin op names of a TFLite model, sorted, read before any delegate is applied."""
    interp = make_interpreter(model_content=model)
    return sorted({op["op_name"] for op in interp._get_ops_details()} - {"DELEGATE"})


def step_model(model: bytes, meta: dict, num_threads: int = 1) -> StepModel:
    return StepModel(Bundle(path=None, meta=meta, model=model), num_threads=num_threads, use_edgetpu=False)


def latency(step, tokens: np.ndarray, n_steps: int = 5000, warmup: int = 50) -> dict:
    """Per-step wall time in microseconds (median, p99) of `step(token)` over n_steps, cycling through tokens."""
    if len(tokens) == 0:
        tokens = np.array([events.START], np.int32)
    for t in tokens[:warmup]:
        step(int(t))
    times = np.empty(n_steps)
    clock = time.perf_counter
    for i in range(n_steps):
        t = int(tokens[i % len(tokens)])
        t0 = clock()
        step(t)
        times[i] = clock() - t0
    return {
        "median_us": round(float(np.median(times)) * 1e6, 2),
        "p99_us": round(float(np.percentile(times, 99)) * 1e6, 2),
        "steps": n_steps,
    }


def test_nll(model: StepModel, pieces: list, max_tokens: int | None = None) -> dict:
    """Mean negative log-likelihood (nats/token) of the test pieces, state carried within each piece."""
    total, count = 0.0, 0
    logits = np.empty(model.vocab_size, np.float32)
    for piece in pieces:
        model.reset()
        for prev, nxt in zip(piece[:-1], piece[1:]):
            if max_tokens is not None and count >= max_tokens:
                break
            model.step(int(prev), out=logits)
            if int(nxt) >= events.VOCAB_SIZE:
                continue  # a KEY token: an input, never scored (as in training)
            total -= log_softmax(logits)[int(nxt)]
            count += 1
        if max_tokens is not None and count >= max_tokens:
            break
    return {"nll": round(total / max(count, 1), 5) if count else None, "tokens": count}


def reference_rollout(step, zero_state, first: int, n_steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A free-running rollout of the trained model: (tokens fed, logits after each) [n], [n, V]."""
    rng = np.random.default_rng(seed)
    toks, logits = [], []
    for t, _, lg in free_run(step, first, n_steps, zero_state, rng):
        toks.append(t)
        logits.append(lg)
    return np.asarray(toks, np.int32), np.asarray(logits, np.float32)


def agreement(model: StepModel, tokens: np.ndarray, ref_logits: np.ndarray) -> dict:
    """Argmax agreement and the largest logit difference against a reference rollout."""
    model.reset()
    same, worst = 0, 0.0
    logits = np.empty(model.vocab_size, np.float32)
    for t, ref in zip(tokens, ref_logits):
        model.step(int(t), out=logits)
        same += int(np.argmax(logits) == np.argmax(ref))
        worst = max(worst, float(np.max(np.abs(logits - ref))))
    return {
        "argmax_agreement": round(same / len(tokens), 4),
        "max_abs_logit_diff": round(worst, 4),
        "steps": len(tokens),
    }
