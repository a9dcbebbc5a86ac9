"""The Edge TPU step: the op check, and the compiler where it exists.

The Edge TPU runs only fully int8 models made of the ops in Coral's table
("TensorFlow models on the Edge TPU", supported operations); anything else
falls back to the CPU, one segment at a time. The converter's Edge TPU input
model (one-hot token, int8 in and out) is checked against that table before it
goes near the compiler.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# coral.ai/docs/edgetpu/models-intro, "Supported operations" (TFLite builtin names)
SUPPORTED_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUARED_DIFFERENCE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)

COMPILER = "edgetpu_compiler"
INPUT_NAME = "model_edgetpu_input.tflite"  # what the compiler is given
OUTPUT_NAME = "model_edgetpu_input_edgetpu.tflite"  # what it writes


def unsupported_ops(ops: list[str]) -> list[str]:
    return sorted(set(ops) - SUPPORTED_OPS)


def compiler_path() -> str | None:
    return shutil.which(COMPILER)


def compile_model(model: bytes, timeout: float = 600) -> tuple[bytes, str]:
    """Run edgetpu_compiler on an int8 model; returns (compiled model, compiler log)."""
    exe = compiler_path()
    if exe is None:
        raise FileNotFoundError(COMPILER)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / INPUT_NAME
        src.write_bytes(model)
        proc = subprocess.run([exe, "-s", "-o", tmp, str(src)], capture_output=True, text=True, timeout=timeout)
        log = proc.stdout + proc.stderr
        out = Path(tmp) / OUTPUT_NAME
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{COMPILER} failed (exit {proc.returncode}): {log.strip().splitlines()[-1:] or ''}")
        return out.read_bytes(), log


def missing_compiler_message(input_path: Path, bundle_path: Path) -> str:
    return (
        f"{COMPILER} not found: it exists only for x86-64 Debian/Ubuntu, from Coral's package repository "
        f"(https://coral.ai/docs/edgetpu/compiler/). The model for it is written to {input_path}. On such a machine:\n"
        f"  curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -\n"
        f"  echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
        f"sudo tee /etc/apt/sources.list.d/coral-edgetpu.list\n"
        f"  sudo apt-get update && sudo apt-get install edgetpu-compiler\n"
        f"  edgetpu_compiler -s {input_path.name}\n"
        f"then add the compiled model to the bundle:\n"
        f"  cadenza-convert add-edgetpu {bundle_path} {input_path.with_name(input_path.stem + '_edgetpu.tflite')}"
    )
