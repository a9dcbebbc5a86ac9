"""The bundle format: round trip, the shipped-model search path, and every way a file can be bad."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from cadenza.player import bundle as bd
from cadenza.player import events

FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(64)  # the flatbuffer magic is all load_bundle reads
H = 8


def meta(**changes) -> dict:
    m = {
        "format": bd.FORMAT_VERSION,
        "variant": "int8",
        "vocab": events.layout(),
        "ticks_per_beat": events.TICKS_PER_BEAT,
        "inputs": {"token": "serving_default_token:0", **{n: f"serving_default_{n}:0" for n in bd.STATE_NAMES}},
        "outputs": {"logits": "PartitionedCall:4", **{n: f"PartitionedCall:{i}" for i, n in enumerate(bd.STATE_NAMES)}},
        "states": [{"name": n, "shape": [1, H]} for n in bd.STATE_NAMES],
        "config": {"hidden": H},
        "metrics": {"test_nll": 1.5},
        "corpus": "bach",
        "created": "2026-01-01T00:00:00+00:00",
    }
    m.update(changes)
    return m


def zip_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def good_files(**meta_changes) -> dict:
    return {bd.MODEL_JSON: json.dumps(meta(**meta_changes)), bd.MODEL_TFLITE: FAKE_TFLITE}


def test_write_then_load_gives_back_everything(tmp_path):
    path = bd.write_bundle(tmp_path / "sub" / "m.cadenza", meta(), FAKE_TFLITE, edgetpu=None)
    b = bd.load_bundle(path)
    assert b.path == path and b.model == FAKE_TFLITE and b.edgetpu is None
    assert b.meta == meta() and b.vocab_size == events.VOCAB_SIZE and b.hidden == H and b.variant == "int8"
    assert not list(path.parent.glob("*.tmp"))  # written through a temporary file, renamed
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the player's service user


def test_edgetpu_model_travels_with_its_tensor_names(tmp_path):
    section = {"inputs": {"onehot": "a", **{n: n for n in bd.STATE_NAMES}}, "outputs": {}}
    path = bd.write_bundle(tmp_path / "m.cadenza", meta(edgetpu=section), FAKE_TFLITE, edgetpu=FAKE_TFLITE)
    b = bd.load_bundle(path)
    assert b.edgetpu == FAKE_TFLITE and b.meta["edgetpu"] == section


def test_write_refuses_a_bad_meta(tmp_path):
    with pytest.raises(bd.BundleError, match="lacks 'states'"):
        bd.write_bundle(tmp_path / "m.cadenza", {k: v for k, v in meta().items() if k != "states"}, FAKE_TFLITE)
    assert not list(tmp_path.iterdir())


def _bad(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "bad.cadenza"
    p.write_bytes(data)
    return p


def _truncated() -> bytes:
    data = zip_bytes(good_files())
    return data[: len(data) // 2]


BAD_CASES = {
    "random bytes": (lambda: bytes(range(256)) * 20, "not a bundle"),
    "truncated zip": (_truncated, "not a bundle"),
    "empty file": (lambda: b"", "empty file"),
    "newer format": (lambda: zip_bytes(good_files(format=bd.FORMAT_VERSION + 1)), "newer than this player"),
    "no model.json": (lambda: zip_bytes({bd.MODEL_TFLITE: FAKE_TFLITE}), "no model.json"),
    "no model.tflite": (lambda: zip_bytes({bd.MODEL_JSON: json.dumps(meta())}), "no model.tflite"),
    "json not json": (lambda: zip_bytes({bd.MODEL_JSON: "{oops", bd.MODEL_TFLITE: FAKE_TFLITE}), "not valid JSON"),
    "json not object": (lambda: zip_bytes({bd.MODEL_JSON: "[1]", bd.MODEL_TFLITE: FAKE_TFLITE}), "not a JSON object"),
    "no format": (
        lambda: zip_bytes({bd.MODEL_JSON: json.dumps({"variant": "x"}), bd.MODEL_TFLITE: FAKE_TFLITE}),
        "no integer 'format'",
    ),
    "other vocabulary": (lambda: zip_bytes(good_files(vocab={**events.layout(), "size": 300})), "vocabulary mismatch"),
    "other tick rate": (lambda: zip_bytes(good_files(ticks_per_beat=96)), "ticks_per_beat"),
    "bad state entry": (lambda: zip_bytes(good_files(states=[{"name": "h1", "shape": [1, -3]}])), "malformed state"),
    "missing output": (lambda: zip_bytes(good_files(outputs={"h1": "x"})), "no output tensor for 'logits'"),
    "model not tflite": (
        lambda: zip_bytes({bd.MODEL_JSON: json.dumps(meta()), bd.MODEL_TFLITE: b"hello"}),
        "not a TFLite model",
    ),
    "edgetpu model without section": (
        lambda: zip_bytes({**good_files(), bd.EDGETPU_TFLITE: FAKE_TFLITE}),
        "no 'edgetpu' section",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_a_bad_bundle_is_one_line_naming_file_and_problem(tmp_path, case):
    make, problem = BAD_CASES[case]
    path = _bad(tmp_path, make())
    with pytest.raises(bd.BundleError) as err:
        bd.load_bundle(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and problem in msg, msg
    assert isinstance(err.value, ValueError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(bd.BundleError, match="no such file"):
        bd.load_bundle(tmp_path / "nope.cadenza")
    with pytest.raises(bd.BundleError, match="is a directory"):
        bd.load_bundle(tmp_path)


def test_default_model_path_prefers_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CADENZA_MODEL", str(tmp_path / "mine.cadenza"))
    assert bd.default_model_path() == tmp_path / "mine.cadenza"


def test_default_model_path_search_order(monkeypatch):
    monkeypatch.delenv("CADENZA_MODEL", raising=False)
    order = bd.model_search_path()
    repo = Path(bd.__file__).resolve().parent.parent
    assert order[0] == repo / "models" / "bach.cadenza"
    assert [str(p) for p in order[2:]] == ["/usr/share/cadenza/bach.cadenza", "/opt/cadenza/share/bach.cadenza"]
    assert order[1].parts[-3:] == ("share", "cadenza", "bach.cadenza")
    found = bd.default_model_path()
    assert found in order and (found.is_file() or found == order[0])
