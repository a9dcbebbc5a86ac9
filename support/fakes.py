"""Fake step models for the player's tests (cadenza.player.interfaces.StepModel, as runtime.StepModel)."""

from __future__ import annotations

import numpy as np

from cadenza.player import events as ev


class ScriptModel:
    """Plays a fixed token script, whatever it hears.

    The state is the position in the script: it moves on when the model is fed the
    token it expected (or the one after, when that one was masked), so a rollback
    (set_state) replays the same tokens. Logits put +20 on the expected token and
    +10 on the next, so temperature 0 (or any sane top-p) follows the script.
    """

    vocab_size = ev.VOCAB_SIZE
    hidden = 1

    def __init__(self, script: list[int], loop: bool = True) -> None:
        self.script = [int(t) for t in script]
        self.loop = loop
        self.i = 0
        self.fed: list[int] = []

    def _at(self, k: int) -> int | None:
        if k < len(self.script) or self.loop:
            return self.script[k % len(self.script)]
        return None

    def _logits(self) -> np.ndarray:
        z = np.zeros(self.vocab_size, np.float32)
        for k, w in ((self.i + 1, 10.0), (self.i, 20.0)):  # a masked token gives way to the next
            if self._at(k) is not None:
                z[self._at(k)] = w
        return z

    def step(self, token: int) -> np.ndarray:
        self.fed.append(int(token))
        if int(token) == self._at(self.i):
            self.i += 1
        elif int(token) == self._at(self.i + 1):
            self.i += 2
        return self._logits()

    def reset(self) -> None:
        self.i = 0

    def get_state(self) -> tuple:
        return (np.array([self.i], np.float32),)

    def set_state(self, s) -> None:
        self.i = int(s[0][0])


class BigramModel:
    """A random bigram table with a little memory: next-token logits depend on the history."""

    vocab_size = ev.VOCAB_SIZE
    hidden = 8

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.table = rng.normal(0, 2.0, (self.vocab_size, self.vocab_size)).astype(np.float32)
        shifts = slice(ev.SHIFT_BASE, ev.SHIFT_BASE + 12)
        self.table[:, shifts] += 2.0  # short shifts often, so music moves on
        self.mix = rng.normal(0, 0.5, (self.hidden, self.vocab_size)).astype(np.float32)
        self.h = np.zeros(self.hidden, np.float32)

    def step(self, token: int) -> np.ndarray:
        t = int(token)
        self.h = np.tanh(0.8 * self.h + 0.3 * np.sin(t * (1 + np.arange(self.hidden)))).astype(np.float32)
        return self.table[t] + self.h @ self.mix

    def reset(self) -> None:
        self.h = np.zeros(self.hidden, np.float32)

    def get_state(self) -> tuple:
        return (self.h.copy(),)

    def set_state(self, s) -> None:
        self.h = np.asarray(s[0], np.float32).copy()
