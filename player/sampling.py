"""Choosing the next token from the model's logits: temperature and top-p (nucleus).

numpy only, with one seeded Generator, so a seed gives the same piece every time.
The player samples once per token for hours, so the work is done on the allowed
tokens only (the engine passes one of a few fixed masks; their indices are kept,
so a mask must not be changed in place once used)
and without normalizing: one uniform draw against the unnormalized cumulative sum.
"""

from __future__ import annotations

import numpy as np


class Sampler:
    """Temperature + top-p sampling. temperature <= 0 means the most likely token."""

    def __init__(self, temperature: float = 1.0, top_p: float = 0.95, seed: int | None = None) -> None:
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.rng = np.random.default_rng(seed)
        self._masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (mask, its indices)

    def configure(self, temperature: float, top_p: float) -> None:
        """New settings (a reload); the random stream goes on."""
        self.temperature = float(temperature)
        self.top_p = float(top_p)

    def _allowed_index(self, allowed: np.ndarray) -> np.ndarray:
        """[K] indices of the allowed tokens, kept per mask object (masks are not changed in place)."""
        hit = self._masks.get(id(allowed))
        if hit is None or hit[0] is not allowed:
            if len(self._masks) > 16:
                self._masks.clear()
            hit = self._masks[id(allowed)] = (allowed, np.flatnonzero(allowed))
        return hit[1]

    def sample(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> int:
        """One token from `logits` [V]; `allowed` [V] bool masks out the rest."""
        logits = np.asarray(logits)
        if allowed is not None:
            index = self._allowed_index(allowed)
            if index.size == 0:  # nothing allowed: the least harmful choice is the first token
                return 0
            z = logits[index].astype(np.float64)  # [K]
        else:
            index = None
            z = logits.astype(np.float64)
        top = z.max()
        if not np.isfinite(top):  # all -inf, or NaN from a broken model: uniform over what is allowed
            z = np.zeros_like(z)
            top = 0.0
        if self.temperature <= 1e-6:
            i = int(z.argmax())
            return int(index[i]) if index is not None else i
        z -= top
        z *= 1.0 / self.temperature
        p = np.exp(z, out=z)  # unnormalized; the largest is 1
        if self.top_p < 1.0:
            order = (-p).argsort(kind="stable")  # most likely first
            cum = p[order].cumsum()
            # smallest set reaching top_p of the total
            keep = min(int(cum.searchsorted(max(self.top_p, 1e-9) * cum[-1])) + 1, len(cum))
            order, cum = order[:keep], cum[:keep]
        else:
            order, cum = None, p.cumsum()
        # inverse CDF: one uniform draw, a binary search (cheaper than Generator.choice)
        i = min(int(cum.searchsorted(self.rng.random() * cum[-1], side="right")), len(cum) - 1)
        if order is not None:
            i = int(order[i])
        return int(index[i]) if index is not None else i
