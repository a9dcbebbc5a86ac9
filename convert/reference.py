"""The LSTM step in numpy: the converter's yardstick and its source of calibration states.

The step itself is the trainer's (train.model.numpy_step: gates i, f, g, o in
Keras order, the cell state clipped to +-cell_clip at every step); the build
checks it against the Keras model on every conversion. Here: the weight
contract, rollouts that drive it, and random weights for tests and benches.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

import numpy as np

WEIGHT_SHAPES = {  # name -> shape in terms of V (vocab), E (embedding), H (hidden)
    "embedding": ("V", "E"),
    "lstm1/kernel": ("E", "4H"),
    "lstm1/recurrent": ("H", "4H"),
    "lstm1/bias": ("4H",),
    "lstm2/kernel": ("H", "4H"),
    "lstm2/recurrent": ("H", "4H"),
    "lstm2/bias": ("4H",),
    "dense/kernel": ("H", "V"),
    "dense/bias": ("V",),
}

KEY_SHAPES = {  # a key input model's weights besides (train.model.KEY_LAYERS): K = the key input's ids
    "key/lstm1": ("K", "4H"),
    "key/lstm2": ("K", "4H"),
    "key/dense": ("K", "V"),
}

State = tuple  # (h1, c1, h2, c2), each [H] float32; a key input model's has the key id after them


def keyed(weights: dict) -> bool:
    """The weights are a key input model's (player/conditioning.py, kind key_input)."""
    return "key/dense" in weights


def dims(weights: dict) -> tuple[int, int, int]:
    """(V, E, H) of a weight dict, after checking every shape against the contract."""
    missing = [k for k in WEIGHT_SHAPES if k not in weights]
    if missing:
        raise ValueError(f"weights lack {', '.join(missing)}")
    V, E = weights["embedding"].shape
    H = weights["lstm1/recurrent"].shape[0]
    sizes = {"V": V, "E": E, "H": H, "4H": 4 * H}
    shapes = dict(WEIGHT_SHAPES)
    if keyed(weights):
        from cadenza.player.conditioning import N_INPUT_KEYS

        sizes["K"] = N_INPUT_KEYS
        shapes.update(KEY_SHAPES)
    for name, shape in shapes.items():
        want = tuple(sizes[s] for s in shape)
        if tuple(weights[name].shape) != want:
            raise ValueError(f"weight {name} has shape {tuple(weights[name].shape)}, expected {want}")
    return V, E, H


def random_weights(
    vocab: int, embed: int, hidden: int, seed: int = 0, scale: float = 1.0, key_input: bool = False
) -> dict:
    """Glorot-ish random weights with the trained model's names and shapes (for tests and benches)."""
    from cadenza.player.conditioning import N_INPUT_KEYS

    rng = np.random.default_rng(seed)
    sizes = {"V": vocab, "E": embed, "H": hidden, "4H": 4 * hidden, "K": N_INPUT_KEYS}
    out = {}
    for name, shape in (WEIGHT_SHAPES | (KEY_SHAPES if key_input else {})).items():
        shp = tuple(sizes[s] for s in shape)
        fan = shp[0] if len(shp) > 1 else 1
        std = scale / np.sqrt(fan) if len(shp) > 1 else 0.1 * scale
        out[name] = (rng.standard_normal(shp) * std).astype(np.float32)
    out["lstm1/bias"][hidden : 2 * hidden] += 1.0  # forget-gate bias, as Keras initialises it
    out["lstm2/bias"][hidden : 2 * hidden] += 1.0
    return out


@dataclasses.dataclass
class Reference:
    """The float model, one token at a time: `logits, state = ref.step(token, state)`.

    A key input model's state ends with the key id in force: a KEY token sets it (and is no step: its
    logits are None), START sets NONE, as player.runtime.StepModel does."""

    weights: dict
    cell_clip: float

    def __post_init__(self) -> None:
        from cadenza.player import conditioning
        from cadenza.train.model import numpy_step  # imports Keras: not at module level, so the CLI fails fast

        self.vocab, self.embed, self.hidden = dims(self.weights)
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in self.weights.items()}
        self._numpy_step = numpy_step
        self.keyed = keyed(self.weights)
        self._held, self._none = conditioning.held, conditioning.NONE

    def zero_state(self) -> State:
        zeros = tuple(np.zeros(self.hidden, np.float32) for _ in range(4))
        return zeros + (self._none,) if self.keyed else zeros

    def step(self, token: int, state: State) -> tuple[np.ndarray | None, State]:
        token = int(token)
        if not self.keyed:
            logits, new = self._numpy_step(self.w, self.cell_clip, token, state)
            return logits.astype(np.float32), tuple(s.astype(np.float32) for s in new)
        key, is_step = self._held(token, int(state[4]))
        if not is_step:
            return None, tuple(state[:4]) + (key,)
        logits, new = self._numpy_step(self.w, self.cell_clip, token, state[:4], key)
        return logits.astype(np.float32), tuple(s.astype(np.float32) for s in new) + (key,)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    return z - np.log(np.exp(z).sum())


def free_run(
    step, first_token: int, n: int, state, rng: np.random.Generator, temperature: float = 1.0, greedy: bool = False
) -> Iterator[tuple[int, tuple, np.ndarray]]:
    """Feed the model its own samples: yields (token fed, state before it, logits after it)."""
    token = first_token
    for _ in range(n):
        logits, new_state = step(token, state)
        yield token, state, logits
        state = new_state
        if greedy:
            token = int(np.argmax(logits))
        else:
            p = np.exp(log_softmax(logits / temperature))
            token = int(rng.choice(len(p), p=p / p.sum()))


def teacher_forced(step, tokens: Iterable[int], state) -> Iterator[tuple[int, tuple, np.ndarray]]:
    """Feed a piece's tokens: yields (token fed, state before it, logits after it)."""
    for token in tokens:
        logits, new_state = step(int(token), state)
        yield int(token), state, logits
        state = new_state
