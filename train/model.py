"""Embedding -> 2 clipped-cell LSTM layers -> Dense logits.

The LSTM is written out so that training computes exactly what the exported
step model computes (convert/ rebuilds it from `export_weights`):

    z  = x @ K + b + h @ R          # [B, 4H], gates in order i, f, g, o
    c' = clip(σ(f) * c + σ(i) * tanh(g), -clip, clip)
    h' = σ(o) * tanh(c')

The input projection x @ K + b is a Dense layer applied to the whole window at
once (one large matmul), so the recurrent loop only does h @ R.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import ops

from .config import TrainConfig


@keras.saving.register_keras_serializable(package="cadenza")
class ClippedLSTMCell(keras.layers.Layer):
    """An LSTM cell over pre-projected inputs, with a bounded cell state."""

    def __init__(self, units: int, cell_clip: float, matmul_dtype: str = "float32", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.cell_clip = float(cell_clip)
        self.matmul_dtype = matmul_dtype
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, 4 * self.units), initializer="orthogonal"
        )
        self.built = True

    def call(self, inputs, states, training=False):
        h, c = states
        if self.matmul_dtype == "float32":
            z = inputs + ops.matmul(h, self.recurrent_kernel)  # [B, 4H]
        else:  # the product in bfloat16; the state and the gates stay float32
            r = ops.matmul(ops.cast(h, self.matmul_dtype), ops.cast(self.recurrent_kernel, self.matmul_dtype))
            z = inputs + ops.cast(r, "float32")
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.clip(ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g), -self.cell_clip, self.cell_clip)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        return dict(super().get_config(), units=self.units, cell_clip=self.cell_clip, matmul_dtype=self.matmul_dtype)


@keras.saving.register_keras_serializable(package="cadenza")
class ForgetBias(keras.initializers.Initializer):
    """Bias 1 on the forget gate: the usual start that keeps memory early in training."""

    def __init__(self, units: int):
        self.units = units

    def __call__(self, shape, dtype=None):
        b = np.zeros(shape, dtype="float32")
        b[self.units : 2 * self.units] = 1.0
        return ops.convert_to_tensor(b, dtype=dtype)

    def get_config(self):
        return {"units": self.units}


KEY_LAYERS = ("lstm1", "lstm2", "dense")  # where a key input model adds its key's row (key/NAME weights)


def build_model(cfg: TrainConfig) -> keras.Model:
    """Inputs: tokens [B,T] int32 (and, with key_input, keys [B,T] int32: conditioning.hold's ids) and
    h1,c1,h2,c2 [B,H]; outputs logits [B,T,V] and the 4 states.

    With key_input, each key id has a learnt row added to the gate inputs of both layers and to the logits:
    z1 += K1[key], z2 += K2[key], logits += KD[key] (rows of zeros at first)."""
    from cadenza.player.conditioning import N_INPUT_KEYS

    H, V = cfg.hidden, cfg.vocab_size
    # With matmul_dtype bfloat16 the Dense layers multiply in bfloat16 (float32 weights, cast on the fly) and
    # their outputs are cast back to float32 at once: the recurrences, the gates and the logits stay float32.
    mixed = cfg.matmul_dtype == "bfloat16"

    def dense(units, name, **kw):
        layer = keras.layers.Dense(units, name=name, dtype="mixed_bfloat16" if mixed else None, **kw)
        if not mixed:
            return layer
        return lambda t: keras.layers.Activation("linear", dtype="float32", name=f"{name}_f32")(layer(t))

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    key_ids = keras.Input(shape=(None,), dtype="int32", name="keys") if cfg.key_input else None
    states_in = [keras.Input(shape=(H,), name=n) for n in ("h1", "c1", "h2", "c2")]

    def keyed(x, name, width):
        if key_ids is None:
            return x
        rows = keras.layers.Embedding(N_INPUT_KEYS, width, embeddings_initializer="zeros", name=f"key_{name}")
        return keras.layers.Add(name=f"{name}_keyed")([x, rows(key_ids)])

    x = keras.layers.Embedding(V, cfg.embed_dim, name="embedding")(tokens)
    outs = []
    for layer in (1, 2):
        x = dense(4 * H, f"lstm{layer}_in", bias_initializer=ForgetBias(H))(x)
        x = keyed(x, f"lstm{layer}", 4 * H)
        rnn = keras.layers.RNN(
            ClippedLSTMCell(H, cfg.cell_clip, cfg.matmul_dtype, name=f"lstm{layer}_cell"),
            return_sequences=True,
            return_state=True,
            name=f"lstm{layer}",
        )
        h0, c0 = states_in[2 * (layer - 1)], states_in[2 * (layer - 1) + 1]
        x, h, c = rnn(x, initial_state=[h0, c0])
        outs += [h, c]
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout{layer}")(x)
    logits = keyed(dense(V, "dense")(x), "dense", V)
    inputs = [tokens] + ([key_ids] if key_ids is not None else []) + states_in
    return keras.Model(inputs, [logits, *outs], name="cadenza_lstm")


def is_keyed(model: keras.Model) -> bool:
    """The model has a key input (cfg.key_input)."""
    return any(t.name.startswith("keys") for t in model.inputs)


def zero_states(batch: int, hidden: int) -> list[np.ndarray]:
    return [np.zeros((batch, hidden), np.float32) for _ in range(4)]


def export_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """The trained weights under the names convert/ uses (see module docstring)."""
    w = {"embedding": model.get_layer("embedding").get_weights()[0]}
    for layer in (1, 2):
        kernel, bias = model.get_layer(f"lstm{layer}_in").get_weights()
        (recurrent,) = model.get_layer(f"lstm{layer}").get_weights()
        w[f"lstm{layer}/kernel"] = kernel  # [in, 4H]
        w[f"lstm{layer}/recurrent"] = recurrent  # [H, 4H]
        w[f"lstm{layer}/bias"] = bias  # [4H]
    kernel, bias = model.get_layer("dense").get_weights()
    w["dense/kernel"], w["dense/bias"] = kernel, bias  # [H, V], [V]
    if is_keyed(model):
        for name in KEY_LAYERS:
            w[f"key/{name}"] = model.get_layer(f"key_{name}").get_weights()[0]  # [N_INPUT_KEYS, 4H or V]
    return {k: np.asarray(v, np.float32) for k, v in w.items()}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_step(weights: dict, cell_clip: float, token: int, state, key: int | None = None):
    """One step of the model in numpy (the reference for the step model). state = (h1,c1,h2,c2), each [H];
    `key`: the key input's id, for a model with one (weights key/...)."""
    x = weights["embedding"][token]
    new = []
    for layer in (1, 2):
        h, c = state[2 * (layer - 1)], state[2 * (layer - 1) + 1]
        z = x @ weights[f"lstm{layer}/kernel"] + weights[f"lstm{layer}/bias"] + h @ weights[f"lstm{layer}/recurrent"]
        if key is not None:
            z = z + weights[f"key/lstm{layer}"][key]
        i, f, g, o = np.split(z, 4)
        c = np.clip(_sigmoid(f) * c + _sigmoid(i) * np.tanh(g), -cell_clip, cell_clip)
        h = _sigmoid(o) * np.tanh(c)
        new += [h, c]
        x = h
    logits = x @ weights["dense/kernel"] + weights["dense/bias"]
    if key is not None:
        logits = logits + weights["key/dense"][key]
    return logits, tuple(new)


def rollout_cell_stats(weights: dict, cell_clip: float, steps: int, start_token: int, seed: int = 0) -> dict:
    """|c| over a free-running rollout sampled at temperature 1 (the player runs for hours).

    max: the largest |c| seen (never above the clip); p999: its 99.9th percentile
    over steps and units; at_clip: the share of (step, unit) values at the clip.
    """
    rng = np.random.default_rng(seed)
    hidden = weights["lstm1/recurrent"].shape[0]
    state = tuple(np.zeros(hidden, np.float32) for _ in range(4))
    token = start_token
    key = weights["key/dense"].shape[0] - 1 if "key/dense" in weights else None  # a key input model: told none
    cells = np.empty((steps, 2 * hidden), np.float32)
    for k in range(steps):
        logits, state = numpy_step(weights, cell_clip, token, state, key)
        cells[k] = np.abs(np.concatenate([state[1], state[3]]))
        p = np.exp(logits - logits.max())
        token = int(rng.choice(len(p), p=p / p.sum()))
    return {
        "max": float(cells.max()),
        "p999": float(np.percentile(cells, 99.9)),
        "at_clip": float(np.mean(cells >= cell_clip * 0.999)),
    }


def load_run(run_dir: str | Path) -> tuple[keras.Model, dict]:
    """The trained model and its config.json (as a dict) from a run directory."""
    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    return model, cfg


def import_weights(model: keras.Model, weights: dict) -> None:
    """Set a model's weights from export_weights names (the inverse of export_weights)."""
    model.get_layer("embedding").set_weights([weights["embedding"]])
    for layer in (1, 2):
        model.get_layer(f"lstm{layer}_in").set_weights([weights[f"lstm{layer}/kernel"], weights[f"lstm{layer}/bias"]])
        model.get_layer(f"lstm{layer}").set_weights([weights[f"lstm{layer}/recurrent"]])
    model.get_layer("dense").set_weights([weights["dense/kernel"], weights["dense/bias"]])
    if is_keyed(model):
        for name in KEY_LAYERS:
            model.get_layer(f"key_{name}").set_weights([weights[f"key/{name}"]])


def load_source(source: str | Path) -> tuple[keras.Model, dict]:
    """The model and its settings from a run directory or a bundle (.cadenza, weights read back from its step model)."""
    source = Path(source)
    if source.is_dir():
        return load_run(source)
    from cadenza.convert.unbundle import bundle_weights

    weights, cfg = bundle_weights(source)
    model = build_model(TrainConfig.from_dict(cfg))
    import_weights(model, weights)
    return model, cfg
