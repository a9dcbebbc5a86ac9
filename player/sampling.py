"""Choosing the next token from the model's logits: temperature and top-p (nucleus).

numpy only, with one seeded Generator, so a seed gives the same piece every time.
"""

from __future__ import annotations

import numpy as np


class Sampler:
    """Temperature + top-p sampling. temperature <= 0 means the most likely token."""

    def __init__(self, temperature: float = 1.0, top_p: float = 0.95, seed: int | None = None) -> None:
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.rng = np.random.default_rng(seed)

    def sample(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> int:
        """One token from `logits` [V]; `allowed` [V] bool masks out the rest."""
        z = np.asarray(logits, dtype=np.float64)
        if allowed is not None:
            z = np.where(allowed, z, -np.inf)
        if not np.isfinite(z).any():
            z = np.zeros_like(z) if allowed is None else np.where(allowed, 0.0, -np.inf)
        if self.temperature <= 1e-6:
            return int(np.argmax(z))
        z = (z - z.max()) / self.temperature
        p = np.exp(z)
        p /= p.sum()
        if self.top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            cum = np.cumsum(p[order])
            keep = int(np.searchsorted(cum, max(self.top_p, 1e-9))) + 1  # smallest set reaching top_p
            order, cum = order[:keep], cum[:keep]
        else:
            order, cum = None, np.cumsum(p)
        # inverse CDF: one uniform draw, a binary search (cheaper than Generator.choice)
        i = min(int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right")), len(cum) - 1)
        return int(order[i]) if order is not None else i
