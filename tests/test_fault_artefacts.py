"""Bad artefacts: the service exits 2 with one line naming the problem, and systemd does not restart it.

Each case runs the installed cadenza-play with a config file (as the service does);
a broken bundle or config must end in exit code 2 and one stderr line that names
the file or key, never a traceback. The unit's RestartPreventExitStatus=2 keeps
systemd from restarting into the same error five times a minute.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from cadenza.player.bundle import MODEL_JSON, MODEL_TFLITE
from support.daemon import run_player, write_config

pytest.importorskip("tensorflow")
from support.models import converted  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def good() -> Path:
    return converted().bundle


def _rezip(src: Path, dst: Path, meta=None, model: bytes | None = None) -> Path:
    with zipfile.ZipFile(src) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    if meta is not None:
        files[MODEL_JSON] = json.dumps(meta).encode()
    if model is not None:
        files[MODEL_TFLITE] = model
    with zipfile.ZipFile(dst, "w") as zf:
        for n, data in files.items():
            zf.writestr(n, data)
    return dst


def _bad_bundles(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (bundle, what the error line must say)."""
    data = good.read_bytes()
    with zipfile.ZipFile(good) as zf:
        meta = json.loads(zf.read(MODEL_JSON))
        tflite = zf.read(MODEL_TFLITE)
    out = {}

    def put(name, content: bytes, says):
        p = folder / f"{name}.cadenza"
        p.write_bytes(content)
        out[name] = (p, says)

    put("empty", b"", "empty file")
    put("truncated", data[: len(data) // 2], "not a bundle")
    put("garbage", bytes(range(256)) * 40, "not a bundle")
    flipped = bytearray(data)
    for i in range(len(flipped) // 3, len(flipped) // 3 + 64):  # inside the compressed model
        flipped[i] ^= 0xFF
    put("corrupt", bytes(flipped), "bundle")
    wrong_vocab = dict(meta, vocab=dict(meta["vocab"], size=meta["vocab"]["size"] + 58))
    out["vocabulary"] = (_rezip(good, folder / "vocabulary.cadenza", meta=wrong_vocab), "vocabulary")
    out["bad-tflite"] = (_rezip(good, folder / "bad-tflite.cadenza", model=tflite[:8] + b"\0" * 64), "model")
    other_state = dict(meta, states=[dict(s, shape=[1, 64]) for s in meta["states"]])
    out["state-shape"] = (_rezip(good, folder / "state-shape.cadenza", meta=other_state), "state")
    out["missing"] = (folder / "nonexistent.cadenza", "no such file")
    return out


BAD_CONFIGS = {  # file text -> what the error line must name
    '[play]\ntempo = "fast"\n': "play.tempo",
    '[midi]\nchannel = "1"\n': "midi.channel",
    "[play]\nseed = 1.5\n": "play.seed",
    "[play]\nmode = 3\n": "play.mode",
    "[midi]\nthru = 1\n": "midi.thru",
    "num_threads = true\n": "num_threads",
    "[play]\ntemperature = nan\n": "play.temperature",
    "[play]\ntempo = 100\ntempo = 120\n": "config.toml",  # TOML error: the file is named
    "[play]\ntemp = 1.0\n": "play.temp",
    "midi = 3\n": "[midi]",
}


def _check_one_line_exit_2(r, says: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.startswith("cadenza-play:")]
    assert len(lines) == 1, r.stderr
    assert says.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_bad_bundles_exit_2_with_one_line(good, tmp_path):
    for name, (path, says) in _bad_bundles(good, tmp_path).items():
        cfg = write_config(tmp_path / name, path, client="art")
        r = run_player("--config", str(cfg))
        _check_one_line_exit_2(r, says)
        assert str(path.name) in r.stderr, (name, r.stderr)


@pytest.mark.slow
def test_bad_configs_exit_2_with_one_line(tmp_path):
    for i, (text, says) in enumerate(BAD_CONFIGS.items()):
        cfg = tmp_path / str(i) / "config.toml"
        cfg.parent.mkdir()
        cfg.write_text(text)
        r = run_player("--config", str(cfg))
        _check_one_line_exit_2(r, says)


def test_unit_does_not_restart_on_exit_2():
    unit = (REPO / "systemd" / "cadenza.service").read_text()
    keys = [line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")]
    assert ["RestartPreventExitStatus", "2"] in [[k.strip(), v.strip()] for k, v in keys]
    assert ["Restart", "on-failure"] in [[k.strip(), v.strip()] for k, v in keys]
