"""The engine: the model's state, sampling, and tokens turned into timed note messages.

It knows no ports and no seconds, only ticks (24 per beat). One token stream
goes through the model for the whole session: its own sampled tokens and the
keyboard's (encoded with the shared StreamEncoder), merged in time order, so the
state has heard everything that sounded.

The engine runs ahead of the present (the scheduler's lookahead). Before each
token it generates it keeps a checkpoint (model state, decoder, cursor), so when
the keyboard plays at a tick the engine has already passed, it rolls back to
that tick, drops the planned messages that have not been sent, feeds the
keyboard's tokens and goes on from there: nothing sent is ever taken back, and
nothing unsent is played against a state that missed the keyboard.

    eng = Engine(model, Sampler(seed=1))
    eng.start(0)                    # START; the model listens from tick 0
    eng.play(0)                     # generate from tick 0 on
    eng.generate()                  # one token; its messages go to eng.planned
    eng.pop_due(tick)               # messages whose tick has come
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque

import mido
import numpy as np

from . import conditioning, keys
from . import events as ev
from .events import TimedMessage
from .interfaces import StepModel
from .sampling import Sampler

log = logging.getLogger(__name__)

LEAD_IN_GUARD = 8  # tokens without a note before the lead-in allows only NOTE_ON
MAX_TOKENS_PER_TICK = 48  # a model stuck on one tick is made to move on (a SHIFT only)
# The stream's recent tokens kept for another model to hear (a patch switch warms its new model on the last
# bars): a few bars of four-voice chorale at most; older ones fall off.
RECENT_TOKENS = 4096


def _masks(vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """[V] bool: tokens the model may play; the same without SHIFT/NOTE_OFF; NOTE_ON only; SHIFT only."""
    ids = np.arange(vocab)
    normal = (ids != ev.PAD) & (ids != ev.START) & (ids < ev.VOCAB_SIZE)
    shift, off, on = ev.is_shift(ids), ev.is_note_off(ids), ev.is_note_on(ids)
    return normal, normal & ~shift & ~off, on, shift


@dataclasses.dataclass
class _Checkpoint:
    cursor: int
    state: tuple
    logits: np.ndarray | None
    decoder: tuple  # (tick, velocity, sounding)
    velocity_bin: int | None
    produced: int  # messages planned before this point
    playing: bool
    limit: int | None
    lead_in: int  # tokens sampled in the lead-in so far, -1 when none
    last_event_tick: int
    history: int
    fed: int  # tokens fed since start() before this point


class Engine:
    """Owns the model state and the sounding notes; turns tokens into TimedMessages."""

    def __init__(
        self,
        model: StepModel,
        sampler: Sampler,
        channel: int = 0,
        rest_limit: int = 8 * 4 * ev.TICKS_PER_BEAT,
        keep_history: bool = False,
    ) -> None:
        self.model = model
        self.sampler = sampler
        self.decoder = ev.StreamDecoder(channel=channel)
        self.encoder = ev.StreamEncoder()
        self.rest_limit = rest_limit  # a longer silence before a phrase starts a new piece
        self._set_masks(int(model.vocab_size))
        self._same_tick = 0  # tokens generated at the cursor without time moving
        self.cursor = 0  # the tick the model's stream has reached
        self.logits: np.ndarray | None = None  # [V] for the next token
        self.planned: deque[TimedMessage] = deque()  # decided, not yet sent, tick order
        self.produced = 0  # messages ever planned
        self.taken = 0  # messages ever popped by the scheduler
        self.velocity_bin: int | None = None  # in force in the merged stream
        self.playing = False
        self.limit: int | None = None  # stop generating at this tick (end of an answer)
        self.lead_in = -1  # >= 0 while leading SHIFTs are dropped (start of an answer)
        self.last_event_tick = 0  # last note event heard or played
        self.keep_history = keep_history
        self.history: list[tuple[str, int, int]] = []  # (origin, tick, token) when kept
        self._cps: list[_Checkpoint] = []
        self.steps = 0
        self.key_bias: np.ndarray | None = None  # [V] added to the logits of what the model plays (keys.bias)
        # An answer's opening: opening_bias instead of key_bias while the cursor is before opening_until.
        self.opening_bias: np.ndarray | None = None
        self.opening_until: int | None = None
        self.key_conditioned = conditioning.takes_keys(model)  # the model takes KEY tokens
        self.condition: int | None = None  # the KEY token a key-conditioned model is told (conditioning.py)
        # Without a key to tell (solo, key "off", before the keyboard is heard), a conditioned model is told the
        # key of the stream's recent notes, its own and the keyboard's: what its training labels named. (Notes
        # planned and then rolled back count too: a small bias to its own plan, not worth a copy per token.)
        self.recent = keys.KeyTracker(half_life=conditioning.RECENT_HALF_LIFE_TICKS)
        # The stream since start() as (index, tick, token), the last RECENT_TOKENS of it; `fed` counts them and
        # `piece` the start()s, so a listener (patches.Switcher) can follow the stream while it plays.
        self.stream: deque[tuple[int, int, int]] = deque(maxlen=RECENT_TOKENS)
        self.fed = 0
        self.piece = 0

    def _set_masks(self, vocab: int) -> None:
        self._normal, self._lead, self._on_only, self._shift_only = _masks(vocab)

    # -- the stream -----------------------------------------------------------

    @property
    def channel(self) -> int:
        return self.decoder.channel

    @channel.setter
    def channel(self, ch: int) -> None:
        self.decoder.channel = ch

    @property
    def sounding(self) -> dict[int, int]:
        return self.decoder.sounding

    def set_model(self, model: StepModel) -> None:
        """Play another model (a reload), from its next start(): what the old one planned stays as it is."""
        self.model = model
        self._set_masks(int(model.vocab_size))
        self.key_conditioned = conditioning.takes_keys(model)
        if not self.key_conditioned:
            self.condition = None

    @property
    def settled(self) -> int:
        """The stream's index before which nothing can be undone any more (no checkpoint reaches back there)."""
        for cp in self._cps:
            if cp.produced >= self.taken:
                return cp.fed
        return self.fed

    def adopt(self, model: StepModel, logits: np.ndarray) -> None:
        """Go on with another model that has heard this stream up to now (a patch switch): `logits` are its
        prediction of the next token. Nothing before this point can be undone with the old model's state, and
        when playing, the new model's first token is a note, at the cursor: the switch leaves no gap."""
        self.set_model(model)
        self.logits = logits
        self._cps.clear()
        self._same_tick = 0
        if self.playing:
            self.lead_in = 0

    def set_condition(self, key: tuple[int, str] | None) -> None:
        """Tell a key-conditioned model the key to play in (None: no key); a new key is fed at once."""
        tok = conditioning.key_token(key) if key is not None and self.key_conditioned else None
        changed = tok != self.condition
        self.condition = tok
        if changed and tok is not None and self.logits is not None:
            self._feed(tok, "key")

    def start(self, tick: int = 0) -> None:
        """Begin a new piece at `tick`: fresh state primed with START, nothing sounding."""
        self.model.reset()
        self._cps.clear()
        self.cursor = int(tick)
        self.decoder.tick = self.cursor
        self.decoder.sounding.clear()
        self.decoder.velocity = ev.DEFAULT_VELOCITY
        self.velocity_bin = None
        self.encoder.reset(self.cursor)
        self.recent.reset()
        self.last_event_tick = self.cursor
        self.stream.clear()
        self.fed = 0
        self.piece += 1
        self._feed(ev.START, "start")

    def _feed(self, tok: int, origin: str) -> None:
        self.logits = self.model.step(tok)
        self.steps += 1
        self.stream.append((self.fed, self.cursor, tok))
        self.fed += 1
        if self.keep_history:
            self.history.append((origin, self.cursor, tok))
        if ev.is_shift(tok):
            self._plan(self.decoder.feed(tok))  # notes reaching their length limit
            before = self.cursor
            self.cursor += ev.shift_ticks(tok)
            if conditioning.crosses(before, self.cursor) and self.key_conditioned:
                told = self.condition if self.condition is not None else self._recent_key()
                if told is not None:
                    self._feed(told, "key")  # where training put one: time crossing the period
        elif ev.VELOCITY_BASE <= tok < ev.VOCAB_SIZE:
            self.velocity_bin = tok - ev.VELOCITY_BASE
            if origin != "model":  # the velocity in force is the stream's, whoever set it
                self.decoder.velocity = ev.bin_to_velocity(self.velocity_bin)
        elif tok != ev.START:
            self.last_event_tick = self.cursor
            if self.key_conditioned:  # only a conditioned model is ever told the recent notes' key
                if ev.is_note_on(tok):
                    self.recent.note_on(tok - ev.NOTE_ON_BASE + ev.LOW_PITCH, self.cursor)
                elif ev.is_note_off(tok):
                    self.recent.note_off(tok - ev.NOTE_OFF_BASE + ev.LOW_PITCH, self.cursor)

    def _recent_key(self) -> int | None:
        key = self.recent.estimate(self.cursor)
        return None if key is None else conditioning.key_token(key)

    def _plan(self, msgs: list[TimedMessage]) -> None:
        self.planned.extend(msgs)
        self.produced += len(msgs)

    def _checkpoint(self) -> None:
        d = self.decoder
        # A checkpoint from before the last sent message can never be rolled back to: drop
        # those, or solo and duet (no keyboard token to clear them) grow by one per token.
        cps = self._cps
        if cps and cps[0].produced < self.taken:
            del cps[: next((i for i, cp in enumerate(cps) if cp.produced >= self.taken), len(cps))]
        self._cps.append(
            _Checkpoint(
                self.cursor,
                self.model.get_state(),
                self.logits,
                (d.tick, d.velocity, dict(d.sounding)),
                self.velocity_bin,
                self.produced,
                self.playing,
                self.limit,
                self.lead_in,
                self.last_event_tick,
                len(self.history),
                self.fed,
            )
        )

    def _move_to(self, tick: int, origin: str, checkpoint: bool) -> None:
        """Silence up to `tick`, as SHIFT tokens."""
        while self.cursor < tick:
            if checkpoint:
                self._checkpoint()
            self._feed(ev.shift(min(ev.MAX_SHIFT, tick - self.cursor)), origin)

    def rollback(self, tick: float) -> int:
        """Undo unsent tokens after `tick` (as far as sent messages allow); returns the cursor."""
        tick = int(tick)
        if tick >= self.cursor:
            return self.cursor
        valid = [i for i, cp in enumerate(self._cps) if cp.produced >= self.taken]
        if not valid:
            return self.cursor
        before = [i for i in valid if self._cps[i].cursor <= tick]
        i = before[-1] if before else valid[0]
        cp = self._cps[i]
        del self._cps[i:]
        self.model.set_state(cp.state)
        self.logits = cp.logits
        self.cursor = cp.cursor
        self.decoder.tick, self.decoder.velocity, sounding = cp.decoder
        self.decoder.sounding = dict(sounding)
        self.velocity_bin = cp.velocity_bin
        while self.produced > cp.produced:
            self.planned.pop()
            self.produced -= 1
        self.playing, self.limit, self.lead_in = cp.playing, cp.limit, cp.lead_in
        self.last_event_tick = cp.last_event_tick
        del self.history[cp.history :]
        while self.stream and self.stream[-1][0] >= cp.fed:
            self.stream.pop()
        self.fed = cp.fed
        return self.cursor

    # -- listening --------------------------------------------------------------

    def hear(self, msg: mido.Message, tick: float) -> None:
        """A keyboard message at `tick` (float ticks; the encoder puts it on the grid)."""
        t0 = self.encoder.emitted_tick
        self.encoder.velocity_bin = self.velocity_bin
        self._insert(self.encoder.feed(msg, tick), t0)

    def listen(self, now_tick: float) -> None:
        """Time has reached `now_tick`: the keyboard's finished ticks go into the state."""
        t0 = self.encoder.emitted_tick
        self.encoder.velocity_bin = self.velocity_bin
        self._insert(self.encoder.advance(now_tick), t0)
        # Not playing: the model hears the silence as it passes, a whole SHIFT at a time,
        # up to rest_limit (after which the next phrase begins a new piece).
        if not self.playing and not self.sounding:
            target = int(now_tick) - 2  # stay behind the encoder's open tick
            while target - self.cursor >= ev.MAX_SHIFT and self.cursor - self.last_event_tick < self.rest_limit:
                self._checkpoint()
                self._feed(ev.shift(ev.MAX_SHIFT), "rest")

    def _insert(self, tokens: list[int], t0: int) -> None:
        t = t0
        for tok in tokens:
            if ev.is_shift(tok):  # the encoder's own shifts: we only need its times
                t += ev.shift_ticks(tok)
                continue
            if (
                not self.playing
                and not self.sounding
                and t - self.last_event_tick > self.rest_limit
                and self.cursor - self.last_event_tick >= self.rest_limit
            ):
                log.debug("a new phrase after a long rest: starting a new piece at tick %d", t)
                self.start(t)
            if t < self.cursor:
                self.rollback(t)
            self._move_to(t, "keyboard", checkpoint=False)
            self._feed(tok, "keyboard")
            self._cps.clear()  # nothing before a heard token may be undone
        self.encoder.emitted_tick = max(self.encoder.emitted_tick, t)

    # -- playing ----------------------------------------------------------------

    def play(self, tick: int, until: int | None = None, lead_in: bool = False) -> None:
        """Generate from `tick` (silence up to it is heard first) until `until`, or on and on.

        lead_in: the first note falls at `tick` itself: SHIFTs sampled before it are dropped
        (masked), so an answer begins right where the phrase's gap ends.
        """
        self.listen(tick)
        self._move_to(int(tick), "rest", checkpoint=True)
        self.playing = True
        self.limit = until
        self.lead_in = 0 if lead_in else -1
        self.opening_until = None  # (an answer's conductor sets it: Conductor._answer)

    def play_to(self, tick: int) -> None:
        """Playing, after a rollback to `tick` or before it: the stream is silence up to `tick`."""
        self._move_to(int(tick), "rest", checkpoint=False)

    def release_sounding(self) -> None:
        """End the notes the model sounds, at the cursor: their note-offs are planned and the stream hears them."""
        released = self.decoder.release_all()
        self._plan(released)
        for m in released:
            self._feed(ev.note_off(m.message.note), "model")

    def plan_at(self, tick: int, msgs: list[mido.Message]) -> None:
        """Messages of the player's own to go out at `tick`, after those planned for it already."""
        self._plan([TimedMessage(int(tick), m) for m in msgs])
        if len(self.planned) > len(msgs) and self.planned[-len(msgs) - 1].tick > tick:
            self.planned = deque(sorted(self.planned, key=lambda m: m.tick))  # keep tick order (a stable sort)

    def catch_up(self, tick: int) -> None:
        """Playing, with the stream behind `tick` (a rollback for the keyboard): what it would still
        plan there could only go out late, so the model hears the silence that really sounded up to
        `tick` (its unsent notes there were dropped) and plays on from the present."""
        if self.playing and self.lead_in < 0 and self.cursor < tick and (self.limit is None or tick < self.limit):
            self._move_to(int(tick), "rest", checkpoint=True)

    def generate(self) -> int | None:
        """Sample and play one token; None when not playing (or the answer has ended)."""
        if not self.playing:
            return None
        if self.limit is not None and self.cursor >= self.limit:
            self.stop(self.limit)
            return None
        self._checkpoint()
        if self.lead_in >= 0:
            allowed = self._lead if self.lead_in < LEAD_IN_GUARD else self._on_only
            self.lead_in += 1
        else:
            allowed = self._normal if self._same_tick < MAX_TOKENS_PER_TICK else self._shift_only
        logits = self.logits
        assert logits is not None  # (start() fed START: there are logits before anything plays)
        bias = self.key_bias
        if self.opening_until is not None and self.cursor < self.opening_until and self.opening_bias is not None:
            bias = self.opening_bias
        if bias is not None:
            logits = keys.lean(logits, bias)
        tok = self.sampler.sample(logits, allowed)
        if ev.is_shift(tok) and self.limit is not None and self.cursor + ev.shift_ticks(tok) > self.limit:
            tok = ev.shift(self.limit - self.cursor)
        self._feed(tok, "model")
        if not ev.is_shift(tok):
            self._plan(self.decoder.feed(tok))
            self._same_tick += 1
        else:
            self._same_tick = 0
        if ev.is_note_on(tok):
            self.lead_in = -1
        return tok

    def stop(self, tick: float) -> list[TimedMessage]:
        """Stop playing at `tick`: unsent notes after it are undone, sounding ones end at it."""
        tick = int(tick)
        self.rollback(tick)
        self._move_to(tick, "rest", checkpoint=False)
        released = self.decoder.release_all()
        msgs = [TimedMessage(tick, m.message) for m in released]
        self._plan(msgs)
        if len(self.planned) > len(msgs) and self.planned[-len(msgs) - 1].tick > tick:
            self.planned = deque(sorted(self.planned, key=lambda m: m.tick))  # keep tick order
        for m in released:  # the model hears its notes end
            self._feed(ev.note_off(m.message.note), "model")
        self.playing = False
        self.limit = None
        self.lead_in = -1
        self._cps.clear()
        return msgs

    # -- the scheduler's side ---------------------------------------------------

    def next_tick(self) -> int | None:
        return self.planned[0].tick if self.planned else None

    def pop(self) -> TimedMessage:
        self.taken += 1
        return self.planned.popleft()

    def pop_due(self, tick: float) -> list[TimedMessage]:
        out = []
        while self.planned and self.planned[0].tick <= tick:
            out.append(self.pop())
        return out
