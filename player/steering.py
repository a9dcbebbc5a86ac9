"""How the keyboard steers the model: modes and the end of a phrase.

    call-response  listen; when the phrase ends (phrase_gap beats of silence after
                   the last note-off with nothing held, the sustain pedal released,
                   or the phrase-end CC) answer for answer_bars bars, then listen
                   again. Playing during an answer ends it at once.
    duet           the model plays on and on and hears the keyboard throughout.
    solo           the model plays on and on; the keyboard is not heard.

Keys: with `key="auto"` the conductor tracks the key of what the keyboard plays
(Krumhansl–Schmuckler, player.keys) and the engine's sampling leans to it with
`key_strength`: the phrase's key for its answer, in a duet the key of the last
few bars. A fixed key ("D minor") holds in every mode, solo too; "off" (or
strength 0) leaves the model free. An answer's first bar leans `key_opening`
times as hard (the model's own, from its bundle, unless set), so that it opens
in the key and the model carries it from there.

Keys and pedal that never come up (a lost note-off, a stuck or reversed pedal)
cannot hold a phrase open for ever: a held key counts as released MAX_NOTE_TICKS
after it was struck (four bars: the codec ends it there too), and a pedal that
reads "down" for pedal_hold_bars bars with no key played counts as lifted then.
A pedal that does so is taken to read "down" at rest (reversed polarity, or
stuck): from then on its values are inverted, and this is logged once.

Ticks only (24 per beat). The Conductor drives an Engine; the scheduler calls
`update` as time passes and asks `wants` before generating ahead.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import mido

from . import keys
from .config import MODES
from .engine import Engine
from .events import MAX_NOTE_TICKS, SWITCH_ON, TICKS_PER_BEAT
from .logutil import Throttle

log = logging.getLogger(__name__)
QUIET = Throttle(log)  # a mode knob swept back and forth changes mode many times a second

KEY_HALF_LIFE_BEATS = 16  # in a duet, a note counts half as much four bars later


def key_half_life(mode: str) -> float | None:
    """How fast the keyboard's notes fade from the key it is heard in (ticks), by mode. A call is one
    phrase, heard whole (the tracker starts afresh after each answer): its last bar often leaves the key
    (a cadence on the dominant), and fading the opening would hear that bar's key instead. Playing along
    (duet, solo), the key follows the keyboard's modulations."""
    return None if mode == "call-response" else KEY_HALF_LIFE_BEATS * TICKS_PER_BEAT


