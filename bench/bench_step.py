"""Convert a random model of a training preset's size and print the fidelity table.

    python bench/bench_step.py --preset default           # embed 64, hidden 256: the shipped size
    python bench/bench_step.py --preset default --hidden 512

Random weights measure the tooling and the speed, not the music: for the
shipped model run `cadenza-convert runs/bach --out models/bach.cadenza`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--embed", type=int, default=None)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--weight-scale", type=float, default=1.5)
    p.add_argument("--out", type=Path, default=None, help="keep the bundle and report here (default: a temp dir)")
    p.add_argument("convert_args", nargs="*", help="extra cadenza-convert flags, after --")
    args = p.parse_args()
    from convert.__main__ import main as convert_main
    from convert.testing import tiny_run

    sizes = {k: v for k, v in (("embed_dim", args.embed), ("hidden", args.hidden)) if v}
    root = Path(tempfile.mkdtemp(prefix="cadenza-bench-"))
    run = tiny_run(root, preset=args.preset, sizes=sizes, weight_scale=args.weight_scale, name=args.preset)
    out = args.out or root / "models" / f"{args.preset}.cadenza"
    return convert_main([str(run), "--out", str(out), "--edgetpu", *args.convert_args])


if __name__ == "__main__":
    sys.exit(main())
