"""The one-step model with explicit state, built from numpy weights and converted to TFLite.

    token [1,1] int32   (or one-hot [1,V] for the Edge TPU)
    key [1,1] int32     (or one-hot keyhot [1,K]; a key input model only: player/conditioning.py)
    h1, c1, h2, c2 [1,H] float32
      -> logits [1,V], h1, c1, h2, c2 [1,H]

A key input model adds its key's rows (GATHER, or FULLY_CONNECTED on the one-hot key) to the gate inputs
of both layers and to the logits, as in training.

Each layer is CONCAT([x, h]) -> FULLY_CONNECTED -> SPLIT into the four gates ->
LOGISTIC/TANH -> MUL/ADD, the cell state clipped with MINIMUM/MAXIMUM exactly as
in training. The embedding is a GATHER (token variants) or a FULLY_CONNECTED on
the one-hot vector (Edge TPU variant). No control flow, no variables: every
interpreter loads it and int8 needs nothing beyond the Edge TPU's op list.

TensorFlow is imported inside the functions: `convert` is only ever run on a
desktop, but importing this module should stay cheap.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Callable, Iterable

import numpy as np

from .reference import dims

log = logging.getLogger(__name__)

STATE_NAMES = ("h1", "c1", "h2", "c2")

# name -> (quantization, input kind). "edgetpu_input" is the int8 one-hot model the
# Edge TPU compiler takes; the others are CPU models.
VARIANTS = {
    "fp32": ("none", "token"),
    "fp16": ("float16", "token"),
    "dynamic": ("dynamic", "token"),
    "int8": ("int8", "token"),
    "edgetpu_input": ("int8_io", "onehot"),
}
CPU_VARIANTS = ("fp32", "fp16", "dynamic", "int8")

RepresentativeData = Callable[[], Iterable[dict]]  # yields {"token"|"onehot", "h1", ...} float/int arrays


def _tf():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def step_function(weights: dict, cell_clip: float, onehot: bool = False):
    """A tf.function computing one step; its signature names the tensors of the TFLite file."""
    tf = _tf()
    V, E, H = dims(weights)
    f32 = np.float32
    emb = tf.constant(weights["embedding"].astype(f32))  # [V, E]
    k1 = tf.constant(np.concatenate([weights["lstm1/kernel"], weights["lstm1/recurrent"]]).astype(f32))  # [E+H, 4H]
    b1 = tf.constant(weights["lstm1/bias"].astype(f32))
    k2 = tf.constant(np.concatenate([weights["lstm2/kernel"], weights["lstm2/recurrent"]]).astype(f32))  # [2H, 4H]
    b2 = tf.constant(weights["lstm2/bias"].astype(f32))
    wd = tf.constant(weights["dense/kernel"].astype(f32))  # [H, V]
    bd = tf.constant(weights["dense/bias"].astype(f32))
    clip = float(cell_clip)
    keyed = "key/dense" in weights
    if keyed:
        key_rows = [tf.constant(weights[f"key/{n}"].astype(f32)) for n in ("lstm1", "lstm2", "dense")]
        K = int(weights["key/dense"].shape[0])

    def cell(x, h, c, k, b, kz=None):
        z = tf.matmul(tf.concat([x, h], axis=1), k) + b  # [1, 4H]
        if kz is not None:
            z = z + kz
        i, f, g, o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        c = tf.maximum(tf.minimum(c, clip), -clip)  # the training clip, as MINIMUM/MAXIMUM
        return tf.sigmoid(o) * tf.tanh(c), c

    def body(x, h1, c1, h2, c2, kr=(None, None, None)):
        h1, c1 = cell(x, h1, c1, k1, b1, kr[0])
        h2, c2 = cell(h1, h2, c2, k2, b2, kr[1])
        logits = tf.matmul(h2, wd) + bd  # [1, V]
        if kr[2] is not None:
            logits = logits + kr[2]
        return {"logits": logits, "h1": h1, "c1": c1, "h2": h2, "c2": c2}

    states = [tf.TensorSpec([1, H], tf.float32, name=n) for n in STATE_NAMES]
    if keyed and onehot:

        @tf.function(
            input_signature=[
                tf.TensorSpec([1, V], tf.float32, name="onehot"),
                tf.TensorSpec([1, K], tf.float32, name="keyhot"),
            ]
            + states
        )
        def step(onehot, keyhot, h1, c1, h2, c2):
            return body(tf.matmul(onehot, emb), h1, c1, h2, c2, [tf.matmul(keyhot, r) for r in key_rows])

    elif keyed:

        @tf.function(
            input_signature=[tf.TensorSpec([1, 1], tf.int32, name="token"), tf.TensorSpec([1, 1], tf.int32, name="key")]
            + states
        )
        def step(token, key, h1, c1, h2, c2):
            kr = [tf.gather(r, tf.reshape(key, [1])) for r in key_rows]
            return body(tf.gather(emb, tf.reshape(token, [1])), h1, c1, h2, c2, kr)

    elif onehot:

        @tf.function(input_signature=[tf.TensorSpec([1, V], tf.float32, name="onehot")] + states)
        def step(onehot, h1, c1, h2, c2):
            return body(tf.matmul(onehot, emb), h1, c1, h2, c2)  # [1, E]

    else:

        @tf.function(input_signature=[tf.TensorSpec([1, 1], tf.int32, name="token")] + states)
        def step(token, h1, c1, h2, c2):
            return body(tf.gather(emb, tf.reshape(token, [1])), h1, c1, h2, c2)  # [1, E]

    return step


def convert(weights: dict, cell_clip: float, variant: str, representative: RepresentativeData | None = None) -> bytes:
    """The TFLite flatbuffer of one variant (see VARIANTS)."""
    tf = _tf()
    quant, kind = VARIANTS[variant]
    step = step_function(weights, cell_clip, onehot=(kind == "onehot"))
    module = tf.Module()
    module.step = step  # a trackable owner: the converter then writes a signature with our names
    concrete = step.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # Per-channel hybrid FULLY_CONNECTED is newer than tflite-runtime 2.14 (the 32-bit Pi's
        # interpreter): it refuses such models. Per-tensor weight scales load everywhere.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    elif quant in ("int8", "int8_io"):
        if representative is None:
            raise ValueError(f"variant {variant} needs representative data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Per-tensor weight scales: older interpreters and the Edge TPU compiler handle them.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        if quant == "int8_io":  # no QUANTIZE/DEQUANTIZE at the edges: the Edge TPU runs the whole graph
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # the calibrator's own use of the deprecated tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        return bytes(converter.convert())


@dataclasses.dataclass(frozen=True)
class TensorMap:
    """Tensor names of a converted model by role: {"token": ..., "h1": ...}, {"logits": ..., ...}."""

    inputs: dict
    outputs: dict


def tensor_map(model: bytes) -> TensorMap:
    """Map signature keys to the tensor names in the flatbuffer (what model.json records)."""
    from cadenza.player.runtime import make_interpreter

    interp = make_interpreter(model_content=model)
    sig = interp.get_signature_list()
    key = next(iter(sig))
    full = interp._get_full_signature_list()[key]  # {'inputs': {name: index}, 'outputs': {...}}
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    return TensorMap(
        inputs={k: names[i] for k, i in full["inputs"].items()},
        outputs={k: names[i] for k, i in full["outputs"].items()},
    )
