"""An n-gram baseline over event tokens: interpolated modified Kneser-Ney.

The number the LSTM has to beat. Same tokens, same splits, same unit (mean
negative log-likelihood per token, in nats, of every token after a sequence's
first); a model that does not beat a well-smoothed n-gram has learned little
beyond local patterns.

    best, by_order = select_order(train_seqs, val_seqs)          # {order: val nll}
    lm = KneserNey(best, VOCAB_SIZE).fit(train_seqs)
    lm.nll(test_seqs)

Smoothing (Chen & Goodman 1998, "modified" KN): each order k interpolates
discounted counts with order k-1,

    P_k(w | h) = (c(hw) - D_k(c(hw)) + g_k(h) P_{k-1}(w | h')) / c(h)
    g_k(h)     = D_k1 N1(h.) + D_k2 N2(h.) + D_k3 N3+(h.)

with three discounts per order from its count-of-counts, raw counts at the top
order and continuation counts (distinct left neighbours) below it, except for
n-grams that begin with START, which have no real left neighbour and keep raw
counts. Order 0 is uniform over the fixed vocabulary, so every token has a
probability above zero and every conditional distribution sums to one.

Counting is numpy over n-grams packed into uint64 codes (ceil(log2 V) bits per
token: 8 tokens of a 242-token vocabulary fill exactly 64 bits), so fitting a
few million tokens at order 8 takes seconds.
"""

from __future__ import annotations

import logging
import math
from typing import Iterable, Sequence

import numpy as np

from cadenza.player.events import START, VOCAB_SIZE

log = logging.getLogger(__name__)

MIN_DISCOUNT = 0.05  # keeps some mass for lower orders even where count-of-counts are degenerate
CHUNK = 1 << 20  # positions scored per numpy batch, bounds memory for big inputs


def _bits_for(vocab_size: int) -> int:
    return max(1, (vocab_size - 1).bit_length())


def _check_order(order: int, vocab_size: int) -> None:
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    bits = _bits_for(vocab_size)
    if order * bits > 64:
        raise ValueError(f"order must be at most {64 // bits} for a vocabulary of {vocab_size} tokens, got {order}")


