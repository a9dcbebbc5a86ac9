"""Live controls: the CC map, and the router that takes every input message where it goes.

A knob (CC value 0..127) maps to a setting:

    temperature   0.05 .. 2.0, linear (64 ~ 1.0)
    tempo         40 .. 240 BPM, linear (internal clock only)
    mode          0-42 call-response, 43-85 duet, 86-127 solo
    answer_bars   1 .. 16
    key_strength  0 .. 7, linear (64 ~ 3.5; 0 lets the model leave the key; an answer's first bar leans
                  play.key_opening times as hard)
    panic         value >= 64: every note off, the model stops (and listens again)
    phrase_end    value >= 64: the phrase is over, answer now
    patch         the patch bank in program order, evenly spread over the knob's travel

A Program Change selects the patch of that number (player/patches.py); one with none is ignored.

CC 64 (sustain) is always read: releasing it ends a phrase when sustain_ends_phrase.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Callable

import mido

from .config import MODES
from .events import CC_SUSTAIN, SWITCH_ON
from .logutil import Throttle
from .scheduler import Scheduler

if TYPE_CHECKING:
    from .patches import Switcher

log = logging.getLogger(__name__)
QUIET = Throttle(log)  # a CC storm must not write a line per message

TEMPERATURE_RANGE = (0.05, 2.0)
TEMPO_RANGE = (40.0, 240.0)
KEY_STRENGTH_RANGE = (0.0, 7.0)
NOTE_TYPES = ("note_on", "note_off")
THRU_TYPES = ("note_on", "note_off", "control_change", "pitchwheel", "aftertouch", "polytouch", "program_change")


@dataclasses.dataclass(frozen=True)
class ControlMap:
    """CC numbers (None: not mapped)."""

    temperature: int | None = None
    tempo: int | None = None
    mode: int | None = None
    answer_bars: int | None = None
    panic: int | None = None
    phrase_end: int | None = None
    sustain_ends_phrase: bool = True
    key_strength: int | None = None
    patch: int | None = None

    @classmethod
    def from_settings(cls, controls) -> "ControlMap":
        def cc(name):
            v = getattr(controls, name, None)
            return None if v is None or isinstance(v, bool) or int(v) < 0 else int(v)

        return cls(
            cc("temperature"),
            cc("tempo"),
            cc("mode"),
            cc("answer_bars"),
            cc("panic"),
            cc("phrase_end"),
            bool(getattr(controls, "sustain_ends_phrase", True)),
            cc("key_strength"),
            cc("patch"),
        )

    def interpret(self, control: int, value: int) -> tuple[str, object] | None:
        """(setting, new value) for a CC, or None when the CC is not mapped."""
        v = min(max(int(value), 0), 127) / 127.0
        if control == self.temperature:
            lo, hi = TEMPERATURE_RANGE
            return "temperature", round(lo + v * (hi - lo), 3)
        if control == self.tempo:
            lo, hi = TEMPO_RANGE
            return "tempo", round(lo + v * (hi - lo), 1)
        if control == self.mode:
            return "mode", MODES[min(int(value) * len(MODES) // 128, len(MODES) - 1)]
        if control == self.key_strength:
            lo, hi = KEY_STRENGTH_RANGE
            return "key_strength", round(lo + v * (hi - lo), 2)
        if control == self.answer_bars:
            return "answer_bars", 1 + int(value) * 16 // 128
        if control == self.panic:
            return ("panic", True) if value >= SWITCH_ON else None
        if control == self.phrase_end:
            return ("phrase_end", True) if value >= SWITCH_ON else None
        if control == self.patch:
            return "patch", min(max(int(value), 0), 127)
        return None


class InputRouter:
    """Takes (t, msg, tick) from the scheduler (interfaces.InputHandler): thru, controls, the conductor.

    on_input(t, msg) hears every message first, before the channel filter (the daemon's recorder);
    on_change(setting, value) after a control changed a setting (the daemon's status line)."""

    def __init__(
        self,
        scheduler: Scheduler,
        controls: ControlMap,
        *,
        thru: bool = False,
        input_channel: int | None = None,
        on_change: Callable[[str, object], None] | None = None,
        on_input: Callable[[float, mido.Message], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.controls = controls
        self.thru = thru
        self.input_channel = input_channel  # 0..15, None: every channel
        self.on_change = on_change
        self.on_input = on_input
        self.patches: Switcher | None = None  # the patch bank's switcher, when there is a bank

    def set_controls(self, controls: ControlMap) -> None:
        """A new CC map (a reload)."""
        self.controls = controls

    def __call__(self, t: float, msg: mido.Message, tick: float) -> None:
        if self.on_input is not None:
            self.on_input(t, msg)
        sch = self.scheduler
        channel = getattr(msg, "channel", None)
        if channel is not None and self.input_channel is not None and channel != self.input_channel:
            return
        if self.thru and msg.type in THRU_TYPES:
            sch.sink.send(msg.copy(channel=sch.engine.channel))
        if msg.type in NOTE_TYPES:
            sch.conductor.note(msg, tick)
        elif msg.type == "control_change":
            if msg.control == CC_SUSTAIN:
                sch.conductor.sustain(msg.value, tick)
            change = self.controls.interpret(msg.control, msg.value)
            if change is not None:
                self.apply(*change, t=t, tick=tick)
        elif msg.type == "program_change" and self.patches is not None:
            self.patches.request(msg.program)

    def apply(self, name: str, value, t: float, tick: float) -> None:
        sch = self.scheduler
        cond = sch.conductor
        if name == "temperature":
            sch.engine.sampler.temperature = float(value)
        elif name == "tempo":
            if sch.timebase.external:
                QUIET.info("tempo-ignored", "tempo CC ignored: following an external clock")
                return
            sch.timebase.set_tempo(float(value), t)
        elif name == "mode":
            if cond.set_mode(str(value), tick):
                sch.silence()
        elif name == "answer_bars":
            cond.answer_bars = int(value)
        elif name == "key_strength":
            cond.set_key_strength(float(value))
        elif name == "panic":
            QUIET.info("panic", "panic: all notes off")
            cond.panic(tick)
            sch.silence()
        elif name == "phrase_end":
            cond.end_phrase(tick)
        elif name == "patch":  # (the switcher tells when the patch has changed, at the bar line)
            if self.patches is not None:
                self.patches.request_knob(int(value))
            return
        log.debug("control %s = %s", name, value)
        if self.on_change is not None:
            self.on_change(name, value)
