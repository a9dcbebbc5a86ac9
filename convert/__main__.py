"""cadenza-convert: a training run -> a player bundle (TFLite step model + model.json).

    cadenza-convert runs/bach --out models/bach.cadenza            # auto: smallest variant within 2% NLL of fp32
    cadenza-convert runs/bach --out models/bach.cadenza --variant int8 --edgetpu
    cadenza-convert add-edgetpu models/bach.cadenza model_edgetpu_input_edgetpu.tflite

Writes the bundle and, beside it, NAME.fidelity.json (every variant's size,
latency, test NLL, agreement with the trained model, op list).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .build import VARIANT_CHOICES, Settings

log = logging.getLogger("cadenza.convert")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cadenza-convert",
        description="Convert a training run into a player bundle.",
        epilog="An Edge TPU model compiled on another machine goes in with: "
        "cadenza-convert add-edgetpu BUNDLE NAME_edgetpu.tflite",
    )
    p.add_argument("run_dir", type=Path, help="training run directory (model.keras, config.json, report.json)")
    p.add_argument(
        "--out", type=Path, default=Path("models/bach.cadenza"), help="bundle to write (default %(default)s)"
    )
    p.add_argument(
        "--variant",
        choices=VARIANT_CHOICES,
        default="auto",
        help="variant to bundle; auto: the smallest whose test NLL is within 2%% of fp32",
    )
    p.add_argument(
        "--edgetpu",
        action="store_true",
        help="also build the Edge TPU model and compile it if edgetpu_compiler is here",
    )
    p.add_argument(
        "--max-test-tokens",
        type=int,
        default=None,
        help="score at most this many test tokens per variant (default all)",
    )
    p.add_argument("--latency-steps", type=int, default=5000, help="steps timed per variant (default %(default)s)")
    p.add_argument(
        "--agreement-steps", type=int, default=2000, help="free-running steps compared with Keras (default %(default)s)"
    )
    p.add_argument("--calibration-samples", type=int, default=1000, help="int8 calibration pairs (default %(default)s)")
    p.add_argument("--keras-steps", type=int, default=300, help="steps timed for the Keras call (default %(default)s)")
    p.add_argument(
        "--save-variants",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write every variant as its own bundle in DIR (for comparisons on a Pi)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _add_edgetpu(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="cadenza-convert add-edgetpu", description="Put an Edge TPU model compiled elsewhere into a bundle."
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("compiled", type=Path, help="edgetpu_compiler's output (..._edgetpu.tflite)")
    p.add_argument(
        "--input-model", type=Path, default=None, help="the model given to the compiler (default: beside it)"
    )
    args = p.parse_args(argv)
    from cadenza.player.bundle import BundleError

    from .build import add_edgetpu

    try:
        add_edgetpu(args.bundle, args.compiled, args.input_model)
    except (BundleError, OSError) as exc:
        print(f"cadenza-convert: {exc}", file=sys.stderr)
        return 2
    print(f"added {args.compiled.name} to {args.bundle}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["add-edgetpu"]:
        return _add_edgetpu(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .source import SourceError, check_run_dir

    try:
        check_run_dir(args.run_dir)  # before TensorFlow is imported: a typo fails fast
    except SourceError as exc:
        print(f"cadenza-convert: {exc}", file=sys.stderr)
        return 2
    from cadenza.player.bundle import BundleError

    from .build import build
    from .source import load_source

    settings = Settings(
        variant=args.variant,
        edgetpu=args.edgetpu,
        max_test_tokens=args.max_test_tokens,
        latency_steps=args.latency_steps,
        agreement_steps=args.agreement_steps,
        calibration_samples=args.calibration_samples,
        seed=args.seed,
        keras_latency_steps=args.keras_steps,
        variants_dir=args.save_variants,
    )
    try:
        source = load_source(args.run_dir)
        build(source, args.out, settings)
    except (SourceError, BundleError) as exc:
        print(f"cadenza-convert: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