def _padded(sequences: Iterable[np.ndarray], pad: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All sequences, each preceded by `pad` STARTs, concatenated; and the positions to score.

    Scored: every token after a sequence's first, so each has `pad` real or START tokens before it.
    """
    parts, scored, at = [], [], 0
    for seq in sequences:
        s = np.asarray(seq, dtype=np.int64).ravel()
        if s.size and (s.min() < 0 or s.max() >= vocab_size):
            raise ValueError(f"tokens must be in 0..{vocab_size - 1}, got {s.min()}..{s.max()}")
        parts.append(np.full(pad, START, dtype=np.int64))
        parts.append(s)
        scored.append(np.arange(at + pad + 1, at + pad + s.size))
        at += pad + s.size
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(parts), np.concatenate(scored)


def _codes(x: np.ndarray, pos: np.ndarray, max_order: int, bits: int) -> Iterable[np.ndarray]:
    """For k = 1..max_order: uint64 codes of the k tokens ending at each position, oldest in the high bits."""
    code = x[pos].astype(np.uint64)
    yield code
    for k in range(2, max_order + 1):
        code = code | (x[pos - (k - 1)].astype(np.uint64) << np.uint64((k - 1) * bits))
        yield code


def _lookup(table: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each query in a sorted table."""
    if table.size == 0:
        return np.zeros(queries.shape, np.int64), np.zeros(queries.shape, bool)
    idx = np.minimum(np.searchsorted(table, queries), table.size - 1)
    return idx, table[idx] == queries


class _Counts:
    """The n-grams of lengths 1..max_order ending at every scored position, with their counts.

    grams[k]: sorted unique codes; raw[k]: how often each occurs; cont[k] (k < max_order):
    the KN count, i.e. the number of distinct tokens seen before it (raw if it begins with START).
    A model of any order <= max_order is built from these without counting again.
    """

    def __init__(self, sequences: Iterable[np.ndarray], max_order: int, vocab_size: int) -> None:
        _check_order(max_order, vocab_size)
        self.max_order, self.vocab_size, self.bits = max_order, vocab_size, _bits_for(vocab_size)
        x, pos = _padded(sequences, max_order - 1, vocab_size)
        self.n_tokens = int(pos.size)
        self.grams: dict[int, np.ndarray] = {}
        self.raw: dict[int, np.ndarray] = {}
        for k, code in enumerate(_codes(x, pos, max_order, self.bits), start=1):
            self.grams[k], self.raw[k] = np.unique(code, return_counts=True)
        del x, pos
        self.cont: dict[int, np.ndarray] = {}
        for k in range(1, max_order):
            suffix = self.grams[k + 1] & np.uint64((1 << (k * self.bits)) - 1)
            codes, cont = np.unique(suffix, return_counts=True)
            assert np.array_equal(codes, self.grams[k])  # every k-gram has a left neighbour (padding)
            begins_with_start = (codes >> np.uint64((k - 1) * self.bits)) == START
            self.cont[k] = np.where(begins_with_start, self.raw[k], cont)


class _Level:
    """One order of the model: counts, discounts and per-context normalizers."""

    def __init__(self, grams: np.ndarray, counts: np.ndarray, bits: int) -> None:
        self.grams = grams
        self.counts = counts.astype(np.int64)
        self.discount = _discounts(self.counts)  # [4]: D(0)=0, D1, D2, D3+
        ctx = grams >> np.uint64(bits)  # grams are sorted, so equal contexts are adjacent
        self.contexts, first = np.unique(ctx, return_index=True)
        self.total = np.add.reduceat(self.counts, first).astype(np.float64)
        d = self.discount[np.minimum(self.counts, 3)]
        self.gamma = np.add.reduceat(d, first)  # D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)


def _discounts(counts: np.ndarray) -> np.ndarray:
    """Modified-KN discounts from count-of-counts (Chen & Goodman), kept in (0, i] for count i."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == i)) for i in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    d1 = 1 - 2 * y * n2 / n1 if n1 else 0.5
    d2 = 2 - 3 * y * n3 / n2 if n2 else d1
    d3 = 3 - 4 * y * n4 / n3 if n3 else d2
    return np.array([0.0] + [min(max(d, MIN_DISCOUNT), i) for i, d in ((1, d1), (2, d2), (3, d3))])


class KneserNey:
    """Interpolated modified Kneser-Ney n-gram model over a fixed token vocabulary."""

    def __init__(self, order: int, vocab_size: int = VOCAB_SIZE) -> None:
        _check_order(order, vocab_size)
        self.order, self.vocab_size, self.bits = order, vocab_size, _bits_for(vocab_size)
        self.levels: list[_Level] = []  # levels[k-1] is order k
        self.n_train_tokens = 0

    def fit(self, sequences: Iterable[np.ndarray]) -> "KneserNey":
        return self._fit_counts(_Counts(sequences, self.order, self.vocab_size))

    def _fit_counts(self, counts: _Counts) -> "KneserNey":
        if counts.vocab_size != self.vocab_size or counts.max_order < self.order:
            raise ValueError("counts were made for another vocabulary or a lower order")
        o = self.order
        # raw counts at the top order, KN counts below it
        self.levels = [
            _Level(counts.grams[k], counts.raw[k] if k == o else counts.cont[k], self.bits) for k in range(1, o + 1)
        ]
        self.n_train_tokens = counts.n_tokens
        return self

    def _check_fitted(self) -> None:
        if not self.levels:
            raise RuntimeError("call fit() before scoring")

    def _prob_of_codes(self, grams_by_k: Sequence[np.ndarray]) -> np.ndarray:
        """P(w | h) for a batch, given the codes of (h, w) truncated to each order 1..order."""
        p = np.full(grams_by_k[0].shape, 1.0 / self.vocab_size)
        for level, grams in zip(self.levels, grams_by_k):
            ci, seen_ctx = _lookup(level.contexts, grams >> np.uint64(self.bits))
            gi, seen = _lookup(level.grams, grams)
            c = np.where(seen, level.counts[gi], 0)
            mixed = (c - level.discount[np.minimum(c, 3)] + level.gamma[ci] * p) / level.total[ci]
            p = np.where(seen_ctx, mixed, p)
        return p

    def _window_codes(self, windows: np.ndarray) -> list[np.ndarray]:
        """Codes per order of windows [N, order] (context then token)."""
        codes, code = [], np.zeros(windows.shape[0], np.uint64)
        for j in range(self.order):
            code = code | (windows[:, -1 - j].astype(np.uint64) << np.uint64(j * self.bits))
            codes.append(code.copy())
        return codes

    def _windows(self, context: Sequence[int], tokens: np.ndarray) -> np.ndarray:
        ctx = [int(t) for t in context][-(self.order - 1) :] if self.order > 1 else []
        ctx = [START] * (self.order - 1 - len(ctx)) + ctx
        out = np.empty((len(tokens), self.order), np.int64)
        out[:, :-1] = ctx
        out[:, -1] = tokens
        return out

    def logprob(self, context: Sequence[int], token: int) -> float:
        """ln P(token | context); the context's last order-1 tokens count, padded with START."""
        self._check_fitted()
        if not 0 <= int(token) < self.vocab_size:
            raise ValueError(f"token must be in 0..{self.vocab_size - 1}, got {token}")
        p = self._prob_of_codes(self._window_codes(self._windows(context, np.array([token]))))
        return math.log(float(p[0]))

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(. | context) over the whole vocabulary, [V] float64."""
        self._check_fitted()
        return self._prob_of_codes(self._window_codes(self._windows(context, np.arange(self.vocab_size))))

    def nll(self, sequences: Iterable[np.ndarray]) -> float:
        """Mean negative log-likelihood (nats per token) of every token after each sequence's first."""
        self._check_fitted()
        x, pos = _padded(sequences, self.order - 1, self.vocab_size)
        if pos.size == 0:
            raise ValueError("nothing to score: every sequence is shorter than 2 tokens")
        total = 0.0
        for a in range(0, pos.size, CHUNK):
            grams = list(_codes(x, pos[a : a + CHUNK], self.order, self.bits))
            total -= float(np.log(self._prob_of_codes(grams)).sum())
        return total / pos.size


def select_order(
    train_seqs: Sequence[np.ndarray],
    val_seqs: Sequence[np.ndarray],
    orders: Iterable[int] = range(1, 9),
    vocab_size: int = VOCAB_SIZE,
) -> tuple[int, dict[int, float]]:
    """(order with the lowest validation NLL, {order: validation NLL}); counts once at the highest order."""
    orders = sorted(set(orders))
    if not orders:
        raise ValueError("no orders to try")
    counts = _Counts(train_seqs, orders[-1], vocab_size)
    by_order = {}
    for o in orders:
        by_order[o] = KneserNey(o, vocab_size)._fit_counts(counts).nll(val_seqs)
        log.info("Kneser-Ney order %d: validation NLL %.4f nats/token", o, by_order[o])
    best = min(by_order, key=by_order.get)
    return best, by_order