class Conductor:
    def __init__(
        self,
        engine: Engine,
        mode: str = "call-response",
        phrase_gap: float = 1.0,
        answer_bars: int = 2,
        beats_per_bar: int = 4,
        sustain_ends_phrase: bool = True,
        align: Callable[[float, int], None] | None = None,
        key: str = "off",
        key_strength: float | None = 0.0,
        pedal_hold_bars: float = 4,
        key_opening: float | None = 1.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.engine = engine
        self.tracker = keys.KeyTracker()  # the key of what the keyboard plays (its memory set by the mode)
        self.mode = mode
        self.phrase_gap = float(phrase_gap)  # beats
        self.answer_bars = int(answer_bars)
        self.beats_per_bar = int(beats_per_bar)
        self.answer_beats: float | None = None  # overrides answer_bars (render --beats)
        self.solo_beats: float | None = None  # solo/duet stop after this many beats (render)
        self.sustain_ends_phrase = sustain_ends_phrase
        self.pedal_hold_bars = float(pedal_hold_bars)  # a pedal down this long with no key played is let go
        # align(tick_float, tick): make integer `tick` fall at the moment of `tick_float`,
        # so an answer starts at the very end of the gap, not at the next grid tick.
        self.align = align
        self.state = "listen"  # listen | answer | play
        self.held: dict[int, float] = {}  # key -> tick it was struck, while down (at most MAX_NOTE_TICKS)
        self.pedal = False  # the sustain pedal reads down (after the polarity is applied)
        self.pedal_reversed = False  # the pedal reads "down" at rest: its values are inverted
        self.pedal_since = 0.0  # tick the pedal went down
        self.last_key = 0.0  # tick of the last key played (note-on or note-off)
        self.phrase_notes = 0  # keyboard notes since the last answer
        self.last_release = 0.0  # tick of the last note-off (or pedal release)
        self.answer_start: int | None = None
        self.bar_origin = 0  # a bar line: where the answer or the playing began
        self.gap_end: float | None = None  # the moment (tick) the current answer's gap completed
        self.answers = 0  # answers finished or cut
        self.listeners: list[Callable[[str, int], None]] = []  # (event, tick): answer-start, answer-end
        self.key_setting = keys.parse_setting(key)  # "auto", None, or (tonic, mode)
        self._strength = None if key_strength is None else float(key_strength)  # None: the model's own
        self._opening = None if key_opening is None else float(key_opening)  # None: the model's own
        self.key: tuple[int, str] | None = None  # the key the engine leans to now

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        self.tracker.half_life = key_half_life(mode)

    # -- lengths ----------------------------------------------------------------

    @property
    def gap_ticks(self) -> float:
        return self.phrase_gap * TICKS_PER_BEAT

    @property
    def pedal_hold_ticks(self) -> float:
        return self.pedal_hold_bars * self.beats_per_bar * TICKS_PER_BEAT

    @property
    def hold_bound_ticks(self) -> float:
        """The longest a held key or pedal keeps a phrase open after the last thing played."""
        return max(MAX_NOTE_TICKS, self.pedal_hold_ticks)

    @property
    def answer_ticks(self) -> int:
        beats = self.answer_beats if self.answer_beats is not None else self.answer_bars * self.beats_per_bar
        return max(1, int(round(beats * TICKS_PER_BEAT)))

    @property
    def bar_ticks(self) -> int:
        return self.beats_per_bar * TICKS_PER_BEAT

    def next_bar(self, tick: float) -> int:
        """The first bar line at or after `tick` (bars counted from where the answer or the playing began)."""
        bars = math.ceil((tick - self.bar_origin) / self.bar_ticks - 1e-9)
        return self.bar_origin + bars * self.bar_ticks

    def model_changed(self) -> None:
        """The engine plays another model (a patch switch): the key's lean is made again for its vocabulary."""
        self._lean(self.key)

    def _emit(self, event: str, tick: int) -> None:
        for fn in self.listeners:
            fn(event, tick)

    # -- keys ---------------------------------------------------------------------

    @property
    def key_strength(self) -> float:
        """How hard the answer leans to the key: the one set, or (none set) the model's own (keys.model_strength)."""
        return self._strength if self._strength is not None else keys.model_strength(self.engine.model)

    def set_key(self, setting: str, strength: float | None = None) -> None:
        """Change the key setting ("auto", "off", "D minor") and/or its strength, now."""
        self.key_setting = keys.parse_setting(setting)
        if strength is not None:
            self._strength = float(strength)
        self._lean(self.key if self.key_setting == "auto" else self.fixed_key)

    @property
    def fixed_key(self) -> tuple[int, str] | None:
        """The key set to hold in every mode; None when the setting is "auto" or "off"."""
        return None if isinstance(self.key_setting, str) else self.key_setting

    @property
    def key_opening(self) -> float:
        """How many times harder an answer's first bar leans: the one set, or the model's own (keys.model_opening)."""
        return self._opening if self._opening is not None else keys.model_opening(self.engine.model)

    def set_key_opening(self, opening: float | None) -> None:
        """A new multiple for an answer's first bar (a reload); None: the model's own."""
        self._opening = None if opening is None else float(opening)
        self._lean(self.key)

    def set_key_strength(self, strength: float | None) -> None:
        """A new strength (a knob, a reload); None: the model's own."""
        self._strength = None if strength is None else float(strength)
        self._lean(self.key)

    def _lean(self, key: tuple[int, str] | None) -> None:
        """Make the engine's sampling lean to `key` (None: no lean)."""
        if key != self.key:
            log.debug("key: %s", keys.name(key))
        self.key = key
        vocab, strength, opening = int(self.engine.model.vocab_size), self.key_strength, self.key_opening
        self.engine.key_bias = keys.bias(key, strength, vocab)
        self.engine.opening_bias = keys.bias(key, strength * opening, vocab) if opening != 1.0 else None
        self.engine.set_condition(key)

    def _follow(self, tick: float) -> None:
        """key = "auto": lean to the key of what the keyboard has played (up to `tick`)."""
        if self.key_setting == "auto":
            key = self.tracker.estimate(tick)
            if key is not None:
                self._lean(key)

    def _phrase_over(self) -> None:
        self.phrase_notes = 0
        self.tracker.reset()

    # -- settings -------------------------------------------------------------------

    def reconfigure(
        self,
        *,
        mode: str | None = None,
        phrase_gap: float | None = None,
        answer_bars: int | None = None,
        beats_per_bar: int | None = None,
        sustain_ends_phrase: bool | None = None,
        pedal_hold_bars: float | None = None,
    ) -> None:
        """New settings (a reload), taken as they are: nothing is cut or played here (see set_mode for
        a live change of mode, restart for what a new model needs). None leaves a setting as it is."""
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
            self.mode = mode
        if phrase_gap is not None:
            self.phrase_gap = phrase_gap
        if answer_bars is not None:
            self.answer_bars = answer_bars
        if beats_per_bar is not None:
            self.beats_per_bar = beats_per_bar
        if sustain_ends_phrase is not None:
            self.sustain_ends_phrase = sustain_ends_phrase
        if pedal_hold_bars is not None:
            self.pedal_hold_bars = pedal_hold_bars

    def restart(self, tick: float) -> None:
        """A new model (a reload, after cut): it has not heard the phrase so far, and a new piece
        begins at ceil(tick)."""
        self._phrase_over()
        self.begin(math.ceil(tick))

    # -- the session --------------------------------------------------------------

    def begin(self, now_tick: float) -> None:
        tick = math.ceil(now_tick)
        self.engine.start(tick)
        if self.key_setting != "auto":
            self._lean(self.fixed_key)
        if self.mode != "call-response":
            self._play(tick)

    def _play(self, tick: int) -> None:
        until = None if self.solo_beats is None else tick + int(round(self.solo_beats * TICKS_PER_BEAT))
        self.engine.play(tick, until=until)
        self.state = "play"
        self.bar_origin = tick

    def _answer(self, gap_end: float) -> None:
        start = math.ceil(gap_end - 1e-9)
        if self.align is not None and start != gap_end:
            self.align(gap_end, start)
        self._follow(gap_end)
        self.engine.play(start, until=start + self.answer_ticks, lead_in=True)
        self.engine.opening_until = start + self.bar_ticks  # the answer's first bar opens in the key
        self.state = "answer"
        self.answer_start = self.bar_origin = start
        self.gap_end = gap_end
        log.debug("answer planned at tick %d (gap ended at %.2f)", start, gap_end)
        self._emit("answer-start", start)

    def cut(self, tick: float) -> None:
        """Stop the model now: unsent notes are dropped, sounding ones get their note-offs."""
        if self.engine.playing or self.engine.sounding:
            self.engine.stop(math.floor(tick))
        if self.state == "answer":
            if self.answer_start is not None and tick >= self.answer_start:
                self.answers += 1
                self._phrase_over()
                self._emit("answer-end", int(tick))
            self.state = "listen"

    def note(self, msg: mido.Message, tick: float) -> None:
        """A keyboard note (note_on / note_off) at `tick`."""
        if self.mode == "solo":
            return
        self._let_go(tick)
        self.last_key = max(self.last_key, tick)
        if msg.type == "note_on" and msg.velocity > 0:
            if self.state == "answer":
                self.cut(tick)  # a planned answer is dropped, a sounding one ends now
            self.held[msg.note] = tick
            self.phrase_notes += 1
            self.tracker.note_on(msg.note, tick)
        else:
            self.held.pop(msg.note, None)
            self.last_release = tick
            self.tracker.note_off(msg.note, tick)
            if self.mode == "duet":
                self._follow(tick)
        self.engine.hear(msg, tick)

    def sustain(self, value: int, tick: float) -> None:
        self._let_go(tick)
        down = (value >= SWITCH_ON) != self.pedal_reversed
        was, self.pedal = self.pedal, down
        if down and not was:
            self.pedal_since = tick
        if was and not down:
            self._lift(tick)

    def _lift(self, tick: float) -> None:
        self.last_release = max(self.last_release, tick)
        if self.sustain_ends_phrase and not self.held:
            self.end_phrase(tick)

    # -- keys and a pedal that stay down ------------------------------------------

    def _pedal_bound(self) -> float:
        """The tick at which the pedal, down now, counts as lifted: pedal_hold_bars after it went
        down or after the last key played, whichever is later."""
        return max(self.pedal_since, self.last_key) + self.pedal_hold_ticks

    def _let_go(self, tick: float) -> None:
        """Time is `tick`: keys down for MAX_NOTE_TICKS count as released (the codec ends them
        there too), a pedal down past its bound counts as lifted and is taken to be reversed."""
        for key, struck in list(self.held.items()):
            if tick >= struck + MAX_NOTE_TICKS:
                del self.held[key]
                self.last_release = max(self.last_release, struck + MAX_NOTE_TICKS)
                log.debug("key %d held for %d ticks: it counts as released", key, MAX_NOTE_TICKS)
        # (call-response only: elsewhere the pedal ends nothing, and a pedal held through a solo says nothing
        # about its polarity)
        if self.pedal and self.mode == "call-response" and tick >= self._pedal_bound():
            bound = self._pedal_bound()
            self.pedal_reversed = not self.pedal_reversed
            self.pedal = False
            if self.pedal_reversed:
                log.info("sustain pedal reads down at rest: treating it as reversed")
            else:
                log.info("sustain pedal reads up at rest again: treating it as normal")
            self._lift(bound)

    def answer_tick(self) -> float | None:
        """The tick at which the phrase's answer begins if nothing else is played; None when no answer is due."""
        if not (self.state == "listen" and self.mode == "call-response" and self.phrase_notes):
            return None
        keys_up = max([self.last_release] + [t + MAX_NOTE_TICKS for t in self.held.values()])
        if not self.pedal:
            return keys_up + self.gap_ticks
        lift = self._pedal_bound()
        if self.sustain_ends_phrase and keys_up <= lift:
            return lift  # as a lift of the pedal: the phrase ends there
        return max(keys_up, lift) + self.gap_ticks

    def end_phrase(self, tick: float) -> None:
        """The phrase-end CC (or pedal): answer now."""
        if self.mode == "call-response" and self.state == "listen" and self.phrase_notes:
            self._answer(tick)

    def set_mode(self, mode: str, tick: float) -> bool:
        """Change mode; True when the output was silenced (the caller sends all-notes-off)."""
        if mode not in MODES or mode == self.mode:
            return False
        old, self.mode = self.mode, mode
        QUIET.info("mode", "mode %s -> %s", old, mode)
        if mode == "call-response":
            self.cut(tick)
            self.state = "listen"
            self._phrase_over()
            return True
        if self.state != "play":
            self.cut(tick)
            self._play(math.ceil(tick))
        return False

    def halt(self, tick: float) -> None:
        """The external clock stopped: silence, and wait for Start/Continue."""
        self.cut(tick)
        self.state = "listen"

    def resume(self, tick: float) -> None:
        """The external clock started (or continued) at `tick`."""
        if self.mode != "call-response":
            self._play(math.ceil(tick))

    def panic(self, tick: float) -> None:
        self.cut(tick)
        self.held.clear()
        self.pedal = False  # (a reversed pedal stays reversed: panic says nothing of its polarity)
        self._phrase_over()
        if self.mode != "call-response":
            self._play(math.ceil(tick))

    # -- as time passes -------------------------------------------------------

    def update(self, now_tick: float, horizon_tick: float) -> None:
        """Time is `now_tick`; the scheduler generates up to `horizon_tick`."""
        eng = self.engine
        eng.listen(now_tick)
        self._let_go(now_tick)
        if self.state == "answer" and not eng.playing:
            self.state = "listen"
            self.answers += 1
            self._phrase_over()
            self._emit("answer-end", eng.cursor)
        elif self.state == "play" and not eng.playing:
            self.state = "listen"  # a bounded solo/duet has ended
            self.answers += 1
        gap_end = self.answer_tick()
        # (within rounding: the scheduler wakes at time_of(gap_end) - lookahead, which maps back a hair short)
        if gap_end is not None and horizon_tick >= gap_end - 1e-6:
            self._answer(gap_end)

    def next_wake_tick(self) -> float | None:
        """The tick at which an answer would begin, if nothing else happens first."""
        return self.answer_tick()

    def wants(self, horizon_tick: float) -> bool:
        eng = self.engine
        if not eng.playing:
            return False
        return eng.cursor < horizon_tick + 1e-6 or (eng.limit is not None and eng.cursor >= eng.limit)

    def describe_key(self) -> str:
        if self.key_setting is None or self.key_strength <= 0:
            return "key free"
        what = "the phrase's key" if self.key_setting == "auto" else keys.name(self.fixed_key)
        opening = f", {self.key_opening:g}x in an answer's first bar" if self.key_opening != 1.0 else ""
        return f"{what} ({self.key_strength:g}{opening})"
