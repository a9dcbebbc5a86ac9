"""The rtmidi client (ALSA, CoreMIDI, Windows) and the client for any other mido backend.

Both offer backend.PortIO; port.py builds the ports that survive their devices on
them. JACK clients are jack.py's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import mido

from .backend import api_id, is_own_port
from .errors import PortError, explain

# An input's callback: (event, t) where event[0] is the message's bytes; t a time.monotonic() stamp, or None
# (the callee stamps).
Callback = Callable[[Any, Any], None]


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hide what C libraries print to fd 2 (for one-shot listings only: it hides every thread's stderr)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def list_ports(backend: mido.Backend) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of an rtmidi backend: ports we can read from, ports we can write to. Raises PortError."""
    import rtmidi

    with quiet_stderr():  # ALSA and libjack print their complaints to fd 2
        try:
            probes = [rtmidi.MidiIn(rtapi=api_id(backend)), rtmidi.MidiOut(rtapi=api_id(backend))]
        except Exception as e:
            raise PortError(explain(backend, e)) from None
        try:
            return probes[0].get_ports(), probes[1].get_ports()
        finally:
            for p in probes:
                p.delete()


class RtmidiIO:
    """One rtmidi object (one ALSA or CoreMIDI/Windows client) and its one open port.

    An input hands its messages to `callback(event, t)` from rtmidi's callback in
    rtmidi's own thread, t = None (the callee stamps). JACK ports are
    jack.JackMidiIO's, not this class's.
    """

    jack = False

    def __init__(self, backend: mido.Backend, kind: str, client_name: str, callback: Callback | None = None):
        import rtmidi

        cls = rtmidi.MidiIn if kind == "input" else rtmidi.MidiOut
        self.kind, self.api, self.client_name = kind, backend.api, client_name
        self._backend = backend
        self._callback = callback
        kw = {"queue_size_limit": 8192} if kind == "input" else {}
        try:
            self.rt = cls(rtapi=api_id(backend), name=client_name, **kw)
        except Exception as e:
            raise PortError(explain(backend, e)) from None
        if kind == "input":
            # Timing messages are wanted (external clock); sysex and active sensing are not.
            self.rt.ignore_types(sysex=True, timing=False, active_sense=True)
        # RtMidi reports a failed ALSA send as a warning (python-rtmidi: warnings.warn), not
        # an error: catch it here so that send() can tell.
        self.warning: str | None = None
        self.rt.set_error_callback(self._on_error)

    def _on_error(self, etype, msg, data=None) -> None:
        import rtmidi

        if etype in (rtmidi.ERRORTYPE_WARNING, rtmidi.ERRORTYPE_DEBUG_WARNING):
            self.warning = msg
            return
        default = getattr(rtmidi._rtmidi, "_default_error_handler", None)
        if default is not None:
            default(etype, msg, data)  # raises the matching rtmidi exception
        raise rtmidi.RtMidiError(msg)

    def names(self) -> list[str]:
        return self.rt.get_ports()

    def open(self, name: str | None) -> str:
        """Open the named peer (None = a virtual port); the name our port is known by."""
        short = "in" if self.kind == "input" else "out"
        if name is None:
            before = self._opposite_names()
            self.rt.open_virtual_port(short)
            after = self._opposite_names()
            new = [n for n in after if n not in before and is_own_port(n, self.client_name)]
            resolved = new[0] if len(new) == 1 else f"{self.client_name}:{short}"
        else:
            names = self.names()
            if name not in names:
                raise PortError(f"MIDI {self.kind} {name!r} is gone")
            self.rt.open_port(names.index(name), short)
            resolved = name
        if self.kind == "input":
            self.rt.set_callback(self._callback)
        return resolved

    def _opposite_names(self) -> list[str]:
        """Ports in the other direction (where our virtual port shows up), via a short-lived client."""
        import rtmidi

        cls = rtmidi.MidiOut if self.kind == "input" else rtmidi.MidiIn
        try:
            probe = cls(rtapi=api_id(self._backend), name=f"{self.client_name}-probe")
        except Exception:
            return []
        try:
            return probe.get_ports()
        finally:
            probe.delete()

    def send(self, msg: mido.Message) -> None:
        self.warning = None
        self.rt.send_message(msg.bytes())
        if self.warning is not None:
            raise OSError(self.warning)

    def close_port(self) -> None:
        self.rt.close_port()
        if self.kind == "input":
            with contextlib.suppress(Exception):
                self.rt.cancel_callback()

    def delete(self) -> None:
        with contextlib.suppress(Exception):
            self.close_port()
        self.rt.delete()


class MidoIO:
    """Any other mido backend (portmidi, or an in-memory one in tests)."""

    jack = False

    def __init__(self, backend: mido.Backend, kind: str, client_name: str, callback: Callback | None = None):
        self.kind, self.client_name, self._backend, self._callback = kind, client_name, backend, callback
        self.port: mido.ports.BasePort | None = None

    def names(self) -> list[str]:
        b = self._backend
        return list(b.get_input_names() if self.kind == "input" else b.get_output_names())

    def open(self, name: str | None) -> str:
        short = "in" if self.kind == "input" else "out"
        kw: dict[str, Any] = {"virtual": True, "client_name": self.client_name} if name is None else {}
        if self.kind == "input":
            callback = self._callback
            if callback is None:
                raise PortError("a MIDI input needs a callback")
            kw["callback"] = lambda msg: callback((msg.bytes(), 0.0), None)
            self.port = self._backend.open_input(name or short, **kw)
        else:
            self.port = self._backend.open_output(name or short, **kw)
        return name or f"{self.client_name}:{short}"

    def send(self, msg: mido.Message) -> None:
        if self.port is None:
            raise OSError(f"MIDI {self.kind} is not open")
        self.port.send(msg)

    def close_port(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    def delete(self) -> None:
        self.close_port()
