"""The step model at play time: a TFLite interpreter, the LSTM state, one token in, logits out.

numpy and a TFLite interpreter only (this runs on the Pi): `ai_edge_litert`, else
`tflite_runtime`, else TensorFlow's copy, imported on first use.

    model = open_model("models/bach.cadenza")
    logits = model.step(START)        # float32 [V]; the state moves on inside
    saved = model.get_state()         # (h1, c1, h2, c2), each float32 [H]
    model.set_state(saved); model.reset()

StepModel owns the state, in the dtype of the model's state inputs: float32, or
int8 codes for the Edge TPU model, whose new state is mapped onto the input's
scale by a 256-entry table. A step copies it into the input buffers and back
from the outputs through views pinned once, so it allocates nothing but the
logits it returns (nothing with `out=`). get_state/set_state speak float32.

A key input model (model.json conditioning kind "key_input": player/conditioning.py) also takes the key id
at every step. A KEY token fed to it is no step: it sets the key input for the steps after it (and returns
the logits of the last step again); START, and reset(), set it to NONE. get_state adds that id and those
logits after the four arrays, and set_state takes them back.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import conditioning
from .bundle import Bundle, BundleError, load_bundle

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
_BACKENDS = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
_backend: Any = None  # the interpreter package in use (a module, or _TfLiteShim)


def interpreter_module():
    """The first importable interpreter package (module with Interpreter and load_delegate)."""
    global _backend
    if _backend is None:
        for name in _BACKENDS:
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
            # (tensorflow.lite's load_delegate lives under tf.lite.experimental)
            _backend = _TfLiteShim(mod) if name == "tensorflow.lite" else mod
            break
        else:
            raise ImportError("no TFLite interpreter: pip install ai-edge-litert (or tflite-runtime)")
    return _backend


class _TfLiteShim:
    def __init__(self, tflite) -> None:
        self.__name__ = "tensorflow.lite"
        self.Interpreter = tflite.Interpreter
        self.load_delegate = tflite.experimental.load_delegate


def backend_name() -> str:
    return interpreter_module().__name__.split(".")[0]


def make_interpreter(
    model_content: bytes | None = None,
    model_path: str | None = None,
    num_threads: int = 1,
    delegates: list | None = None,
):
    mod = interpreter_module()
    kwargs: dict[str, Any] = {"num_threads": int(num_threads)}
    if delegates:
        kwargs["experimental_delegates"] = delegates
    if model_content is not None:
        return mod.Interpreter(model_content=model_content, **kwargs)
    return mod.Interpreter(model_path=model_path, **kwargs)


def load_edgetpu_delegate():
    """The Edge TPU delegate, or None (with one log line) where it cannot be loaded."""
    try:
        return interpreter_module().load_delegate(EDGETPU_LIBRARY)
    except (ValueError, OSError, RuntimeError, AttributeError) as exc:
        log.info(
            "Edge TPU not used (%s: %s); running on the CPU",
            EDGETPU_LIBRARY,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return None


class _Port:
    """One input or output tensor: a view getter and its quantization (scale 0: float)."""

    def __init__(self, interp, detail: dict) -> None:
        self.index = detail["index"]
        self.view = interp.tensor(self.index)  # call to get a numpy view of the tensor's buffer
        self.pinned = None  # the view itself, once StepModel pins it
        self.dtype = np.dtype(detail["dtype"])
        self.shape = tuple(int(d) for d in detail["shape"])
        scale, zero = detail.get("quantization", (0.0, 0))
        self.scale = float(scale) if self.dtype != np.float32 else 0.0
        self.zero = int(zero)
        if self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            self.lo, self.hi = info.min, info.max

    def get(self) -> np.ndarray:
        return self.pinned if self.pinned is not None else self.view()


class StepModel:
    """One step of the LSTM per call, with its state carried inside.

    Uses the bundle's Edge TPU model when there is one, `use_edgetpu` is set and
    the delegate loads; otherwise the CPU model (model.tflite).
    """

    def __init__(self, bundle: Bundle, num_threads: int = 1, use_edgetpu: bool = True) -> None:
        self.bundle = bundle
        self.meta = bundle.meta
        self.vocab_size = bundle.vocab_size
        self.hidden = bundle.hidden
        self.num_threads = num_threads
        self.on_edgetpu = False
        where = bundle.path or "<bundle>"
        names = (self.meta["inputs"], self.meta["outputs"])
        interp = None
        if bundle.edgetpu is not None and use_edgetpu:
            delegate = load_edgetpu_delegate()
            if delegate is not None:
                try:
                    interp = make_interpreter(bundle.edgetpu, num_threads=num_threads, delegates=[delegate])
                    names = (self.meta["edgetpu"]["inputs"], self.meta["edgetpu"]["outputs"])
                    self.on_edgetpu = True
                except (ValueError, RuntimeError) as exc:
                    log.info("Edge TPU model did not load (%s); running on the CPU", str(exc).splitlines()[0])
                    interp = None
        if interp is None:
            try:
                interp = make_interpreter(bundle.model, num_threads=num_threads)
            except (ValueError, RuntimeError) as exc:
                raise BundleError(f"{where}: model.tflite does not load ({' '.join(str(exc).split())})") from None
        try:
            interp.allocate_tensors()
        except RuntimeError as exc:
            which = "model_edgetpu.tflite" if self.on_edgetpu else "model.tflite"
            raise BundleError(f"{where}: {which} does not load ({' '.join(str(exc).split())})") from None
        self.interpreter = interp
        self._bind(interp, *names, where)
        self._pin(interp)
        self.reset()
        log.info(
            "model %s (%s%s), %d threads, interpreter %s",
            where,
            self.meta["variant"],
            ", Edge TPU" if self.on_edgetpu else "",
            num_threads,
            backend_name(),
        )

    def _bind(self, interp, in_names: dict, out_names: dict, where) -> None:
        ins = {d["name"]: d for d in interp.get_input_details()}
        outs = {d["name"]: d for d in interp.get_output_details()}

        def port(table, names, role, kind):
            name = names.get(role)
            if name not in table:
                raise BundleError(f"{where}: model.json names {kind} tensor {name!r} for {role!r}, not in the model")
            return _Port(interp, table[name])

        self.onehot = "onehot" in in_names
        tok_role = "onehot" if self.onehot else "token"
        self._token = port(ins, in_names, tok_role, "input")
        want_tok = (1, self.vocab_size) if self.onehot else (1, 1)
        if self._token.shape != want_tok:
            raise BundleError(
                f"{where}: {tok_role} input has shape {list(self._token.shape)}, expected {list(want_tok)}"
            )
        self._logits = port(outs, out_names, "logits", "output")
        if self._logits.shape != (1, self.vocab_size):
            raise BundleError(
                f"{where}: logits have shape {list(self._logits.shape)}, but the vocabulary has "
                f"{self.vocab_size} tokens"
            )
        self._in: list[_Port] = []
        self._out: list[_Port] = []
        for spec in self.meta["states"]:
            role, shape = spec["name"], tuple(spec["shape"])
            for ports, table, names, kind in (
                (self._in, ins, in_names, "input"),
                (self._out, outs, out_names, "output"),
            ):
                p = port(table, names, role, kind)
                if p.shape != shape:
                    raise BundleError(
                        f"{where}: state {role} is {list(shape)} in model.json but {list(p.shape)} "
                        f"in the model's {kind}"
                    )
                ports.append(p)
        if not (self._token.dtype == np.int32 or self.onehot):
            raise BundleError(f"{where}: token input has dtype {self._token.dtype}, expected int32")
        # The state lives in the dtype of the input tensors (float32, or int8 for the Edge TPU model), so
        # carrying it is one copy per tensor: outputs whose type or scale differ go through a
        # 256-entry table (int8 codes -> input codes), built once here.
        self._state = tuple(np.zeros(p.shape, p.dtype) for p in self._in)
        self._float_state = all(p.dtype == np.float32 and not p.scale for p in self._in)
        self._carry = tuple(_carry_table(o, i) for o, i in zip(self._out, self._in))
        self._logits_table = _carry_table(self._logits, None)
        if self.onehot:  # the one-hot input's (off, on) values, quantized if it is int8
            self._hot = (_quantize(self._token, 0.0), _quantize(self._token, 1.0))
        cond = self.meta.get("conditioning")
        self.keyed = isinstance(cond, dict) and cond.get("kind") == "key_input"
        self.key = conditioning.NONE  # the key input's id (a key input model)
        self._key: _Port | None = None
        self._last = np.zeros(self.vocab_size, np.float32)  # the last step's logits (a KEY token returns them)
        if self.keyed:
            role = "keyhot" if self.onehot else "key"
            self._key = port(ins, in_names, role, "input")
            want = (1, conditioning.N_INPUT_KEYS) if self.onehot else (1, 1)
            if self._key.shape != want or not (self.onehot or self._key.dtype == np.int32):
                raise BundleError(
                    f"{where}: {role} input is {self._key.dtype} {list(self._key.shape)}, expected "
                    f"{'a float or int8' if self.onehot else 'int32'} {list(want)}"
                )
            if self.onehot:
                self._key_hot = (_quantize(self._key, 0.0), _quantize(self._key, 1.0))

    def _pin(self, interp) -> None:
        """Hold views of the I/O buffers for good and invoke the interpreter's core directly.

        The Python wrapper refuses invoke() while views exist, because a later
        allocate_tensors() would move the buffers; StepModel never reallocates, so
        the views stay valid, and a step costs a few copies instead of a dozen view
        objects. Where the core is not reachable, views are made per step.
        """
        core = getattr(interp, "_interpreter", None)
        if core is None or not hasattr(core, "Invoke"):
            self._invoke = interp.invoke
            return
        self._invoke = core.Invoke
        for p in (self._token, self._logits, *self._in, *self._out):
            p.pinned = p.view()
        if self._key is not None:
            self._key.pinned = self._key.view()

    # -- state --------------------------------------------------------------

    def reset(self) -> None:
        """Zero state: the model has heard nothing (and a key input model is told no key)."""
        for s, p in zip(self._state, self._in):
            s.fill(_quantize(p, 0.0))
        self.key = conditioning.NONE

    def get_state(self) -> tuple:
        """A copy of (h1, c1, h2, c2), each float32 [H] (and the key id, for a key input model)."""
        if self._float_state:  # the engine checkpoints before every token: the plain copy
            out = tuple(s[0].copy() for s in self._state)
        else:
            out = tuple(_dequantize(p, s)[0].copy() for s, p in zip(self._state, self._in))
        return out + (self.key, self._last.copy()) if self.keyed else out

    def set_state(self, state) -> None:
        n = len(self._state)
        if self.keyed and len(state) == n + 2:  # get_state's (..., key id, last logits)
            self.key, self._last[...] = int(state[n]), state[n + 1]
            state = state[:n]
        if len(state) != n:
            raise ValueError(f"state must have {n} arrays, got {len(state)}")
        for dst, p, src in zip(self._state, self._in, state):
            src = np.asarray(src, dtype=np.float32)
            if src.size != dst.size:
                raise ValueError(f"state arrays must have {dst.size} values, got {src.size}")
            dst[...] = _quantize(p, src.reshape(dst.shape))

    # -- stepping -----------------------------------------------------------

    def step(self, token: int, out: np.ndarray | None = None) -> np.ndarray:
        """Feed one token; returns its logits (float32 [V]; into `out` if given) and keeps the new state."""
        token = int(token)
        logits = np.empty(self.vocab_size, np.float32) if out is None else out
        if self._key is not None:
            self.key, is_step = conditioning.held(token, self.key)
            if not is_step:  # a KEY token: the key for the steps after this one
                logits[...] = self._last
                return logits
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token {token} outside the vocabulary 0..{self.vocab_size - 1}")
        if self._key is not None:
            kv = self._key.get()
            if self.onehot:
                kv.fill(self._key_hot[0])
                kv[0, self.key] = self._key_hot[1]
            else:
                kv[0, 0] = self.key
            del kv
        if self.onehot:
            view = self._token.get()
            view.fill(self._hot[0])
            view[0, token] = self._hot[1]
            del view  # unpinned, the interpreter refuses to run while a view of its buffers is alive
        else:
            self._token.get()[0, 0] = token
        for p, s in zip(self._in, self._state):
            p.get()[...] = s
        self._invoke()
        for p, s, table in zip(self._out, self._state, self._carry):
            if table is None:
                s[...] = p.get()
            else:
                s[...] = table[p.get().view(np.uint8)]  # faster than np.take(out=), which casts the index
        if self._logits_table is None:
            logits[...] = self._logits.get()[0]
        else:
            logits[...] = self._logits_table[self._logits.get()[0].view(np.uint8)]
        if self.keyed:
            self._last[...] = logits
        return logits


def _quantize(port: _Port, x):
    """Float value(s) in the port's dtype: q = clamp(round(x / scale) + zero) for int8 tensors."""
    if not port.scale:
        return np.asarray(x, np.float32)
    return np.clip(np.rint(np.asarray(x, np.float64) / port.scale) + port.zero, port.lo, port.hi).astype(port.dtype)


