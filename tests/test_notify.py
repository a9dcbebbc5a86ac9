"""The systemd notify protocol against a real datagram socket the test owns."""

from __future__ import annotations

import os
import socket
import time

import pytest

from cadenza.player import notify
from cadenza.player.notify import Notifier


@pytest.fixture
def sock_path(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield path, s
    s.close()


def _recv(s) -> dict:
    data = s.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_status_watchdog_stopping(sock_path):
    path, s = sock_path
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="playing to 'synth:in'")
    assert _recv(s) == {"READY": "1", "STATUS": "playing to 'synth:in'"}
    assert n.status("two\nlines")
    assert _recv(s) == {"STATUS": "two lines"}
    assert n.watchdog()
    assert _recv(s) == {"WATCHDOG": "1"}
    assert n.stopping()
    assert _recv(s) == {"STOPPING": "1"}
    n.close()
    n.close()


def test_reloading_carries_monotonic_usec(sock_path):
    path, s = sock_path
    n = Notifier({"NOTIFY_SOCKET": path})
    before = time.monotonic_ns() // 1000
    assert n.reloading()
    fields = _recv(s)
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000


def test_abstract_socket():
    name = f"cadenza-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify(READY=1)
        assert _recv(s) == {"READY": "1"}
    finally:
        s.close()


def test_no_socket_is_a_no_op():
    n = Notifier({})
    assert not n.enabled
    assert not n.ready()
    assert not n.watchdog()
    assert n.watchdog_interval() is None


def test_vanished_socket_never_raises(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level("DEBUG", logger="cadenza.player.notify"):
        assert not n.ready()
        assert not n.watchdog()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # logged once, not per ping
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).ready()


def test_watchdog_interval():
    assert Notifier({"WATCHDOG_USEC": "10000000"}).watchdog_interval() == 5.0
    pid = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": pid}).watchdog_interval() == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "soon"}).watchdog_interval() is None


def test_module_shortcuts_read_environ(sock_path, monkeypatch):
    path, s = sock_path
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(notify, "_default", None)
    assert notify.ready()
    assert _recv(s) == {"READY": "1"}
    monkeypatch.setattr(notify, "_default", None)
