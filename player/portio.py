"""The raw port handles under player.ports: rtmidi and mido ports, and the JACK server's watch.

player.ports builds ports that survive their devices on these; nothing else uses
them. The JACK specifics they handle are described in player.ports.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import socket
import threading
import weakref

import mido

log = logging.getLogger(__name__)

RTMIDI = "mido.backends.rtmidi"


class PortError(Exception):
    """A port or backend that cannot be opened; the message is one line for the user."""


class PortNotFound(PortError):
    """No port matches the name asked for (yet: `wait=True` waits for it)."""


# -- backends and names ------------------------------------------------------


def _explain(backend, error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    api = getattr(backend, "api", None)
    if "JACK" in text or api == "UNIX_JACK":
        return "no MIDI system: the JACK server is not running (start jackd, or choose another backend)"
    if "ALSA" in text or api == "LINUX_ALSA":
        if not os.path.exists("/dev/snd/seq"):
            return "no MIDI system: the ALSA sequencer is missing (no /dev/snd/seq; load the snd-seq module)"
        return f"no MIDI system: cannot open the ALSA sequencer ({text}; is this user in the 'audio' group?)"
    return f"no MIDI system: {text}"


def _own(name: str, client_name: str) -> bool:
    """Is this one of our own ports? (JACK renames a second client "cadenza-01".)"""
    client = name.split(":", 1)[0]
    return client == client_name or (client.startswith(client_name + "-") and client[len(client_name) + 1 :].isdigit())


def _is_rtmidi(backend) -> bool:
    return getattr(backend, "name", None) == RTMIDI


def _api_id(backend) -> int:
    import rtmidi

    if not backend.api:
        return rtmidi.API_UNSPECIFIED
    api = getattr(rtmidi, f"API_{backend.api}", None)
    if api is None:
        raise PortError(f"unknown rtmidi API {backend.api!r}")
    return api


def _is_jack(backend) -> bool:
    return _is_rtmidi(backend) and backend.api == "UNIX_JACK"


@contextlib.contextmanager
def _quiet_stderr():
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


class _RtmidiIO:
    """One rtmidi object (one ALSA or CoreMIDI/Windows client) and its one open port.

    An input hands its messages to `callback(event, t)` from rtmidi's callback in
    rtmidi's own thread, t = None (the callee stamps). JACK ports are
    player.jackmidi's, not this class's.
    """

    def __init__(self, backend, kind: str, client_name: str, callback=None):
        import rtmidi

        cls = rtmidi.MidiIn if kind == "input" else rtmidi.MidiOut
        self.kind, self.api, self.client_name = kind, backend.api, client_name
        self._backend = backend
        self._callback = callback
        kw = {"queue_size_limit": 8192} if kind == "input" else {}
        try:
            self.rt = cls(rtapi=_api_id(backend), name=client_name, **kw)
        except Exception as e:
            raise PortError(_explain(backend, e)) from None
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
            new = [n for n in after if n not in before and _own(n, self.client_name)]
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
            probe = cls(rtapi=_api_id(self._backend), name=f"{self.client_name}-probe")
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


class _MidoIO:
    """Any other mido backend (portmidi, or an in-memory one in tests)."""

    jack = False

    def __init__(self, backend, kind: str, client_name: str, callback=None):
        self.kind, self.client_name, self._backend, self._callback = kind, client_name, backend, callback
        self.port = None

    def names(self) -> list[str]:
        b = self._backend
        return list(b.get_input_names() if self.kind == "input" else b.get_output_names())

    def open(self, name: str | None) -> str:
        short = "in" if self.kind == "input" else "out"
        kw = {"virtual": True, "client_name": self.client_name} if name is None else {}
        if self.kind == "input":
            kw["callback"] = lambda msg: self._callback((msg.bytes(), 0.0), None)
            self.port = self._backend.open_input(name or short, **kw)
        else:
            self.port = self._backend.open_output(name or short, **kw)
        return name or f"{self.client_name}:{short}"

    def send(self, msg: mido.Message) -> None:
        self.port.send(msg)

    def close_port(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    def delete(self) -> None:
        self.close_port()


# -- JACK server watch -------------------------------------------------------------------------


class _JackWatch:
    """Is the JACK server that our clients live in still the same one?

    Class-level state on purpose: libjack's own state is per process (a new client
    frees the dead clients of every port), so the ports must coordinate per process.

    jack2 listens on <tmpdir>/jack_<server>_<uid>_0; a connect() there is silent for
    the server and fails at once when it is gone (even after a SIGKILL left the file).
    A restarted server has a new socket inode. Where no socket is found (PipeWire's
    libjack), the watch says "alive" and the port list check is all there is.
    """

    _lock = threading.Lock()
    _ports: "weakref.WeakSet" = weakref.WeakSet()

    def __init__(self):
        server = os.environ.get("JACK_DEFAULT_SERVER") or "default"
        dirs = [d for d in (os.environ.get("JACK_TMPDIR"), "/dev/shm", "/tmp") if d]
        found = []
        for d in dirs:
            found += glob.glob(os.path.join(glob.escape(d), f"jack_{glob.escape(server)}_{os.getuid()}_0"))
            found += glob.glob(os.path.join(glob.escape(d), f"jack_{glob.escape(server)}_*_0"))
        self.path = found[0] if found else None
        self.inode = self._inode()

    def _inode(self) -> int | None:
        try:
            return os.stat(self.path).st_ino if self.path else None
        except OSError:
            return None

    def alive(self) -> bool:
        """The server we connected to still runs (False after a restart too)."""
        if self.path is None:
            return True
        if self._inode() != self.inode:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self.path)
                return True
            except OSError:
                return False

    @classmethod
    def server_up(cls) -> bool:
        w = cls()
        return w.path is not None and w.alive()

    @classmethod
    def register(cls, port) -> None:
        with cls._lock:
            cls._ports.add(port)

    @classmethod
    def before_new_client(cls) -> None:
        """Drop every client of a dead server first: libjack frees them when a new client opens."""
        with cls._lock:
            ports = list(cls._ports)
        for p in ports:
            w = p._jack_watch
            if w is not None and not w.alive():
                p._drop_io("the JACK server went away")


# -- ports -------------------------------------------------------------------------------------
