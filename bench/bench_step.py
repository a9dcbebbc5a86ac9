"""Step-model speed: convert a random model of a preset's size, or time bundles in this interpreter.

    python bench/bench_step.py --preset default                 # embed 64, hidden 256: the shipped size
    python bench/bench_step.py --preset default --hidden 512 -- --variant int8
    .venv-tflite/bin/python bench/bench_step.py --time models/bach.cadenza   # as a 32-bit Pi would run it

Random weights measure the tooling and the speed, not the music: the shipped
model comes from `cadenza-convert runs/bach --out models/bach.cadenza`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support


def time_bundles(paths: list[Path], steps: int, threads: int) -> int:
    """Per-step latency of each bundle through player.runtime (numpy + interpreter only)."""
    import numpy as np

    from cadenza.convert.fidelity import latency
    from cadenza.player.runtime import backend_name, open_model

    tokens = np.random.default_rng(0).integers(0, 242, size=1000)
    for path in paths:
        model = open_model(path, num_threads=threads)
        lat = latency(model.step, tokens, n_steps=steps)
        print(
            f"{path.name:<32} {model.meta['variant']:<14} median {lat['median_us']:8.1f} us  "
            f"p99 {lat['p99_us']:8.1f} us  ({backend_name()}, {threads} thread{'s' * (threads > 1)}, {steps} steps)"
        )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time", type=Path, nargs="+", default=None, metavar="BUNDLE", help="time these bundles instead")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--preset", default="default")
    p.add_argument("--embed", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--weight-scale", type=float, default=1.5)
    p.add_argument("--out", type=Path, default=None, help="keep the bundle and report here (default: a temp dir)")
    p.add_argument("convert_args", nargs="*", help="extra cadenza-convert flags, after --")
    args = p.parse_args()
    if args.time:
        return time_bundles(args.time, args.steps, args.threads)
    from cadenza.convert.__main__ import main as convert_main
    from support.models import tiny_run

    sizes = {k: v for k, v in (("embed_dim", args.embed), ("hidden", args.hidden)) if v}
    root = Path(tempfile.mkdtemp(prefix="cadenza-bench-"))
    run = tiny_run(root, preset=args.preset, sizes=sizes, weight_scale=args.weight_scale, name=args.preset)
    out = args.out or root / "models" / f"{args.preset}.cadenza"
    return convert_main([str(run), "--out", str(out), "--edgetpu", *args.convert_args])


if __name__ == "__main__":
    sys.exit(main())
