"""Log lines that a flood of input could repeat thousands of times a second, kept to one a second.

    quiet = Throttle(log, interval=1.0)
    quiet.info("panic", "panic: all notes off")

The first line of a kind is written at once; repeats within `interval` are counted,
and the next line written says how many were left out. The journal keeps what a
musician needs (what happened, and how often), not a CC storm line by line.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable


class Throttle:
    def __init__(
        self, logger: logging.Logger, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, kind: str, msg: str, *args) -> bool:
        """Write `msg` unless a line of this `kind` was written less than `interval` ago; True if written."""
        now = self.clock()
        if now - self._last.get(kind, -math.inf) < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        if held:
            msg = f"{msg} (and {held} more like it left out)"
        self._last[kind] = now
        self.logger.log(level, msg, *args)
        return True

    def reset(self) -> None:
        self._last.clear()
        self._held.clear()

    def info(self, kind: str, msg: str, *args) -> bool:
        return self.log(logging.INFO, kind, msg, *args)
