"""The errors every MIDI module raises, and the one-line explanation of a MIDI system that will not open."""

from __future__ import annotations

import os
from typing import Any


class PortError(Exception):
    """A port or backend that cannot be opened; the message is one line for the user."""


class PortNotFound(PortError):
    """No port matches the name asked for (yet: `wait=True` waits for it)."""


def explain(backend: Any, error: Exception) -> str:
    """What a failed client creation means for the user, in one line (which MIDI system is missing, what to do)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    api = getattr(backend, "api", None)
    if "JACK" in text or api == "UNIX_JACK":
        return "no MIDI system: the JACK server is not running (start jackd, or choose another backend)"
    if "ALSA" in text or api == "LINUX_ALSA":
        if not os.path.exists("/dev/snd/seq"):
            return "no MIDI system: the ALSA sequencer is missing (no /dev/snd/seq; load the snd-seq module)"
        return f"no MIDI system: cannot open the ALSA sequencer ({text}; is this user in the 'audio' group?)"
    return f"no MIDI system: {text}"
