"""The patch bank: several models on one instrument, switched live from the keyboard.

    [patches]                                  # in config.toml: Program Change number = a bundle
    0 = "bach.cadenza"
    1 = { model = "folk.cadenza", program = 73 }   # and a program for the synth when it takes over

A Program Change (0..127, as sent: a keyboard that counts from 1 shows it one higher) selects a patch, and the
patch knob (controls.patch) steps through the bank in program order. Without a [patches] table the bank is the
bundles shipped with the player (0 = bach, 1 = folk); an empty table makes none.

Every bundle of the bank is opened when the player starts, so a broken one is a one-line error then (exit 2),
never a surprise mid-performance; the bundles stay loaded, so a switch reads nothing from disk.

A switch keeps the music going. The new patch's model first hears the stream's last bars, the keyboard's and
the model's notes as they sounded (Engine.stream), a slice at a time between the scheduler's sends; once it
has caught up, it takes over on the next bar line: the old model's plan after the bar is undone (nothing there
has been sent), its notes still sounding end on the bar, the new model hears the rest up to the bar, and its
first token is a note on the bar line. With
nothing playing (listening for a phrase) it takes over as soon as it has caught up.

    bank = Bank.open(patches, open_fn)             # BundleError naming the patch and the file
    switcher = Switcher(bank, engine, conductor, current=0)
    switcher.request(1)                            # a Program Change
    switcher.work(now_tick, time_left)             # each pass of the scheduler's loop
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import mido
import numpy as np

from . import events as ev
from .bundle import BundleError
from .interfaces import StepModel
from .logutil import Throttle

if TYPE_CHECKING:
    from .config import Patch
    from .engine import Engine
    from .steering import Conductor

log = logging.getLogger(__name__)
QUIET = Throttle(log)  # a flood of Program Changes must not write a line each

WARM_BARS = 4  # the new model hears this many bars of the stream before it plays
SLICE_TOKENS = 32  # at most this many warm-up steps per pass of the loop
DEFAULT_BANK = ("bach.cadenza", "folk.cadenza")  # the shipped bundles, at programs 0, 1, ...


@dataclasses.dataclass
class Slot:
    program: int
    path: str
    name: str
    model: StepModel
    synth_program: int = -1  # a Program Change for the synth when this patch takes over; -1: none
    load_seconds: float = 0.0


class Bank:
    """The patches by Program Change number, every bundle open."""

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = {s.program: s for s in sorted(slots, key=lambda s: s.program)}

    @property
    def programs(self) -> list[int]:
        return list(self.slots)

    def __len__(self) -> int:
        return len(self.slots)

    def get(self, program: int) -> Slot | None:
        return self.slots.get(program)

    def for_knob(self, value: int) -> int | None:
        """The program a patch knob at `value` (0..127) selects: the bank's patches in order, evenly spread."""
        if not self.slots:
            return None
        programs = self.programs
        return programs[min(max(int(value), 0) * len(programs) // 128, len(programs) - 1)]

    def find(self, path: str) -> Slot | None:
        """The patch whose bundle is `path` (the file itself, however named)."""
        want = _same_file_key(path)
        return next((s for s in self.slots.values() if _same_file_key(s.path) == want), None)

    @classmethod
    def open(
        cls,
        patches: Sequence[Patch],
        open_fn: Callable[[str], StepModel],
        opened: Mapping[str, StepModel] | None = None,
    ) -> "Bank":
        """Open every patch's bundle with open_fn(path); `opened` maps paths already open to their models
        (the one the player starts with is not loaded twice). A bundle that fails: BundleError naming it."""
        reuse = {_same_file_key(p): m for p, m in (opened or {}).items()}
        slots = []
        for patch in patches:
            key = _same_file_key(patch.model)
            t0 = time.perf_counter()
            model = reuse.get(key)
            if model is None:
                try:
                    model = open_fn(patch.model)
                except (BundleError, OSError, ValueError) as e:
                    text = " ".join(str(e).split()) or type(e).__name__
                    raise BundleError(f"patch {patch.program} ({patch.model}): {text}") from None
                reuse[key] = model
            slots.append(
                Slot(
                    patch.program,
                    patch.model,
                    Path(patch.model).stem,
                    model,
                    patch.synth_program,
                    time.perf_counter() - t0,
                )
            )
        return cls(slots)


def _same_file_key(path: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return str(path)


def default_patches(search: Sequence[Path], names: Sequence[str] = DEFAULT_BANK) -> list[Patch]:
    """The shipped bundles found in `search` (folders, in order), at programs 0, 1, ... in `names`' order."""
    from .config import Patch

    out = []
    for program, name in enumerate(names):
        found = next((d / name for d in search if (d / name).is_file()), None)
        if found is not None:
            out.append(Patch(program, str(found)))
    return out


@dataclasses.dataclass
class _Warming:
    slot: Slot
    piece: int  # the engine's piece it follows
    next_index: int  # the stream's next token it has to hear
    logits: np.ndarray | None = None
    bar: int | None = None  # the bar line it takes over on, once caught up


class Switcher:
    """Switches the engine to another patch's model on a bar line (scheduler.Scheduler calls work())."""

    def __init__(
        self,
        bank: Bank,
        engine: Engine,
        conductor: Conductor,
        *,
        current: int | None = None,
        warm_bars: int = WARM_BARS,
        on_switch: Callable[[Slot, int], None] | None = None,
    ) -> None:
        self.bank = bank
        self.engine = engine
        self.conductor = conductor
        self.current = current  # the program playing now (None: a model outside the bank)
        self.warm_bars = int(warm_bars)
        self.on_switch = on_switch  # (slot, tick) once the new patch plays
        self.pending: _Warming | None = None
        self.switches = 0

    def reconfigure(self, bank: Bank, current: int | None) -> None:
        """A new bank (a reload): a switch on its way is dropped; `current` is the program playing now."""
        self.bank = bank
        self.current = current
        self.pending = None

    @property
    def slot(self) -> Slot | None:
        return None if self.current is None else self.bank.get(self.current)

    def describe(self) -> str:
        slot = self.slot
        return "patch -" if slot is None else f"patch {slot.program} {slot.name}"

    # -- asking ---------------------------------------------------------------------

    def request(self, program: int, why: str = "program change") -> bool:
        """Switch to `program` at the next bar line; False (one log line) when the bank has no such patch."""
        slot = self.bank.get(program)
        if slot is None:
            QUIET.info("patch-empty", "%s %d: no patch there, ignored (patches: %s)", why, program, self._listing())
            return False
        target = self.pending.slot.program if self.pending is not None else self.current
        if program == target:
            return True
        if slot.model is self.engine.model:  # the same bundle at another number: nothing to warm
            self.pending = None
            self.current = program
            self._announce(slot, self.engine.cursor)
            return True
        QUIET.info("patch-request", "%s %d: %s, from the next bar line", why, program, slot.name)
        self.pending = self._begin(slot)
        return True

    def request_knob(self, value: int) -> bool:
        program = self.bank.for_knob(value)
        return False if program is None else self.request(program, why="patch knob")

    def _listing(self) -> str:
        return ", ".join(f"{s.program} {s.name}" for s in self.bank.slots.values()) or "none"

    def _begin(self, slot: Slot) -> _Warming:
        """The new model reset and started; it hears the stream from WARM_BARS bars back."""
        eng = self.engine
        slot.model.reset()
        w = _Warming(slot, eng.piece, 0, slot.model.step(ev.START))
        window = self.warm_bars * self.conductor.bar_ticks
        start = eng.cursor - window
        first = next((i for i, tick, _ in eng.stream if tick >= start), eng.fed)
        w.next_index = first
        return w

    # -- as time passes ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.pending is not None

    def work(self, now_tick: float, time_left: Callable[[], float]) -> bool:
        """A slice of the warm-up while time_left() (seconds until the loop must send) is positive; the
        switch itself once the new model has caught up and the bar line is planned. True while the new
        model has more of the stream to hear (the loop comes back soon)."""
        w = self.pending
        if w is None:
            return False
        eng = self.engine
        if w.piece != eng.piece:  # a new piece began (a long rest, a reload): hear it from its start
            w = self.pending = self._begin(w.slot)
        oldest = eng.stream[0][0] if eng.stream else eng.fed
        if w.next_index < oldest:  # fell behind the kept stream (cannot happen at any sane rate): start over
            w = self.pending = self._begin(w.slot)
        settled = eng.settled
        done = 0
        while w.next_index < settled and done < SLICE_TOKENS and time_left() > 0:
            self._hear(w, w.next_index)
            done += 1
        if w.next_index < settled:
            return True
        if not eng.playing:
            self._take_over(w, eng.cursor)
            return False
        if w.bar is None or w.bar <= now_tick:  # the bar line to switch on: the next one not yet sounding
            w.bar = self.conductor.next_bar(now_tick + 1)
        if eng.limit is not None and w.bar >= eng.limit:
            return False  # the answer ends first: switch when it has
        if eng.cursor < w.bar:
            return False  # the old model has not planned up to the bar yet
        eng.rollback(w.bar)
        eng.play_to(w.bar)
        eng.release_sounding()  # the old patch's notes end on the bar line: the new one begins there
        while w.next_index < eng.fed:
            self._hear(w, w.next_index)
        self._take_over(w, w.bar)
        return False

    def _hear(self, w: _Warming, index: int) -> None:
        eng = self.engine
        tok = eng.stream[index - eng.stream[0][0]][2]
        w.next_index = index + 1
        if tok == ev.START or (tok >= w.slot.model.vocab_size and not getattr(w.slot.model, "keyed", False)):
            return  # (START was fed by _begin; KEY tokens only for a model that takes them)
        w.logits = w.slot.model.step(tok)

    def _take_over(self, w: _Warming, tick: int) -> None:
        eng = self.engine
        while w.next_index < eng.fed:  # (not playing: the rest of the stream, a few rests at most)
            self._hear(w, w.next_index)
        assert w.logits is not None
        eng.adopt(w.slot.model, w.logits)
        self.conductor.model_changed()
        if w.slot.synth_program >= 0:
            msg = mido.Message("program_change", channel=eng.channel, program=w.slot.synth_program)
            eng.plan_at(tick, [msg])
        self.pending = None
        self.current = w.slot.program
        self.switches += 1
        self._announce(w.slot, tick)

    def _announce(self, slot: Slot, tick: int) -> None:
        if self.on_switch is not None:
            self.on_switch(slot, tick)  # (which says so)
        else:
            QUIET.info("patch", "patch %d: %s (%s)", slot.program, slot.name, slot.path)
