"""The install: one import package, `cadenza`, and nothing else in site-packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a copy of the tree without build outputs: setuptools reuses a stale build/ folder.
    src = out / "src"
    shutil.copytree(
        REPO, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "bench", "runs")
    )
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("cadenza-*.whl")
    return whl


def test_the_wheel_holds_only_the_cadenza_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    dist = {t for t in top if t.startswith("cadenza-") and t.endswith((".dist-info", ".data"))}
    assert top - dist == {"cadenza"}, sorted(top)
    packages = {n.rsplit("/", 1)[0] for n in names if n.startswith("cadenza/") and n.endswith("/__init__.py")}
    in_tree = {
        "cadenza/" + str(init.parent.relative_to(REPO))
        for top in ("player", "convert", "train")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert packages == in_tree, sorted(packages ^ in_tree)  # every package of the tree, subpackages too
    modules = {n for n in names if n.startswith("cadenza/") and n.endswith(".py")}
    in_tree_modules = {
        "cadenza/" + str(f.relative_to(REPO))
        for top in ("player", "convert", "train")
        for f in (REPO / top).rglob("*.py")
    }
    assert modules == in_tree_modules, sorted(modules ^ in_tree_modules)
    assert "cadenza/__init__.py" not in names  # a namespace: other distributions may add to it
    assert not any(n.startswith(("cadenza/tests/", "cadenza/support/", "cadenza/bench/")) for n in names)
    for model in ("bach", "folk"):  # the shipped models: the default and the default bank's second patch
        assert any(n.endswith(f".data/data/share/cadenza/{model}.cadenza") for n in names), model


def test_cadenza_play_help_from_the_installed_wheel(wheel, tmp_path):
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(
        [str(env_dir / "bin" / "cadenza-play"), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage: cadenza-play")
    code = "import importlib.util as u; print([n for n in ('player', 'convert', 'train') if u.find_spec(n)])"
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_one_copy_of_each_module_at_run_time(tmp_path):
    """Importing the player, the converter and the trainer loads no top-level `player`, `convert` or `train`."""
    code = (
        "import sys, cadenza.player.__main__, cadenza.player.daemon, cadenza.player.render, cadenza.convert.build, "
        "cadenza.train.corpus; print(sorted(n for n in sys.modules if n.split('.')[0] in ('player', 'convert', "
        "'train')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