def _dequantize(port: _Port, q) -> np.ndarray:
    if not port.scale:
        return np.asarray(q, np.float32)
    return ((np.asarray(q, np.float32) - port.zero) * port.scale).astype(np.float32)


def _carry_table(src: _Port, dst: _Port | None):
    """None where src's values can be copied into dst as they are; else a table indexed by src's
    byte (uint8 view of an 8-bit tensor) giving dst's value (float32 where dst is None)."""
    same = dst is not None and src.dtype == dst.dtype and (src.scale, src.zero) == (dst.scale, dst.zero)
    if same or (dst is None and not src.scale):
        return None
    if src.dtype.itemsize != 1:
        raise BundleError(f"cannot carry a {src.dtype} tensor into {dst.dtype if dst else 'float32'}")
    codes = np.arange(256, dtype=np.uint8).view(src.dtype)  # every code, in uint8-view order
    values = _dequantize(src, codes)
    return values if dst is None else _quantize(dst, values).astype(dst.dtype)


def open_model(path: str | os.PathLike | None = None, num_threads: int = 1, use_edgetpu: bool = True) -> StepModel:
    """Load a bundle (default: the shipped model) and make its StepModel."""
    if path is None:
        from .bundle import default_model_path

        path = default_model_path()
    return StepModel(load_bundle(Path(path)), num_threads=num_threads, use_edgetpu=use_edgetpu)
