"""Shared fixtures: a private JACK server for the tests that need real MIDI ports; the tiny real bundle."""

from __future__ import annotations

import os

import pytest

from support.jack import JackServer, jack_env, start_free_server


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """A jackd (dummy driver, 16-frame period) for this test run; its name is in JACK_DEFAULT_SERVER."""
    if not JackServer.available():
        if os.environ.get("CI"):
            pytest.fail("jackd is not installed (apt install jackd2); CI must run the JACK tests")
        pytest.skip("jackd is not installed (apt install jackd2): the real-port tests need a JACK server")
    try:
        server = start_free_server("cadenza-test", log_dir=str(tmp_path_factory.mktemp("jack")))
    except RuntimeError as e:
        pytest.fail(str(e)) if os.environ.get("CI") else pytest.skip(f"cannot start jackd: {e}")
    saved = {k: os.environ.get(k) for k in jack_env(server.name)}
    os.environ.update(jack_env(server.name))  # for this process and the children it starts
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def bundle():
    """The tiny converted bundle (`support.models.converted`, made once per process)."""
    pytest.importorskip("tensorflow")
    from support.models import converted

    return converted().bundle
