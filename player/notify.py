"""The systemd notify protocol, in pure Python (no libsystemd on the Pi needed).

systemd hands a Type=notify service a datagram socket in NOTIFY_SOCKET (a path,
or an abstract socket written "@name"); the service sends "KEY=value" lines to
it: READY=1 once the ports are open, WATCHDOG=1 at least every WATCHDOG_USEC/2,
STATUS=... for `systemctl status`, STOPPING=1, RELOADING=1 on SIGHUP.

Without NOTIFY_SOCKET (run by hand, in tests) every call is a no-op. Nothing here
raises: a daemon must not die because its supervisor's socket went away. The
first failure is logged at warning level, later ones at debug.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Talks to the socket in `environ["NOTIFY_SOCKET"]` (os.environ by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields) -> bool:
        """Send KEY=value fields (READY=1 is `notify(READY=1)`); True when sent."""
        if self._address is None or not fields:
            return False
        text = "\n".join(f"{k}={v}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)  # never stall the caller on a full socket
            self._sock.sendto(text.encode("utf-8", "replace"), self._address)
            return True
        except (OSError, ValueError) as e:
            level = logging.DEBUG if self._warned else logging.WARNING
            log.log(level, "systemd notify failed (%s): %s", text.split("\n")[0], e)
            self._warned = True
            self.close()  # a fresh socket next time, in case systemd restarted
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text.replace("\n", " "))

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)

    def reloading(self) -> bool:
        # Type=notify-reload wants the monotonic time of the reload with RELOADING=1.
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), None if no watchdog for us."""
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None  # the watchdog is meant for another process (our parent)
            except ValueError:
                return None
        return usec / 2e6

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET=%r is neither a path nor @abstract; not notifying systemd", value)
    return None


# Module-level shortcuts over one Notifier that reads os.environ on first use.
_default: Notifier | None = None


def _get() -> Notifier:
    global _default
    if _default is None:
        _default = Notifier()
    return _default


def notify(**fields) -> bool:
    return _get().notify(**fields)


def ready(status: str | None = None) -> bool:
    return _get().ready(status)


def watchdog() -> bool:
    return _get().watchdog()


def status(text: str) -> bool:
    return _get().status(text)


def stopping() -> bool:
    return _get().stopping()


def reloading() -> bool:
    return _get().reloading()


def watchdog_interval() -> float | None:
    return _get().watchdog_interval()
