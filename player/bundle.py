"""The model bundle: one zip file that holds everything the player needs.

    bach.cadenza
      model.json            format version, vocabulary layout, tensor names, state shapes,
                            variant, training config, corpus, metrics
      model.tflite          the step model (token [1,1] int32 + h1,c1,h2,c2 -> logits + states)
      model_edgetpu.tflite  optional: the same model compiled for the Edge TPU (one-hot input)

Every way a file can be wrong ends in BundleError, one line naming the file and
the problem, so the player can print it and exit.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from . import events

FORMAT_VERSION = 2  # the newest model.json this player reads
KEY_INPUT_FORMAT = 2  # a key input model's bundle (conditioning kind "key_input"): older players cannot feed it
MODEL_JSON = "model.json"
MODEL_TFLITE = "model.tflite"
EDGETPU_TFLITE = "model_edgetpu.tflite"
DEFAULT_NAME = "bach.cadenza"
STATE_NAMES = ("h1", "c1", "h2", "c2")
TFLITE_MAGIC = b"TFL3"  # bytes 4..8 of every TFLite flatbuffer


class BundleError(ValueError):
    """A bundle that cannot be used; the message is one line naming the file and the problem."""


def _fail(path, problem: str) -> BundleError:
    return BundleError(f"{path}: {' '.join(str(problem).split())}")


@dataclasses.dataclass(frozen=True)
class Bundle:
    path: Path | None
    meta: dict
    model: bytes  # model.tflite
    edgetpu: bytes | None = None  # model_edgetpu.tflite, if compiled

    @property
    def variant(self) -> str:
        return self.meta["variant"]

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab"]["size"])

    @property
    def hidden(self) -> int:
        return int(self.meta["states"][0]["shape"][-1])


def check_meta(meta: object, path: object = "<bundle>") -> None:
    """Raise BundleError unless `meta` is a model.json this player can use."""
    if not isinstance(meta, dict):
        raise _fail(path, f"{MODEL_JSON} is not a JSON object")
    version = meta.get("format")
    if not isinstance(version, int):
        raise _fail(path, f"{MODEL_JSON} has no integer 'format' version")
    if version > FORMAT_VERSION:
        raise _fail(path, f"bundle format {version} is newer than this player reads ({FORMAT_VERSION}); update cadenza")
    if version < 1:
        raise _fail(path, f"bundle format {version} is not a known version")
    for key, kind in (("vocab", dict), ("inputs", dict), ("outputs", dict), ("states", list), ("variant", str)):
        if not isinstance(meta.get(key), kind):
            raise _fail(path, f"{MODEL_JSON} lacks {key!r} ({kind.__name__})")
    try:
        events.check_layout(meta["vocab"])
    except ValueError as exc:
        raise _fail(path, f"vocabulary mismatch: {exc}") from None
    if meta.get("ticks_per_beat", events.TICKS_PER_BEAT) != events.TICKS_PER_BEAT:
        raise _fail(path, f"ticks_per_beat is {meta['ticks_per_beat']}, this player uses {events.TICKS_PER_BEAT}")
    names = []
    for s in meta["states"]:
        ok = isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("shape"), list)
        if not ok or not all(isinstance(d, int) and d > 0 for d in s["shape"]):
            raise _fail(path, f"{MODEL_JSON} has a malformed state entry {s!r}")
        names.append(s["name"])
    if tuple(names) != STATE_NAMES:
        raise _fail(path, f"{MODEL_JSON} states are {names}, expected {list(STATE_NAMES)}")
    for role in ("logits",) + STATE_NAMES:
        if role not in meta["outputs"]:
            raise _fail(path, f"{MODEL_JSON} names no output tensor for {role!r}")
    for role in STATE_NAMES:
        if role not in meta["inputs"]:
            raise _fail(path, f"{MODEL_JSON} names no input tensor for {role!r}")
    if "token" not in meta["inputs"] and "onehot" not in meta["inputs"]:
        raise _fail(path, f"{MODEL_JSON} names no token input")
    cond = meta.get("conditioning")
    if isinstance(cond, dict) and cond.get("kind") == "key_input" and not ({"key", "keyhot"} & set(meta["inputs"])):
        raise _fail(path, f"{MODEL_JSON} says the model takes a key input but names no key input tensor")


def _check_tflite(data: bytes, name: str, path) -> None:
    if len(data) < 8 or data[4:8] != TFLITE_MAGIC:
        raise _fail(path, f"{name} is not a TFLite model")


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and check a bundle (structure, format version, vocabulary); the tensors are checked by the runtime."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a bundle") from None
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    if not data:
        raise _fail(path, "empty file, not a bundle")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            for need in (MODEL_JSON, MODEL_TFLITE):
                if need not in names:
                    raise _fail(path, f"bundle has no {need}")
            raw_meta = zf.read(MODEL_JSON)
            model = zf.read(MODEL_TFLITE)
            edgetpu = zf.read(EDGETPU_TFLITE) if EDGETPU_TFLITE in names else None
    except BundleError:
        raise
    except zipfile.BadZipFile as exc:
        raise _fail(path, f"not a bundle (damaged or not a zip file: {exc})") from None
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError) as exc:
        raise _fail(path, f"damaged bundle ({exc or type(exc).__name__})") from None
    try:
        meta = json.loads(raw_meta.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"{MODEL_JSON} is not valid JSON ({exc})") from None
    check_meta(meta, path)
    _check_tflite(model, MODEL_TFLITE, path)
    if edgetpu is not None:
        _check_tflite(edgetpu, EDGETPU_TFLITE, path)
        if not isinstance(meta.get("edgetpu"), dict):
            raise _fail(path, f"bundle holds {EDGETPU_TFLITE} but {MODEL_JSON} has no 'edgetpu' section")
    return Bundle(path=path, meta=meta, model=model, edgetpu=edgetpu)


def write_bundle(path: str | os.PathLike, meta: dict, model: bytes, edgetpu: bytes | None = None) -> Path:
    """Write a bundle atomically (a temporary file renamed into place); returns its path."""
    path = Path(path)
    meta = dict(meta)
    cond = meta.get("conditioning")
    meta.setdefault("format", KEY_INPUT_FORMAT if isinstance(cond, dict) and cond.get("kind") == "key_input" else 1)
    check_meta(meta, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MODEL_JSON, json.dumps(meta, indent=1, sort_keys=True) + "\n")
            zf.writestr(MODEL_TFLITE, model)
            if edgetpu is not None:
                zf.writestr(EDGETPU_TFLITE, edgetpu)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; an installed model must be readable by the service user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def model_search_path() -> list[Path]:
    """Where an installed or checked-out Cadenza keeps its shipped model, in search order."""
    return [
        Path(__file__).resolve().parent.parent / "models" / DEFAULT_NAME,  # a checkout or editable install
        Path(sys.prefix) / "share" / "cadenza" / DEFAULT_NAME,  # pip install (data files)
        Path("/usr/share/cadenza") / DEFAULT_NAME,  # a distribution package
        Path("/opt/cadenza/share") / DEFAULT_NAME,  # a self-contained install
    ]


def default_model_path() -> Path:
    """The shipped model: $CADENZA_MODEL, else the first of model_search_path() that exists.

    If none exists, the first candidate (so the error message names where it was expected).
    """
    env = os.environ.get("CADENZA_MODEL")
    if env:
        return Path(env).expanduser()
    candidates = model_search_path()
    return next((c for c in candidates if c.is_file()), candidates[0])
