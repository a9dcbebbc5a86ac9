"""MIDI backends by name, what kind a backend is, and the one interface every backend's client offers.

A backend is a mido.Backend: rtmidi with an API (ALSA, JACK, CoreMIDI, Windows) or
any other mido backend (portmidi, an in-memory one in tests). Each kind has its
client class (`PortIO`): rtmidi_io.RtmidiIO, jack.JackMidiIO, rtmidi_io.MidoIO.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

import mido

from .errors import PortError
from .jack import JackWatch

RTMIDI = "mido.backends.rtmidi"
API_ALIASES = {"alsa": "LINUX_ALSA", "jack": "UNIX_JACK", "coremidi": "MACOSX_CORE", "windows": "WINDOWS_MM"}


class PortIO(Protocol):
    """One client of a MIDI system and its one port, in one direction (kind "input" or "output").

    Made as `cls(backend, kind, client_name, callback)`; an input hands what it receives
    to `callback(event, t)` on its own thread.
    """

    jack: bool  # a JACK client: its server is watched (jack.JackWatch)

    def names(self) -> list[str]:
        """The peers this port can connect to (outputs for an input, inputs for an output)."""
        ...

    def open(self, name: str | None) -> str:
        """Open the named peer (None = a port of our own); the name our port is known by."""
        ...

    def send(self, msg: mido.Message) -> None: ...

    def close_port(self) -> None: ...

    def delete(self) -> None:
        """Close the port and the client; the object is not used again."""
        ...


def is_rtmidi(backend: mido.Backend) -> bool:
    return getattr(backend, "name", None) == RTMIDI


def is_jack(backend: mido.Backend) -> bool:
    return is_rtmidi(backend) and backend.api == "UNIX_JACK"


def api_id(backend: mido.Backend) -> int:
    """rtmidi's number for the backend's API (rtmidi.API_UNSPECIFIED when it names none)."""
    import rtmidi

    if not backend.api:
        return rtmidi.API_UNSPECIFIED
    api = getattr(rtmidi, f"API_{backend.api}", None)
    if api is None:
        raise PortError(f"unknown rtmidi API {backend.api!r}")
    return api


def is_own_port(name: str, client_name: str) -> bool:
    """Is this one of our own ports? (JACK renames a second client "cadenza-01".)"""
    client = name.split(":", 1)[0]
    return client == client_name or (client.startswith(client_name + "-") and client[len(client_name) + 1 :].isdigit())


def open_backend(name: str | None) -> mido.Backend:
    """A mido backend by short name (alsa, jack, coremidi, windows), full mido name, or ""/None = auto.

    Auto is rtmidi's default API (ALSA on Linux), except on a Linux without an ALSA
    sequencer where a JACK server is running: then JACK.
    """
    name = (name or "").strip()
    if not name:
        full = RTMIDI
        if sys.platform.startswith("linux") and not os.path.exists("/dev/snd/seq") and JackWatch.server_up():
            full = f"{RTMIDI}/UNIX_JACK"  # no ALSA sequencer here (a container, say), but JACK runs
    elif name.lower() in API_ALIASES:
        full = f"{RTMIDI}/{API_ALIASES[name.lower()]}"
    elif "." in name:
        full = name
    else:
        raise PortError(f"unknown MIDI backend {name!r}; use one of {', '.join(API_ALIASES)} or a mido backend name")
    try:
        backend = mido.Backend(full, load=True)
    except Exception as e:  # ImportError, or whatever a broken backend module raises
        raise PortError(f"cannot load MIDI backend {full!r}: {e}") from None
    if backend.name == RTMIDI and backend.api:
        import rtmidi

        compiled = [rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api()]
        if api_id(backend) not in rtmidi.get_compiled_api():
            raise PortError(f"this python-rtmidi has no {backend.api} support (it has: {', '.join(compiled)})")
    return backend


def describe_backend(backend: mido.Backend) -> str:
    if is_jack(backend):
        return "JACK (libjack)"
    if is_rtmidi(backend):
        return f"rtmidi/{backend.api}" if backend.api else "rtmidi (default API)"
    return str(getattr(backend, "name", backend))
