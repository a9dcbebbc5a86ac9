"""A bundle's weights back out of its step model (cadenza-train --from BUNDLE fine-tunes them).

    weights, config = bundle_weights("models/bach.cadenza")

The step model (stepmodel.py) holds every weight as a constant: the embedding is the table of the
GATHER, and each of the three FULLY_CONNECTED ops (layer 1, layer 2, the output layer, in that
order) has its weights [out, in] = the transpose of [kernel; recurrent] (or of the dense kernel)
and its bias. Quantized constants (int8 with a scale, per tensor or per channel; float16 behind a
DEQUANTIZE) are dequantized, so the weights come back within quantization error of the trained
ones. `config` is the training settings the converter wrote into model.json.
"""

from __future__ import annotations

import numpy as np

from cadenza.player.bundle import BundleError, load_bundle
from cadenza.player.conditioning import N_INPUT_KEYS


def _dequantized(interp, index: int, producers: dict) -> np.ndarray:
    """The float value of a constant tensor, following a DEQUANTIZE op back to its stored constant."""
    if index in producers:  # float16 (or int8) weights: DEQUANTIZE(constant) feeds the op
        op = producers[index]
        if op["op_name"] != "DEQUANTIZE":
            raise ValueError(f"tensor {index} is computed by {op['op_name']}, not a constant")
        index = int(op["inputs"][0])
    detail = next(d for d in interp.get_tensor_details() if d["index"] == index)
    value = interp.get_tensor(index)
    if value.dtype in (np.float32, np.float16):
        return value.astype(np.float32)
    q = detail["quantization_parameters"]
    scales, zeros = np.asarray(q["scales"], np.float32), np.asarray(q["zero_points"], np.float32)
    if scales.size == 0:
        raise ValueError(f"tensor {detail['name']} is {value.dtype} with no scale")
    if scales.size > 1:  # per channel: one scale along the quantized dimension
        shape = [1] * value.ndim
        shape[q["quantized_dimension"]] = -1
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return (value.astype(np.float32) - zeros) * scales


def step_model_weights(model: bytes) -> dict[str, np.ndarray]:
    """The weights (train.model.export_weights names) of a token-input step model."""
    from cadenza.player.runtime import make_interpreter

    interp = make_interpreter(model_content=model)
    ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    producers = {int(o): op for op in ops for o in op["outputs"]}
    gathers = [op for op in ops if op["op_name"] == "GATHER"]
    fcs = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    shapes = {d["index"]: tuple(d["shape"]) for d in interp.get_tensor_details()}
    keyed = [g for g in gathers if shapes[int(g["inputs"][0])][0] == N_INPUT_KEYS]
    gathers = [g for g in gathers if g not in keyed]
    if len(gathers) != 1 or len(fcs) != 3 or len(keyed) not in (0, 3):
        raise ValueError(
            f"not a Cadenza step model ({len(gathers) + len(keyed)} GATHER, {len(fcs)} FULLY_CONNECTED; "
            "want 1 (or 4 with a key input) and 3)"
        )
    w = {"embedding": _dequantized(interp, int(gathers[0]["inputs"][0]), producers)}
    layers = []
    for op in fcs:  # in execution order: layer 1, layer 2, the output layer
        if len(op["inputs"]) < 3 or int(op["inputs"][2]) < 0:
            raise ValueError("a FULLY_CONNECTED op of the step model has no bias")
        layers.append(
            (
                _dequantized(interp, int(op["inputs"][1]), producers).T,  # [in, out]
                _dequantized(interp, int(op["inputs"][2]), producers),
            )
        )
    E = w["embedding"].shape[1]
    for n, (kernel, bias) in enumerate(layers[:2], start=1):
        width = E if n == 1 else kernel.shape[1] // 4
        w[f"lstm{n}/kernel"], w[f"lstm{n}/recurrent"], w[f"lstm{n}/bias"] = kernel[:width], kernel[width:], bias
    w["dense/kernel"], w["dense/bias"] = layers[2]
    for g in keyed:  # a key input model: each key table's rows are added to one FULLY_CONNECTED's output
        w[f"key/{_added_to(g, ops, fcs, producers)}"] = _dequantized(interp, int(g["inputs"][0]), producers)
    if keyed and len([k for k in w if k.startswith("key/")]) != 3:
        raise ValueError("not a Cadenza step model (its key tables do not reach the three layers one each)")
    return {k: np.ascontiguousarray(v, np.float32) for k, v in w.items()}


def _added_to(gather: dict, ops: list, fcs: list, producers: dict) -> str:
    """Which layer (lstm1, lstm2, dense) a key table's GATHER is added to: the ADD its output (dequantized,
    for a quantized table) meets, and the FULLY_CONNECTED whose output is the ADD's other input."""
    out = int(gather["outputs"][0])
    for op in ops:
        if op["op_name"] == "DEQUANTIZE" and int(op["inputs"][0]) == out:
            out = int(op["outputs"][0])
    for op in ops:
        ins = [int(i) for i in op["inputs"]]
        if op["op_name"] == "ADD" and out in ins:
            other = producers.get(next(i for i in ins if i != out))
            if other is not None and other in fcs:
                return ("lstm1", "lstm2", "dense")[fcs.index(other)]
    raise ValueError("not a Cadenza step model (a key table is not added to a layer's output)")


def bundle_weights(path) -> tuple[dict[str, np.ndarray], dict]:
    """(weights, training settings) of a bundle; BundleError (one line) if it cannot give them."""
    bundle = load_bundle(path)
    config = bundle.meta.get("config")
    if not isinstance(config, dict) or "hidden" not in config:
        raise BundleError(f"{path}: its model.json has no training settings (config) to rebuild the model from")
    try:
        weights = step_model_weights(bundle.model)
    except ValueError as exc:
        raise BundleError(f"{path}: {exc}") from None
    V, E = weights["embedding"].shape
    H = weights["lstm1/recurrent"].shape[0]
    if (V, E, H) != (config.get("vocab_size"), config.get("embed_dim"), config.get("hidden")):
        raise BundleError(
            f"{path}: its weights (vocab {V}, embed {E}, hidden {H}) do not match its settings "
            f"(vocab {config.get('vocab_size')}, embed {config.get('embed_dim')}, hidden {config.get('hidden')})"
        )
    return weights, config
