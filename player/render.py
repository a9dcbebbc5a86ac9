"""`--render`: the live engine and scheduler on a simulated clock, written to a MIDI file.

With a seed phrase, the phrase (its notes and sustain pedal) is played into the
same input path as a keyboard (call-response) and the answer is rendered; without
one the model plays solo from START. No ports are opened; it runs as fast as the
model steps, and never past a bound in simulated time (`render_bound_ticks`): the
answer is due by then whatever the phrase leaves held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import mido

from . import config
from . import events as ev
from .assemble import build_player, plain_settings
from .clock import SimClock, TempoMap
from .engine import Engine
from .events import CC_SUSTAIN, TimedMessage
from .interfaces import Clock, Inbox, StepModel
from .scheduler import NoInbox, ScriptedInbox
from .steering import Conductor

log = logging.getLogger(__name__)


class ListSink:
    """A sink that keeps what it is sent (with the simulated time)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, mido.Message]] = []

    def send(self, msg: mido.Message) -> None:
        self.sent.append((self.clock.now(), msg))

    def all_notes_off(self) -> None:
        pass


@dataclass
class Rendered:
    answer: list[TimedMessage]  # the model's messages, ticks from the answer's start
    phrase: list[TimedMessage] = field(default_factory=list)  # the seed phrase, same time axis
    answer_start: int = 0  # tick of the answer on the phrase's axis
    gap_end: float | None = None
    complete: bool = True  # the answer (or solo) ended before the render's bound
    bound_ticks: float = 0.0  # the render's bound in simulated time (render_bound_ticks)
    engine: Engine | None = field(default=None, repr=False)  # the parts that played it (tests, the benches)
    conductor: Conductor | None = field(default=None, repr=False)

    def answer_after_phrase(self) -> list[TimedMessage]:
        """The answer on the phrase's time axis."""
        return [TimedMessage(tm.tick + self.answer_start, tm.message) for tm in self.answer]

    def messages(self, include_seed: bool) -> list[TimedMessage]:
        return self.phrase + self.answer_after_phrase() if include_seed else self.answer


def _keyboard_messages(mid: mido.MidiFile):
    """(tick, message) of a file's notes and sustain pedal, all tracks, in our ticks."""
    scale = ev.TICKS_PER_BEAT / mid.ticks_per_beat
    for track in mid.tracks:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type in ("note_on", "note_off") or (msg.type == "control_change" and msg.control == CC_SUSTAIN):
                yield now * scale, msg


def phrase_events(mid: mido.MidiFile, tempo: float, channel: int = 0) -> list[tuple[float, float, mido.Message]]:
    """(tick, seconds, message) of a file's notes and pedal, from its first note on (tick 0), at `tempo`.

    A pedal pressed before the first note is pressed at tick 0."""
    raw = [(t, m) for t, m in sorted(_keyboard_messages(mid), key=lambda e: e[0]) if m.channel != ev.DRUM_CHANNEL]
    notes = [t for t, m in raw if m.type != "control_change"]
    if not notes:
        return []
    first = notes[0]
    tm = TempoMap(tempo, 0.0)
    out = []
    for tick, msg in raw:
        t = max(tick - first, 0.0)
        out.append((t, tm.time_of(t), msg.copy(channel=channel, time=0)))
    return out


RENDER_SLACK_TICKS = 4 * ev.TICKS_PER_BEAT  # a bar beyond the last moment the answer can end


def render_bound_ticks(cond: Conductor, last_tick: float) -> float:
    """The simulated tick by which a render is over, whatever the phrase ending at `last_tick` holds:
    the answer begins at most hold_bound_ticks + phrase_gap after the phrase's last event (a key or a
    pedal held longer counts as released), then lasts answer_ticks (a solo: solo_beats)."""
    if cond.mode != "call-response":
        return last_tick + (cond.solo_beats or 0) * ev.TICKS_PER_BEAT + RENDER_SLACK_TICKS
    return last_tick + cond.hold_bound_ticks + cond.gap_ticks + cond.answer_ticks + RENDER_SLACK_TICKS


def render(
    model: StepModel,
    *,
    beats: float = 16.0,
    phrase: mido.MidiFile | None = None,
    tempo: float = 100.0,
    temperature: float = 1.0,
    top_p: float = 0.95,
    seed: int | None = None,
    phrase_gap: float = 1.0,
    channel: int = 0,
    keep_history: bool = False,
    key: str = "off",
    key_strength: float | None = 0.0,
    key_opening: float | None = 1.0,
    pedal_hold_bars: float = 4,
    beats_per_bar: int = 4,
) -> Rendered:
    """Play `beats` beats: the answer to `phrase`, or a solo from START.

    Stops at `render_bound_ticks` of simulated time at the latest; `complete` on the result says
    whether the answer (or solo) was over by then."""
    events = phrase_events(phrase, tempo) if phrase is not None else []
    if phrase is not None and not any(m.type == "note_on" and m.velocity > 0 for _, _, m in events):
        raise ev.MidiFileError("the seed phrase has no notes")
    settings = plain_settings(
        mode="call-response" if events else "solo",
        tempo=tempo,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        phrase_gap=phrase_gap,
        key=key,
        key_strength=key_strength,
        key_opening=key_opening,
        pedal_hold_bars=pedal_hold_bars,
        beats_per_bar=beats_per_bar,
        midi=config.Midi(channel=channel + 1),
    )
    clock = SimClock(0.0)
    inbox: Inbox = ScriptedInbox(clock, [(t, m) for _, t, m in events]) if events else NoInbox(clock)
    out: list[TimedMessage] = []
    player = build_player(
        settings,
        model,
        clock=clock,
        inbox=inbox,
        sink=ListSink(clock),
        keep_history=keep_history,
        on_sent=lambda tm, _d: out.append(tm),
    )
    sch, tb, engine, cond = player.scheduler, player.timebase, player.engine, player.conductor
    if events:
        cond.answer_beats = beats
    else:
        cond.solo_beats = beats
    bound = render_bound_ticks(cond, events[-1][0] if events else 0.0)
    sch.begin()
    sch.run(until=tb.time_of(bound), done=lambda: cond.answers >= 1)
    sch.end()
    if cond.answers < 1:
        log.warning("no answer within %d ticks of simulated time; writing what was played", bound)
    start = (cond.answer_start or 0) if events else 0  # (no answer: nothing was played either)
    answer = [TimedMessage(tm.tick - start, tm.message) for tm in out]
    played = [TimedMessage(int(round(tick)), m) for tick, _, m in events]
    return Rendered(
        answer,
        played,
        start,
        cond.gap_end,
        complete=cond.answers >= 1,
        bound_ticks=bound,
        engine=engine,
        conductor=cond,
    )


def write_render(
    path: str | Path, rendered: Rendered, include_seed: bool, tempo: float, program: int | None = None
) -> mido.MidiFile:
    """The answer as a MIDI file; with include_seed, a type-1 file: track 0 the phrase, track 1 the answer."""
    if not include_seed:
        mid = ev.to_midi(rendered.answer, tempo_bpm=tempo, program=program)
    else:
        mid = ev.to_midi(rendered.phrase, tempo_bpm=tempo, program=program)
        mid.type = 1
        mid.tracks.append(ev.to_midi(rendered.answer_after_phrase(), tempo_bpm=tempo, program=program).tracks[0])
        for track, name in zip(mid.tracks, ("phrase", "answer")):
            track.insert(0, mido.MetaMessage("track_name", name=name))
    mid.save(str(path))
    return mid
