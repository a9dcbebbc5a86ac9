"""MIDI ports that survive their devices, over one module per backend concern.

- errors.py: PortError, PortNotFound, and the one-line explanation of a MIDI system that will not open;
- backend.py: backends by name (open_backend, describe_backend), what kind a backend is, and
  PortIO, the interface of one backend client with one port;
- rtmidi_io.py: the rtmidi client (ALSA, CoreMIDI, Windows) and the one for any other mido backend;
- jack.py: JACK through libjack (JackMidiIO, what was measured and why), and JackWatch, the watch on the server;
- port.py: OutputPort and InputPort (reopened when lost, silenced on every open), listing and choosing ports.

Imports go one way: errors <- jack <- backend <- rtmidi_io <- port <- here.
"""

from .backend import API_ALIASES, describe_backend, open_backend
from .errors import PortError, PortNotFound
from .port import InputPort, OutputPort, default_output, format_port_list, list_ports, resolve_port

__all__ = [
    "API_ALIASES",
    "InputPort",
    "OutputPort",
    "PortError",
    "PortNotFound",
    "default_output",
    "describe_backend",
    "format_port_list",
    "list_ports",
    "open_backend",
    "resolve_port",
]
