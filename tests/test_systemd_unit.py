"""The service unit as systemd reads it: hardened, verified, and wired to the player's exit codes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.daemon import UNIT, unit_keys

REPO = Path(__file__).resolve().parent.parent

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and not os.environ.get("CI"),
    reason="systemd-analyze not installed (apt install systemd)",
)


def _unit_with_real_command(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's cadenza-play, so verify can resolve it."""
    exe = Path(sys.executable).parent / "cadenza-play"
    assert exe.exists(), "the test environment must have the cadenza-play entry point"
    text = UNIT.read_text().replace("/opt/cadenza/venv/bin/cadenza-play", str(exe))
    out = tmp_path / "cadenza.service"
    out.write_text(text)
    return out


def test_unit_declares_the_service_contract():
    k = unit_keys()
    assert k["Type"] == ["notify"]
    assert k["Restart"] == ["on-failure"]
    assert k["RestartPreventExitStatus"] == ["2"]  # bad config/model/port: no restart loop
    assert int(k["WatchdogSec"][0]) > 0
    assert k["StartLimitBurst"] and k["StartLimitIntervalSec"]
    assert k["DynamicUser"] == ["yes"] and "audio" in k["SupplementaryGroups"][0]
    assert k["DeviceAllow"] == ["char-alsa rw", "/dev/cpu_dma_latency w"] and k["DevicePolicy"] == ["closed"]
    assert int(k["LimitRTPRIO"][0]) > 0
    assert "/etc/cadenza/config.toml" in k["ExecStart"][0]


@needs_systemd
def test_verify_prints_nothing(tmp_path):
    unit = _unit_with_real_command(tmp_path)
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # verify exits 0 even for unknown keys: its output is the verdict
    assert res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr


@needs_systemd
def test_security_exposure_at_most_1_5(tmp_path):
    unit = _unit_with_real_command(tmp_path)
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr
    assert float(m.group(1)) <= 1.5, res.stdout


def test_install_into_a_staging_root(tmp_path):
    """`make install DESTDIR=...` lays out venv, unit, model and config without touching the system."""
    if not (REPO / "models" / "bach.cadenza").exists():
        pytest.skip("no default model in this checkout yet")
    dest = tmp_path / "root"
    cfg_dir = dest / "etc" / "cadenza"
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "config.toml").write_text("# mine\n")
    res = subprocess.run(
        ["make", "-s", "install", f"DESTDIR={dest}", "PYTHON=" + sys.executable],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if res.returncode != 0 and "No matching distribution" in res.stdout + res.stderr:
        pytest.skip("package index unreachable")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (dest / "opt/cadenza/share/bach.cadenza").exists() and (dest / "opt/cadenza/share/folk.cadenza").exists()
    unit = (dest / "etc/systemd/system/cadenza.service").read_text()
    assert "ExecStart=/opt/cadenza/venv/bin/cadenza-play" in unit
    assert (cfg_dir / "config.toml").read_text() == "# mine\n"  # never overwritten
    rule = (dest / "etc/udev/rules.d/60-cadenza-cpu-dma-latency.rules").read_text()
    assert 'KERNEL=="cpu_dma_latency", GROUP="audio"' in rule
    py = dest / "opt/cadenza/venv/bin/python"
    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import importlib.util as u; print([m for m in ('tensorflow','keras','music21') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "[]"  # the Pi gets the player only
