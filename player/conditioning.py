"""Key conditioning: telling a conditioned model which key to play in.

Two kinds of conditioned model take the same KEY tokens, placed by the same rule:

- `key_tokens`: the KEY tokens are steps of the model like any other token (an extra embedding row each);
- `key_input`: a key input beside the token at every step (model.json: conditioning.kind "key_input"). A KEY
  token in the stream is then no step of its own: it sets the key input, held for every later step until the
  next KEY token or START (which sets it to NONE, "no key"), as `hold` turns a stream into (music, key ids).
  The key reaches both LSTM layers and the output layer at every step, so it is never out of the model's
  sight the way one token a bar back can be (bench/README.md, "A key input at every step").

A conditioned model has N_KEYS more tokens after the music's (KEY_BASE = events.VOCAB_SIZE):
KEY(tonic, mode) = KEY_BASE + tonic + 12 * (mode == "minor"). They are inputs, never
outputs: the engine never samples one, and no loss or NLL counts them as targets.

The same rule places them in training and in the player, so the model hears them where
it learnt to: a KEY token follows every SHIFT that reaches or crosses a multiple of
`every` ticks of the stream's time (a phase drawn per piece in training, so their place
says nothing about the metre), and the player also feeds one when the key it follows
changes (the start of an answer).

What they name differs on purpose. In training: the key of the notes around the token,
mostly ahead of it (`back` ticks before to `ahead` after, Krumhansl–Schmuckler on the
duration-weighted pitch classes), so the model learns that what follows a KEY token is in
that key. In the player: the key it follows (the phrase's, estimated from the keyboard,
or one set in the config); with none (solo, `key = "off"`, nothing heard yet), the key of the
stream's recent notes, its own and the keyboard's, as training named them. A share `dropout` of
the tokens is left out in training, so a missing one is nothing new to the model.
"""

from __future__ import annotations

import numpy as np

from . import events as ev
from . import keys

KEY_BASE, N_KEYS = ev.KEY_BASE, ev.N_KEYS
EVERY_TICKS = 4 * ev.TICKS_PER_BEAT  # one 4/4 bar
BACK_TICKS = 4 * ev.TICKS_PER_BEAT  # the label's window: a bar back ...
AHEAD_TICKS = 8 * ev.TICKS_PER_BEAT  # ... and two ahead
DROPOUT = 0.15
MIN_NOTES = 3  # fewer notes in the window: the piece's own key
RECENT_HALF_LIFE_TICKS = 8 * ev.TICKS_PER_BEAT  # with no key to tell, the player names the recent notes' key
NONE = N_KEYS  # the key input's id for "no key" (ids 0..23 are the KEY tokens' order)
N_INPUT_KEYS = N_KEYS + 1
# The lean (player/keys.py) a key input model asks for when none is set (model.json conditioning.key_strength),
# and how many times as hard an answer's first bar leans (conditioning.key_opening): 1.75, and 3.5 in the first
# bar, cost the shipped model +1.3 % NLL on Bach's continuations against the model that is not told the key, where
# the 3.5 a model needs without a key input costs +13 % throughout (bench/README.md, "An answer that opens in the
# key" and "Mode moves": chosen on the development set of folk phrases).
KEY_INPUT_STRENGTH = 1.75
KEY_INPUT_OPENING = 2.0
MOVES = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)  # the semitones a training key move draws from


def accepts(vocab_size: int) -> bool:
    """A model with this vocabulary takes KEY tokens as steps (kind `key_tokens`)."""
    return vocab_size >= KEY_BASE + N_KEYS


def takes_keys(model) -> bool:
    """The model (a StepModel) is told keys: KEY tokens as steps, or a key input that KEY tokens set."""
    return accepts(int(model.vocab_size)) or bool(getattr(model, "keyed", False))


def held(token: int, key: int) -> tuple[int, bool]:
    """One token of a key input model's stream, with `key` the id in force before it: (the id in force from it
    on, whether it is a step). A KEY token sets the id and is no step; START is a step told NONE. The one rule
    of `hold`, for the step-at-a-time models (the converter's reference, the player's runtime)."""
    if KEY_BASE <= token < KEY_BASE + N_KEYS:
        return token - KEY_BASE, False
    return (NONE if token == ev.START else key), True


