"""Every training setting in one place, saved beside the model as config.json.

`convert` rebuilds the step model from this file alone, so nothing here may be
implied: sizes, the cell clip and the data split are all written down.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cadenza.player import events


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    preset: str = "default"
    corpus: str = "bach"  # "bach" or "folk" (shipped with music21) or a folder of MIDI files
    vocab_size: int = events.VOCAB_SIZE
    embed_dim: int = 64  # 242 tokens need few dimensions; the LSTM does the work
    hidden: int = 256  # per layer; sized so `default` trains in < 45 min on 2 cores
    cell_clip: float = 10.0  # bound on |c|, identical in training and in the step model
    dropout: float = 0.2  # between layers: ~300k tokens of chorales overfit quickly
    window: int = 96  # truncated BPTT length; state carries across windows
    batch_size: int = 16  # parallel streams; small, so ~130 updates per epoch on the chorales
    learning_rate: float = 5e-3  # halved on every epoch without a better validation loss
    clipnorm: float = 1.0
    epochs: int = 60  # an upper bound: early stopping or the time cap ends it first
    patience: int = 5  # epochs without a better validation loss before stopping
    lr_patience: int = 2  # epochs without a better validation loss before the step size halves
    # "plateau": halve the step size after lr_patience epochs without a better validation loss. "cosine": the
    # step size falls along a half cosine over the time cap, from learning_rate to learning_rate * lr_floor, so
    # a run cut by the cap ends annealed instead of at a step size chosen for the middle of training.
    lr_schedule: str = "plateau"
    lr_floor: float = 0.02
    max_minutes: float = 40.0  # wall-clock cap on the training loop (best model kept)
    # Compile the training step with XLA: the LSTM's many small per-step ops are fused (bench/train_speed.py).
    jit: bool = False
    # The matmuls of training (the input projections, the recurrent h @ R, the logits) in "bfloat16" on a CPU
    # that has it (AVX-512 BF16): weights, cell state and gates stay float32, the model is saved and evaluated
    # in float32 (bench/README.md, "Training with bfloat16 matmuls"). "float32": everything in float32.
    matmul_dtype: str = "float32"
    # Each training piece, each epoch, is moved by one of these (drawn evenly, so a move listed twice is drawn
    # twice as often); the n-gram baseline counts each piece once per entry. All 12 keys; training pieces only.
    transpositions: tuple[int, ...] = tuple(range(-5, 7))
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_seed: int = 1234  # the split is by piece and must be the same for convert
    seed: int = 0
    rollout_steps: int = 5000  # free-running steps for the cell-state check
    baseline_orders: tuple[int, ...] = tuple(range(1, 9))
    corpus_limit: int = 0  # use only the first N pieces (0 = all); for quick runs
    min_epoch_tokens: int = 0  # an epoch repeats a small corpus (new transpositions) up to this many tokens
    # KEY tokens in the stream naming the key around them (player/conditioning.py): the model learns to
    # follow a key it is told, and the player tells it the phrase's. Adds events.N_KEYS input-only tokens.
    key_tokens: bool = False
    # With key_tokens: the share of training pieces whose continuation, from a random bar on, is moved to
    # another key (conditioning.shift_continuation), so the KEY token carries what the context cannot.
    key_shift: float = 0.0
    # With key_shift: 0 moves one fixed continuation per piece (chosen once); > 0 draws the moves anew every
    # epoch, a new key every key_shift_bars bars on average (conditioning.shift_segments), so the model meets
    # many more places where only the KEY token knows where the music goes.
    key_shift_bars: float = 0.0
    # A key input beside the token at every step (player/conditioning.py, kind "key_input"): the key named as
    # for key_tokens, held from one bar line to the next, reaching both layers and the output. Training draws
    # the labels (and key_shift's moves) anew every epoch, and tells a share key_none of the pieces no key.
    key_input: bool = False
    key_none: float = 0.15
    # With key_input and key_shift: the share of the moves that flip the mode (to the parallel minor or major,
    # conditioning.mode_moved) instead of the key, so that the key input's mode says what the notes do not yet.
    key_modes: float = 0.0
    # Recorded sessions in the corpus (train/sessions.py): the keyboard's part ("in"), the player's ("out"), both.
    session_part: str = "in"
    # Fine-tuning (cadenza-train --from RUN): the run whose model it starts from, and its corpus (the test split
    # of which measures what is kept of the original style). Empty: trained from scratch.
    from_run: str = ""
    from_corpus: str = ""
    # Fine-tuning: this share of each epoch's tokens is the source corpus's own training pieces (rehearsal), so
    # the model keeps more of the style it started with. 0: the new corpus only.
    rehearsal: float = 0.0

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"lr_schedule must be plateau or cosine, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_floor <= 1.0:
            raise ValueError(f"lr_floor must be in [0, 1], got {self.lr_floor}")
        if self.matmul_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"matmul_dtype must be float32 or bfloat16, got {self.matmul_dtype!r}")
        if not 0.0 <= self.rehearsal < 1.0:
            raise ValueError(f"rehearsal must be in [0, 1), got {self.rehearsal}")
        if self.session_part not in ("in", "out", "both"):
            raise ValueError(f"session_part must be in, out or both, got {self.session_part!r}")
        want = events.VOCAB_SIZE + (events.N_KEYS if self.key_tokens else 0)
        if self.vocab_size != want:
            raise ValueError(f"vocab_size must be {want} with key_tokens={self.key_tokens}, got {self.vocab_size}")
        if not 0.0 <= self.key_modes <= 1.0 or (self.key_modes and not (self.key_input and self.key_shift)):
            raise ValueError(f"key_modes must be in [0, 1] and needs key_input and key_shift, got {self.key_modes}")
        if self.key_shift_bars < 0 or (self.key_shift_bars and not self.key_shift):
            raise ValueError(f"key_shift_bars must be >= 0 and needs key_shift, got {self.key_shift_bars}")
        if self.key_tokens and self.key_input:
            raise ValueError("key_tokens and key_input are two ways of telling the key: choose one")
        if not 0.0 <= self.key_shift <= 1.0 or (self.key_shift and not self.keyed):
            raise ValueError(f"key_shift must be in [0, 1] and needs key_tokens or key_input, got {self.key_shift}")
        if not 0.0 <= self.key_none <= 1.0:
            raise ValueError(f"key_none must be in [0, 1], got {self.key_none}")

    @property
    def keyed(self) -> bool:
        """Training streams carry KEY tokens (as steps, or setting the key input)."""
        return self.key_tokens or self.key_input

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown training setting {unknown[0]!r}")
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if clean.get("key_tokens") and "vocab_size" not in clean:
            clean["vocab_size"] = events.VOCAB_SIZE + events.N_KEYS
        return cls(**clean)

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


PRESETS: dict[str, dict] = {
    # End to end in well under a minute: for tests and smoke runs.
    "tiny": dict(
        embed_dim=16,
        hidden=32,
        window=16,
        batch_size=4,
        epochs=30,
        patience=6,
        learning_rate=1e-2,
        lr_patience=1,
        max_minutes=5.0,
        rollout_steps=1000,
        baseline_orders=(1, 2, 3, 4),
        transpositions=(-1, 0, 1),
        dropout=0.0,
    ),
    # The model we ship: told the key at every step, trained with key moves, some of them to the parallel mode
    # (bench/README.md, "A key input at every step" and "Mode moves").
    "default": dict(key_input=True, key_shift=0.8, key_shift_bars=4.0, key_modes=0.3),
    # The same model not told the key (the Bach model shipped before).
    "plain": dict(),
    # The folk patch (models/folk.cadenza, cadenza-train --corpus folk --preset folk): a wider model, which
    # bfloat16 matmuls train as fast as the 2 x 256 one, on the tunes in all 12 keys with each tune's own key
    # drawn 5 times in 16 (bench/README.md, "The folk model"); 36 minutes of training loop, 45 in all.
    "folk": dict(
        hidden=384,
        batch_size=32,
        dropout=0.1,
        lr_schedule="cosine",
        max_minutes=36.0,
        matmul_dtype="bfloat16",
        transpositions=tuple(range(-5, 7)) + (0, 0, 0, 0),
    ),
    # Fine-tuning a trained model on a small corpus (cadenza-train --from RUN): a smaller step, few epochs.
    # An epoch is at least 150,000 tokens (about 100 updates), however few the sessions, and half of it is the
    # source's own corpus (rehearsal: measured in bench/README.md, it keeps the original style).
    "finetune": dict(
        learning_rate=1e-3,
        epochs=12,
        patience=3,
        lr_patience=1,
        max_minutes=15.0,
        min_epoch_tokens=150_000,
        rehearsal=0.5,
    ),
    # For a GPU machine.
    "large": dict(
        embed_dim=128, hidden=768, window=256, batch_size=64, epochs=80, patience=6, max_minutes=240.0, dropout=0.3
    ),
}


def make_config(preset: str = "default", **overrides) -> TrainConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    base = dict(PRESETS[preset], preset=preset)
    base.update(overrides)
    return TrainConfig.from_dict(base)


def parse_assignment(text: str) -> tuple[str, object]:
    """`hidden=128` -> ("hidden", 128), typed by the field's default."""
    key, sep, raw = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if not sep or key not in fields:
        raise ValueError(f"unknown training setting {key!r}" if sep else f"expected KEY=VALUE, got {text!r}")
    default = fields[key].default
    try:
        if isinstance(default, bool):
            return key, raw.lower() in ("1", "true", "yes")
        if isinstance(default, tuple):
            return key, tuple(int(x) for x in raw.split(",") if x.strip())
        return key, type(default)(raw)
    except ValueError:
        raise ValueError(f"{key} must be a {type(default).__name__}, got {raw!r}") from None
