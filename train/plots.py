"""curves.png: training and validation loss per epoch."""

from __future__ import annotations

from pathlib import Path


def curves(hist, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on a training box
    import matplotlib.pyplot as plt

    epochs = range(1, len(hist.val_loss) + 1)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, hist.train_loss[: len(hist.val_loss)], marker="o", label="train")
    ax.plot(epochs, hist.val_loss, marker="o", label="validation")
    if hist.best_epoch >= 0:
        ax.axvline(hist.best_epoch + 1, color="grey", linestyle=":", label="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