def hold(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stream with KEY tokens as (music, key ids): the tokens without them, and for each the key input in
    force when it is fed (the last KEY token before it, as an id 0..23; NONE before any and from each START)."""
    t = np.asarray(tokens, dtype=np.int32)
    marks = ev.is_key(t)
    music = t[~marks]
    # a running "last mark" index: positions of KEY tokens and STARTs, forward-filled
    idx = np.where(marks | (t == ev.START), np.arange(len(t)), -1)
    idx = np.maximum.accumulate(idx) if len(t) else idx
    held = np.where(idx >= 0, t[np.maximum(idx, 0)], ev.START)
    ids = np.where(ev.is_key(held), held - KEY_BASE, NONE).astype(np.int32)
    return music, ids[~marks]


def key_token(key: tuple[int, str]) -> int:
    tonic, mode = key
    return KEY_BASE + int(tonic) % 12 + (12 if mode == "minor" else 0)


def key_of(token: int) -> tuple[int, str]:
    k = int(token) - KEY_BASE
    if not 0 <= k < N_KEYS:
        raise ValueError(f"not a KEY token: {token}")
    return k % 12, "minor" if k >= 12 else "major"


def crosses(before: int, after: int, every: int = EVERY_TICKS, phase: int = 0) -> bool:
    """Time moved from `before` to `after` (> before) onto or across a multiple of `every` (+ phase)."""
    return (after - phase) // every > (before - phase) // every


def strip(tokens: np.ndarray) -> np.ndarray:
    """The music alone (what an unconditioned model or the n-gram baseline sees)."""
    t = np.asarray(tokens)
    return t[~ev.is_key(t)]


def insert(
    tokens: np.ndarray,
    rng: np.random.Generator,
    every: int = EVERY_TICKS,
    back: int = BACK_TICKS,
    ahead: int = AHEAD_TICKS,
    dropout: float = DROPOUT,
    lead: bool = False,
) -> np.ndarray:
    """A training piece with KEY tokens where the player would feed them, naming the key around each (and,
    with `lead`, one after the opening START too: a key input model is told a key from the first note)."""
    t = np.asarray(tokens, dtype=np.int32)
    notes = ev.decode_notes(t)
    whole = keys.estimate(notes)
    starts = np.array([n.start for n in notes], dtype=np.int64)
    phase = int(rng.integers(every))
    out: list[int] = []
    tick = 0
    for i, tok in enumerate(t.tolist()):
        out.append(tok)
        if lead and i == 0 and tok == ev.START:
            first = label(notes, starts, 0, whole, back, ahead)
            if first is not None:
                out.append(key_token(first))
        if not ev.is_shift(tok):
            continue
        before, tick = tick, tick + ev.shift_ticks(tok)
        if not crosses(before, tick, every, phase) or rng.random() < dropout:
            continue
        key = label(notes, starts, tick, whole, back, ahead)
        if key is not None:
            out.append(key_token(key))
    return np.asarray(out, dtype=np.int32)


def label(
    notes: list[ev.Note],
    starts: np.ndarray,
    tick: int,
    fallback: tuple[int, str] | None,
    back: int = BACK_TICKS,
    ahead: int = AHEAD_TICKS,
) -> tuple[int, str] | None:
    """The key training names at `tick`: that of the notes starting from `back` ticks before it to `ahead`
    after (`starts`: their start ticks, sorted), or `fallback` when there are fewer than MIN_NOTES."""
    lo, hi = np.searchsorted(starts, tick - back), np.searchsorted(starts, tick + ahead)
    near = notes[lo:hi]
    return keys.estimate(near) if len(near) >= MIN_NOTES else fallback


def moved(notes: list[ev.Note], moves: list[tuple[int, int]]) -> list[ev.Note]:
    """The notes, each moved by the semitones of the last move at or before its start (folded onto the
    keyboard); `moves` = [(tick, semitones from the original)] in time order. Training and benches only."""
    cuts = np.array([tick for tick, _ in moves], dtype=np.int64)
    offsets = [0] + [semitones for _, semitones in moves]
    out = []
    for n in notes:
        k = offsets[int(np.searchsorted(cuts, n.start, side="right"))]
        out.append(ev.Note(n.start, ev.fold_pitch(n.pitch + k), n.end, n.velocity) if k else n)
    return out


def shift_continuation(tokens: np.ndarray, rng: np.random.Generator, every: int = EVERY_TICKS) -> np.ndarray:
    """Training only: the piece with every note from a bar line on (a random one, two bars in at least)
    moved to another key, so that a KEY token, not the context, is what says where the music goes next."""
    notes = ev.decode_notes(tokens)
    if not notes:
        return np.asarray(tokens, dtype=np.int32)
    end = max(n.end for n in notes)
    bars = list(range(2 * every, end - 2 * every, every))
    if not bars:
        return np.asarray(tokens, dtype=np.int32)
    cut = int(rng.choice(bars))
    semitones = int(rng.choice(MOVES))
    return ev.encode_notes(moved(notes, [(cut, semitones)]))


# A mode move moves each scale degree that tells major from minor to the other mode's, in semitones, by its
# distance from the tonic: the third and sixth (and minor's subtonic up to the leading tone); the others stay.
TO_MINOR = {4: -1, 9: -1}
TO_MAJOR = {3: 1, 8: 1, 10: 1}


def other_mode(notes: list[ev.Note], key: tuple[int, str]) -> list[ev.Note]:
    """The notes in `key`'s parallel mode (C major to C minor and back): its third and sixth moved a semitone
    (minor's subtonic up to the leading tone too), every other note as it is. Training and benches only."""
    tonic, mode = key
    table = TO_MINOR if mode == "major" else TO_MAJOR
    out = []
    for n in notes:
        step = table.get((n.pitch - tonic) % 12)
        out.append(n if step is None else ev.Note(n.start, ev.fold_pitch(n.pitch + step), n.end, n.velocity))
    return out


def mode_moved(notes: list[ev.Note], cuts: list[int]) -> list[ev.Note]:
    """The notes with the mode flipped from the first cut to the second, flipped back at the third, and so on:
    each stretch in the parallel mode of its own key (Krumhansl–Schmuckler on its notes). The stretches are
    cut as `moved` cuts them."""
    stretch = np.searchsorted(np.asarray(cuts, dtype=np.int64), [n.start for n in notes], side="right")
    out = list(notes)
    for s in range(1, len(cuts) + 1, 2):  # 0: before the first cut; odd: the stretches in the other mode
        at = np.flatnonzero(stretch == s)
        part = [notes[i] for i in at]
        key = keys.estimate(part)
        if key is not None:
            for i, n in zip(at, other_mode(part, key)):
                out[i] = n
    return sorted(out, key=lambda n: (n.start, n.pitch))


def shift_segments(
    tokens: np.ndarray, rng: np.random.Generator, mean_bars: float, every: int = EVERY_TICKS, modes: float = 0.0
) -> np.ndarray:
    """Training only: the piece cut at random bar lines (one in `mean_bars` on average, two bars in at least)
    and every note from each cut on moved to another key, so that the KEY tokens, which look two bars ahead,
    announce each move before the context can show it (bench/README.md, "Key moves drawn anew every epoch":
    the model still learns to find the key from the notes). A share `modes` of the cuts flip the mode instead
    (`mode_moved`: to the parallel minor or major until the next such cut), so the key input's mode, not only
    its tonic, says something the notes so far do not."""
    notes = ev.decode_notes(tokens)
    if not notes:
        return np.asarray(tokens, dtype=np.int32)
    end = max(n.end for n in notes)
    offset, moves, flips = 0, [], []
    for bar in range(2 * every, end - every, every):
        if rng.random() < 1.0 / mean_bars:
            if modes and rng.random() < modes:
                flips.append(bar)
            else:
                offset += int(rng.choice(MOVES))
                moves.append((bar, offset))
    if not moves and not flips:
        return np.asarray(tokens, dtype=np.int32)
    return ev.encode_notes(moved(mode_moved(notes, flips) if flips else notes, moves))


def describe(kind: str = "key_tokens") -> dict:
    """What a bundle's model.json says about its conditioning (the player reads it back)."""
    out = {
        "kind": kind,
        "base": KEY_BASE,
        "count": N_KEYS,
        "order": "tonic pitch class (C = 0), +12 for minor",
        "every_ticks": EVERY_TICKS,
        "label_window_ticks": [-BACK_TICKS, AHEAD_TICKS],
        "dropout": DROPOUT,
    }
    if kind == "key_input":
        out.update(
            none=NONE,
            dropout=0.0,
            held="from each KEY token to the next, NONE from each START",
            key_strength=KEY_INPUT_STRENGTH,
            key_opening=KEY_INPUT_OPENING,
        )
    return out
