"""The Kneser-Ney n-gram baseline: proper distributions, agreement with a plain reference, order choice."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from cadenza.player.events import START, VOCAB_SIZE
from cadenza.train.baseline import KneserNey, select_order

V = 12  # a small vocabulary keeps the reference model quick; START (1) is part of it


def patterned(n_seqs: int, length: int, seed: int, vocab: int = V, noise: float = 0.1) -> list[np.ndarray]:
    """START, then a cycle over 2..vocab-1 with occasional random tokens: context helps a lot."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_seqs):
        body = 2 + (np.arange(length) + rng.integers(0, 10)) % (vocab - 2)
        noisy = rng.random(length) < noise
        body[noisy] = rng.integers(2, vocab, noisy.sum())
        out.append(np.concatenate([[START], body]).astype(np.int32))
    return out


# -- a plain dict-based reference of the same model ------------------------


def reference_model(seqs, order, vocab):
    """Interpolated modified KN written the slow, obvious way; returns prob(context, token)."""
    raw = [Counter() for _ in range(order + 1)]
    for s in seqs:
        padded = [START] * (order - 1) + [int(t) for t in s]
        for i in range(order, len(padded)):
            for k in range(1, order + 1):
                raw[k][tuple(padded[i - k + 1 : i + 1])] += 1
    counts = [None] * (order + 1)
    counts[order] = raw[order]
    for k in range(1, order):
        cont = Counter(g[1:] for g in raw[k + 1])
        counts[k] = Counter({g: (raw[k][g] if g[0] == START else cont[g]) for g in raw[k]})

    def discounts(c):
        # Chen & Goodman's estimates; where a count-of-count is missing, the discount below it
        n = Counter(c.values())
        y = n[1] / (n[1] + 2 * n[2]) if n[1] + n[2] else 0.5
        d1 = 1 - 2 * y * n[2] / n[1] if n[1] else 0.5
        d2 = 2 - 3 * y * n[3] / n[2] if n[2] else d1
        d3 = 3 - 4 * y * n[4] / n[3] if n[3] else d2
        return [0.0] + [min(max(x, 0.05), i) for i, x in enumerate((d1, d2, d3), start=1)]

    disc = [None] + [discounts(counts[k]) for k in range(1, order + 1)]
    by_ctx = [None] + [defaultdict(dict) for _ in range(order)]
    for k in range(1, order + 1):
        for g, c in counts[k].items():
            by_ctx[k][g[:-1]][g[-1]] = c

    def prob(context, token):
        ctx = ([START] * (order - 1) + list(context))[-(order - 1) :] if order > 1 else []
        p = 1 / vocab
        for k in range(1, order + 1):
            h = tuple(ctx[len(ctx) - (k - 1) :]) if k > 1 else ()
            seen = by_ctx[k].get(h)
            if not seen:
                continue
            d = disc[k]
            total = sum(seen.values())
            gamma = sum(d[min(c, 3)] for c in seen.values())
            c = seen.get(token, 0)
            p = (c - d[min(c, 3)] + gamma * p) / total
        return p

    return prob


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_the_reference(order):
    train = patterned(20, 60, seed=1, noise=0.3)
    lm = KneserNey(order, V).fit(train)
    ref = reference_model(train, order, V)
    contexts = [(), (START,), (2, 3), (5, 6, 7), (11, 11, 11), (3, 9, 2, 8, 4)]
    for ctx in contexts:
        mine = lm.distribution(ctx)
        want = np.array([ref(ctx, t) for t in range(V)])
        np.testing.assert_allclose(mine, want, rtol=1e-12)
        assert math.isclose(lm.logprob(ctx, 4), math.log(want[4]), rel_tol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 5, 8])
def test_every_distribution_is_proper(order):
    train = patterned(30, 80, seed=2, vocab=40)
    lm = KneserNey(order, VOCAB_SIZE).fit(train)
    seen = tuple(int(t) for t in train[0][:12])
    contexts = [(), (START,), seen, seen[:3], (200, 201, 202), tuple(range(2, 12)), (START, 241)]
    for ctx in contexts:
        p = lm.distribution(ctx)
        assert p.shape == (VOCAB_SIZE,)
        assert p.min() > 0, "every token keeps some probability"
        assert abs(p.sum() - 1) < 1e-9


def test_nll_is_the_mean_of_logprobs_after_the_first_token():
    train = patterned(10, 50, seed=3)
    test = patterned(3, 20, seed=4)
    lm = KneserNey(3, V).fit(train)
    by_hand = [-lm.logprob(tuple(s[:i]), int(s[i])) for s in test for i in range(1, len(s))]
    assert lm.nll(test) == pytest.approx(np.mean(by_hand), rel=1e-12)


def test_more_context_helps_on_structured_data():
    train, val = patterned(40, 100, seed=5, noise=0.05), patterned(10, 100, seed=6, noise=0.05)
    nll = {o: KneserNey(o, V).fit(train).nll(val) for o in (1, 2, 3)}
    assert nll[1] == pytest.approx(math.log(V - 2), abs=0.1)  # the cycle is uniform over 10 tokens
    assert nll[2] < 0.6 < nll[1] and nll[3] <= nll[2] + 0.01


def test_select_order_returns_the_best_on_validation():
    train, val = patterned(40, 100, seed=7, noise=0.05), patterned(10, 100, seed=8, noise=0.05)
    best, by_order = select_order(train, val, orders=range(1, 6), vocab_size=V)
    assert sorted(by_order) == [1, 2, 3, 4, 5]
    assert by_order[best] == min(by_order.values()) and best >= 2
    # the shared counts give the same model as fitting that order alone
    assert KneserNey(best, V).fit(train).nll(val) == pytest.approx(by_order[best], rel=1e-12)


def test_unseen_tokens_and_contexts_are_scored():
    lm = KneserNey(4, VOCAB_SIZE).fit([np.array([START, 2, 3, 2, 3, 2, 3])])
    assert lm.logprob((2, 3), 240) > -math.inf
    assert math.isfinite(lm.nll([np.array([START, 240, 239, 238])]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="at most 8"):
        KneserNey(9, VOCAB_SIZE)
    with pytest.raises(ValueError, match="at least 1"):
        KneserNey(0, VOCAB_SIZE)
    with pytest.raises(ValueError, match="tokens must be in"):
        KneserNey(2, V).fit([np.array([START, V])])
    with pytest.raises(RuntimeError, match="fit"):
        KneserNey(2, V).nll([np.array([START, 2])])
    with pytest.raises(ValueError, match="nothing to score"):
        KneserNey(2, V).fit([np.array([START, 2, 3])]).nll([np.array([START])])
