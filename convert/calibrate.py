"""Representative (token, state) pairs for int8 calibration.

The int8 model quantizes the carried state too, so its ranges must cover the
states the player will really meet: teacher-forced runs over training pieces
(the keyboard's phrases) and long free-running rollouts (the model answering
itself for minutes, where the cell state drifts to the clip).
"""

from __future__ import annotations

import numpy as np

from cadenza.player import events

from .reference import Reference, free_run, teacher_forced
from .stepmodel import STATE_NAMES


def collect(
    ref: Reference,
    pieces: list,
    n_samples: int = 1000,
    teacher_tokens: int = 4000,
    free_steps: int = 6000,
    n_free_runs: int = 2,
    seed: int = 0,
) -> list[tuple[int, tuple]]:
    """(token, state before it) pairs: half teacher-forced, half free-running, subsampled to n_samples."""
    rng = np.random.default_rng(seed)
    forced: list = []
    order = rng.permutation(len(pieces)) if pieces else []
    for i in order:
        if len(forced) >= teacher_tokens:
            break
        toks = pieces[i][: teacher_tokens - len(forced)]
        forced += [(t, s) for t, s, _ in teacher_forced(ref.step, toks, ref.zero_state()) if t < events.VOCAB_SIZE]
    free: list = []
    for _r in range(n_free_runs):
        state, first = ref.zero_state(), events.START
        if pieces:  # prime with the opening of a training piece, as the player primes with a phrase
            piece = pieces[int(rng.integers(len(pieces)))][:64]
            while len(piece) > 1 and piece[-1] >= events.VOCAB_SIZE:  # (a KEY token is no step to run on from)
                piece = piece[:-1]
            for t in piece[:-1]:
                _, state = ref.step(int(t), state)
            first = int(piece[-1])
        free += [(t, s) for t, s, _ in free_run(ref.step, first, free_steps, state, rng)]
    half = n_samples // 2

    def pick(xs: list, k: int) -> list:
        return [xs[j] for j in sorted(rng.choice(len(xs), size=min(k, len(xs)), replace=False))] if xs else []

    return pick(forced, half) + pick(free, n_samples - half)


def dataset(samples: list[tuple[int, tuple]], vocab: int, onehot: bool = False):
    """A representative_dataset callable for the TFLite converter (with a key input model's key too: the
    state's last item)."""
    from cadenza.player.conditioning import N_INPUT_KEYS

    def gen():
        for token, state in samples:
            if onehot:
                x = np.zeros((1, vocab), np.float32)
                x[0, token] = 1.0
                item = {"onehot": x}
            else:
                item = {"token": np.array([[token]], np.int32)}
            if len(state) > len(STATE_NAMES):
                if onehot:
                    item["keyhot"] = np.zeros((1, N_INPUT_KEYS), np.float32)
                    item["keyhot"][0, int(state[-1])] = 1.0
                else:
                    item["key"] = np.array([[int(state[-1])]], np.int32)
            for name, s in zip(STATE_NAMES, state):
                item[name] = np.asarray(s, np.float32)[None]
            yield item

    return gen
