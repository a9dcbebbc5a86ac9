"""Token streams for truncated back-propagation through time.

Training: each epoch, the (transposed) training pieces are shuffled and chained
into `batch` parallel streams; window j of every stream follows window j-1, so
the LSTM state is carried across windows (and across piece boundaries, which
START marks), as in the player that runs for hours on one state.

Evaluation: each piece is scored on its own from a zero state, so the LSTM and
the n-gram baseline are measured on exactly the same tokens.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from cadenza.player import events


def epoch_streams(
    pieces: list[np.ndarray], batch: int, window: int, transpositions, rng, min_tokens: int = 0, keyed: bool = False
):
    """[batch, n_windows * window + 1] tokens: shuffled, randomly transposed pieces chained; the pieces again
    (shuffled and transposed anew) until there are at least `min_tokens` (a small corpus: a fine-tune).

    keyed (a key input model): the pieces' KEY tokens set the key input instead (conditioning.hold), and the
    result is (tokens, key ids), both [batch, n_windows * window + 1]."""
    seqs: list[np.ndarray] = []
    while True:
        order = rng.permutation(len(pieces))
        shifts = rng.choice(np.asarray(transpositions), size=len(pieces))
        seqs += [events.transpose(pieces[i], int(s)) for i, s in zip(order, shifts)]
        if sum(len(q) for q in seqs) >= min_tokens:
            break
    flat = np.concatenate(seqs)
    if keyed:
        from cadenza.player import conditioning

        flat, ids = conditioning.hold(flat)
        both = np.stack([flat, ids], axis=-1)  # [N, 2]: cut into streams together
        streams = epoch_streams_of(both, batch, window)
        return streams[..., 0], streams[..., 1]
    return epoch_streams_of(flat, batch, window)


def epoch_streams_of(flat: np.ndarray, batch: int, window: int) -> np.ndarray:
    """`flat` [N, ...] cut into `batch` streams of n_windows * window + 1 steps."""
    per = (len(flat) - 1) // batch
    n_windows = max(per // window, 1)
    per = n_windows * window
    if len(flat) < batch * per + 1:  # tiny corpora: repeat rather than fail
        flat = np.resize(flat, (batch * per + 1, *flat.shape[1:]))
    starts = np.arange(batch) * per
    return np.stack([flat[s : s + per + 1] for s in starts]).astype(np.int32)


def rehearsal_mix(new: list[np.ndarray], old: list[np.ndarray], share: float, min_tokens: int, rng) -> list[np.ndarray]:
    """An epoch's pieces for a fine-tune with rehearsal: the new pieces repeated to (1 - share) of the epoch's
    tokens (at least one pass), and old pieces drawn at random to `share` of them."""
    size = sum(len(p) for p in new)
    repeats = max(1, int(np.ceil((1.0 - share) * min_tokens / max(size, 1))))
    want_old = share / (1.0 - share) * size * repeats
    out, got = list(new) * repeats, 0
    for i in rng.permutation(len(old)):
        if got >= want_old:
            break
        out.append(old[i])
        got += len(old[i])
    return out


def windows(streams: np.ndarray, window: int, keys: np.ndarray | None = None) -> Iterator[tuple]:
    """(x, y) windows in order: y is x shifted by one token; (x, k, y) with key id streams: k goes with x."""
    n = (streams.shape[1] - 1) // window
    for j in range(n):
        a = j * window
        x, y = streams[:, a : a + window], streams[:, a + 1 : a + window + 1]
        yield (x, y) if keys is None else (x, keys[:, a : a + window], y)


def padded(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pieces as one [N, L] array padded with PAD, and the mask of scored targets [N, L-1]."""
    length = max(len(p) for p in pieces)
    arr = np.full((len(pieces), length), events.PAD, np.int32)
    for i, p in enumerate(pieces):
        arr[i, : len(p)] = p
    mask = (arr[:, 1:] != events.PAD) & (arr[:, 1:] < events.VOCAB_SIZE)  # KEY tokens are inputs, never scored
    return arr, mask


def padded_keyed(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a key input model: the pieces' music padded [N, L], their key ids [N, L] (conditioning.hold) and
    the mask of scored targets [N, L-1]."""
    from cadenza.player import conditioning

    held = [conditioning.hold(p) for p in pieces]
    arr, mask = padded([m for m, _ in held])
    ids = np.full(arr.shape, conditioning.NONE, np.int32)
    for i, (_, k) in enumerate(held):
        ids[i, : len(k)] = k
    return arr, ids, mask
