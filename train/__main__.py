"""cadenza-train: MIDI files (or the built-in Bach chorales) -> a run directory.

    cadenza-train --corpus bach --preset default --out runs/bach

writes model.keras (best by validation NLL), config.json, report.json, curves.png.

    cadenza-train --corpus ~/sessions --from runs/bach --out runs/mine

(or --from models/bach.cadenza: a bundle, its weights read back from its step model, convert/unbundle.py)
fine-tunes the model of a run directory on a corpus (the player's session recordings: the
keyboard's part of each), with its architecture and the `finetune` preset's training settings;
the report adds the NLL of the held-out sessions before and after, and on the source's own test
split before and after (what is kept of the original style).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("cadenza.train")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="cadenza-train", description=__doc__.split("\n")[0])
    p.add_argument(
        "--corpus", default="bach", help="'bach' or 'folk' (built in, from music21), or a folder of .mid/.midi files"
    )
    p.add_argument("--preset", default="default", help="tiny | default | plain | finetune | large")
    p.add_argument("--out", required=True, type=Path, help="run directory to create")
    p.add_argument("--cache-dir", type=Path, default=None, help="where parsed corpora are cached")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="RUN|BUNDLE",
        help="fine-tune this model: a run directory, or a bundle (.cadenza) whose weights are read back",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any training setting, e.g. --set hidden=128",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .config import make_config, parse_assignment

    try:
        overrides = dict(parse_assignment(s) for s in args.set)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.source is not None:
            cfg = finetune_config(args.source, args.corpus, overrides)
        else:
            cfg = make_config(args.preset, corpus=args.corpus, **overrides)
    except (ValueError, OSError) as exc:
        print(f"cadenza-train: {exc}", file=sys.stderr)
        return 2

    from .corpus import CorpusError, splits_for

    try:
        train_set, val_set, test_set = splits_for(cfg, cache_dir=args.cache_dir)
    except CorpusError as exc:
        print(f"cadenza-train: {exc}", file=sys.stderr)
        return 2
    log.info(
        "corpus %s: %d train, %d validation, %d test pieces", cfg.corpus, len(train_set), len(val_set), len(test_set)
    )

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.json")
    report = run(cfg, train_set, val_set, test_set, out, progress=not args.no_progress)
    if cfg.from_run:
        ft = report["finetune"]
        log.info(
            "fine-tuned from %s: held-out NLL %.4f -> %.4f; its own corpus (%s) test NLL %.4f -> %.4f",
            cfg.from_run,
            ft["heldout_nll_before"],
            ft["heldout_nll_after"],
            cfg.from_corpus,
            ft["source_test_nll_before"],
            ft["source_test_nll_after"],
        )
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info(
        "test NLL %.4f nats/token (n-gram baseline %.4f, ratio %.3f), test accuracy %.3f",
        report["test_nll"],
        report["baseline_test_nll"],
        report["nll_ratio_to_baseline"],
        report["test_accuracy"],
    )
    log.info("wrote %s", out)
    return 0


def finetune_config(source: Path, corpus: str, overrides: dict):
    """The source's settings (its architecture) with the finetune preset's and `overrides` on top.

    The source is a run directory (config.json) or a bundle (the settings in its model.json)."""
    import json

    from cadenza.player import events
    from cadenza.player.bundle import load_bundle

    from .config import PRESETS, TrainConfig

    source = Path(source)
    if source.is_dir():
        path = source / "config.json"
        if not (source / "model.keras").is_file() or not path.is_file():
            raise ValueError(f"--from {source}: not a run directory (it needs model.keras and config.json)")
        base = json.loads(path.read_text())
    elif source.is_file():
        meta = load_bundle(source).meta  # BundleError (a ValueError): one line
        base = meta.get("config")
        if not isinstance(base, dict):
            raise ValueError(f"--from {source}: its model.json has no training settings to rebuild the model from")
        want = events.layout(conditioned=bool(base.get("key_tokens")))
        if meta.get("vocab") != want:
            raise ValueError(
                f"--from {source}: its vocabulary (size {meta.get('vocab', {}).get('size')}) is not this "
                f"version's token layout (size {want['size']}); the sessions cannot be written in its tokens"
            )
    else:
        raise ValueError(f"--from {source}: no such run directory or bundle")
    for key in ("vocab_size", "key_tokens", "key_input", "embed_dim", "hidden", "cell_clip"):
        if key in overrides and overrides[key] != base.get(key):
            raise ValueError(f"--set {key}: a fine-tune keeps the source's {key} ({base.get(key)})")
    return TrainConfig.from_dict(
        {
            **base,
            **PRESETS["finetune"],
            "preset": "finetune",
            "corpus": corpus,
            "from_run": str(Path(source).resolve()),
            "from_corpus": base["corpus"],
            **overrides,
        }
    )


def run(cfg, train_set, val_set, test_set, out: Path, progress: bool = True) -> dict:
    """Train, evaluate, compare with the n-gram baseline; returns the report."""
    from cadenza.player import conditioning, events

    from . import baseline, plots
    from .fit import evaluate, fit
    from .model import export_weights, rollout_cell_stats

    tr = [p.tokens for p in train_set]
    va = [p.tokens for p in val_set]
    te = [p.tokens for p in test_set]

    source = source_test = None
    rehearse: list | None = None
    finetune: dict = {}
    if cfg.from_run:
        from dataclasses import replace

        from .corpus import splits_for
        from .model import load_source

        source, _ = load_source(cfg.from_run)
        source_train, _va, source_test_pieces = splits_for(
            replace(cfg, corpus=cfg.from_corpus, key_shift=0.0, key_shift_bars=0.0, key_modes=0.0)
        )
        source_test = [p.tokens for p in source_test_pieces]
        rehearse = [p.tokens for p in source_train]
        finetune = {
            "from_run": cfg.from_run,
            "from_corpus": cfg.from_corpus,
            "rehearsal": cfg.rehearsal,
            "heldout_nll_before": evaluate(source, te)[0],
            "source_test_nll_before": evaluate(source, source_test)[0],
        }
    t0 = time.monotonic()
    model, hist = fit(cfg, tr, va, out, progress=progress, init=source, rehearse=rehearse)
    train_wall = time.monotonic() - t0
    val_nll, val_acc, _ = evaluate(model, va)
    test_nll, test_acc, n_test = evaluate(model, te)
    if source_test is not None:
        finetune["heldout_nll_after"] = test_nll
        finetune["source_test_nll_after"] = evaluate(model, source_test)[0]

    # The baseline sees what the LSTM saw: the training pieces in the same transpositions; it is
    # scored on the same tokens (the music: KEY tokens, where there are any, are the LSTM's inputs only).
    t1 = time.monotonic()
    music = conditioning.strip
    aug = [music(events.transpose(p, s)) for p in tr for s in cfg.transpositions]
    va_music, te_music = [music(p) for p in va], [music(p) for p in te]
    order, val_by_order = baseline.select_order(aug, va_music, orders=cfg.baseline_orders, vocab_size=events.VOCAB_SIZE)
    ng = baseline.KneserNey(order, events.VOCAB_SIZE)
    ng.fit(aug)
    base_test = ng.nll(te_music)
    base_seconds = time.monotonic() - t1

    weights = export_weights(model)
    cell = rollout_cell_stats(weights, cfg.cell_clip, cfg.rollout_steps, events.START, seed=cfg.seed)
    plots.curves(hist, out / "curves.png")
    return {
        "preset": cfg.preset,
        "corpus": cfg.corpus,
        "pieces": {"train": len(tr), "val": len(va), "test": len(te)},
        "test_tokens": n_test,
        "val_nll": val_nll,
        "val_accuracy": val_acc,
        "test_nll": test_nll,
        "test_accuracy": test_acc,
        "baseline": "interpolated Kneser-Ney n-gram, order chosen on validation",
        "baseline_order": order,
        "baseline_val_nll_by_order": {str(k): v for k, v in val_by_order.items()},
        "baseline_test_nll": base_test,
        "baseline_seconds": base_seconds,
        "nll_ratio_to_baseline": test_nll / base_test,
        "epochs_run": len(hist.val_loss),
        "best_epoch": hist.best_epoch + 1,
        "stopped": hist.stopped,
        "train_loss": hist.train_loss,
        "val_loss": hist.val_loss,
        "train_seconds": hist.train_seconds,
        "train_wall_seconds": train_wall,
        "train_tokens": hist.train_tokens,
        "tokens_per_second": hist.train_tokens / max(hist.train_seconds, 1e-9),
        "rollout_steps": cfg.rollout_steps,
        "max_abs_cell_rollout": cell["max"],
        "p999_abs_cell_rollout": cell["p999"],
        "share_at_clip_rollout": cell["at_clip"],
        "cell_clip": cfg.cell_clip,
        "parameters": int(sum(int(w.size) for w in weights.values())),
        **({"finetune": finetune} if finetune else {}),
    }


if __name__ == "__main__":
    sys.exit(main())
