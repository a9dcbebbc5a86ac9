"""Phrase ends with keys or pedal left down: held keys, a stuck pedal, a reversed pedal, any phrase at all.

On a simulated clock (120 BPM, 24 ticks a beat): the tick each answer starts at is exact. A key held
down counts as released MAX_NOTE_TICKS (4 bars, 384 ticks) after it was struck; a pedal down
pedal_hold_bars with no key played counts as lifted, and from then on as reversed.
"""

from __future__ import annotations

import logging

import mido
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza.player import events as ev
from cadenza.player.events import MAX_NOTE_TICKS
from cadenza.player.render import RENDER_SLACK_TICKS, render
from support.fakes import BigramModel, ScriptModel
from support.rig import SPT, rig

ANSWER = [ev.note_on(67), ev.shift(6), ev.note_off(67), ev.note_on(69), ev.shift(6), ev.note_off(69)]
BAR = 96
GAP = 24  # rig's phrase_gap: one beat


def on(n, v=90):
    return mido.Message("note_on", note=n, velocity=v)


def off(n):
    return mido.Message("note_off", note=n)


def pedal(v):
    return mido.Message("control_change", control=64, value=v)


def eighths(t0=0, pitches=(60, 62, 64, 65, 67, 65)):
    """(tick, message): eighth notes from t0, each released before the next."""
    out = []
    for i, p in enumerate(pitches):
        out += [(t0 + 12 * i, on(p)), (t0 + 12 * i + 10, off(p))]
    return out


def held_chord(t0=72):
    """The issue's shape: 69, 71 and 72 struck together, only 69 released."""
    return [(t0, on(69)), (t0, on(71)), (t0, on(72)), (t0 + 12, off(69))]


def play(events, until_tick, hold_bars=4, **kw):
    """Run call-response on `events` (tick, message); the ticks at which answers started."""
    sch, _ = rig(ScriptModel(ANSWER), mode="call-response", events=[(t * SPT, m) for t, m in events], **kw)
    cond = sch.conductor
    cond.pedal_hold_bars = hold_bars
    starts: list[int] = []
    cond.listeners.append(lambda what, tick: starts.append(tick) if what == "answer-start" else None)
    sch.begin()
    sch.run(until=10.0 + until_tick * SPT)
    return starts, cond


def test_keys_left_down_count_as_released_after_max_note_ticks():
    starts, cond = play(eighths() + held_chord(), 72 + MAX_NOTE_TICKS + GAP + 2 * BAR)
    assert starts == [72 + MAX_NOTE_TICKS + GAP]  # 4 bars after they were struck, then the gap
    assert cond.held == {}


def test_a_key_held_as_the_final_note_still_delays_the_answer():
    # the last note held two bars, then released: the answer waits for it, as before
    events = eighths() + [(72, on(69)), (72 + 2 * BAR, off(69))]
    starts, _ = play(events, 72 + 3 * BAR)
    assert starts == [72 + 2 * BAR + GAP]


def test_a_held_key_released_after_the_bound_does_not_start_a_second_answer():
    events = eighths() + held_chord() + [(72 + MAX_NOTE_TICKS + GAP + 10, off(71))]
    starts, cond = play(events, 72 + MAX_NOTE_TICKS + 3 * BAR)
    assert starts == [72 + MAX_NOTE_TICKS + GAP] and cond.answers == 1


def test_a_pedal_held_to_let_the_chord_ring_then_lifted_ends_the_phrase_at_the_lift():
    events = [(0, pedal(127))] + eighths() + [(72 + 2 * BAR, pedal(0))]
    starts, cond = play(events, 72 + 3 * BAR)
    assert starts == [72 + 2 * BAR] and not cond.pedal_reversed


def test_a_pedal_pressed_during_the_phrase_keeps_it_open_past_the_gap():
    events = eighths() + [(70, pedal(127)), (70 + BAR, pedal(0))]
    starts, _ = play(events, 70 + 2 * BAR)
    assert starts == [70 + BAR]


def test_a_stuck_pedal_stops_holding_the_phrase_after_pedal_hold_bars(caplog):
    events = [(0, pedal(127))] + eighths()
    with caplog.at_level(logging.INFO, logger="cadenza.player.steering"):
        starts, cond = play(events, 70 + 2 * BAR + 2 * BAR, hold_bars=2)
    assert starts == [70 + 2 * BAR]  # two bars after the last key (the note-off at 70)
    assert cond.pedal_reversed and not cond.pedal


def test_a_reversed_pedal_is_recognised_once_and_read_the_other_way_round(caplog):
    # At rest it reads down (127); the musician presses it (0) during the second phrase and lets go (127).
    second = 70 + 2 * BAR + 2 * BAR
    events = [(0, pedal(127))] + eighths() + eighths(second) + [(second + 30, pedal(0)), (second + 90, pedal(127))]
    third = second + 90 + 2 * BAR
    events += eighths(third)
    with caplog.at_level(logging.INFO, logger="cadenza.player.steering"):
        starts, cond = play(events, third + 2 * BAR, hold_bars=2)
    # the first phrase waits out the bound; the second ends when the pedal comes up (its 127, after the
    # last key), the
    # third after the plain gap: the pedal now reads up at rest
    assert starts == [70 + 2 * BAR, second + 90, third + 70 + GAP]
    said = [r.getMessage() for r in caplog.records if "pedal" in r.getMessage()]
    assert said == ["sustain pedal reads down at rest: treating it as reversed"]
    assert cond.pedal_reversed


def test_render_of_the_issues_phrase_ends(tmp_path):
    mid = phrase_file([(t, m) for t, m in eighths() + held_chord()])
    r = render(BigramModel(1), beats=16, phrase=mid, seed=1, tempo=120)
    assert r.complete and r.answer_start == 72 + MAX_NOTE_TICKS + GAP


# -- any phrase at all ---------------------------------------------------------------


def phrase_file(events) -> mido.MidiFile:
    """A one-track file (480 ticks a beat) of (tick, message), in the order given at each tick."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    now = 0
    for tick, msg in sorted(events, key=lambda e: e[0]):
        track.append(msg.copy(time=(tick - now) * 20))
        now = tick
    return mid


PITCHES = st.sampled_from([60, 62, 64, 67, 69, 71, 72])
EVENT = st.one_of(
    st.tuples(st.integers(0, 300), st.just("on"), PITCHES),
    st.tuples(st.integers(0, 300), st.just("off"), PITCHES),  # unmatched, or before its note-on (zero-length)
    st.tuples(st.integers(0, 300), st.just("pedal"), st.sampled_from([0, 127])),
    st.tuples(st.integers(0, 300), st.just("grace"), PITCHES),  # a zero-length note: its note-off first
)
PHRASES = st.lists(EVENT, min_size=1, max_size=24).filter(lambda evs: any(k in ("on", "grace") for _, k, _ in evs))


def messages(evs):
    out = []
    for tick, kind, x in evs:
        if kind == "grace":
            out += [(tick, off(x)), (tick, on(x))]
        else:
            out.append((tick, on(x) if kind == "on" else off(x) if kind == "off" else pedal(x)))
    return sorted(out, key=lambda e: e[0])  # (stable: a grace note's note-off stays first)


def held_intervals(evs):
    """(struck, up) of each key press, as the conductor sees it: up at its note-off, or MAX_NOTE_TICKS on."""
    out, down = [], {}
    for tick, msg in messages(evs):
        if msg.type == "note_on":
            if msg.note in down:
                out.append((down[msg.note], min(tick, down[msg.note] + MAX_NOTE_TICKS)))
            down[msg.note] = tick
        elif msg.type == "note_off" and msg.note in down:
            out.append((down[msg.note], min(tick, down.pop(msg.note) + MAX_NOTE_TICKS)))
    out += [(t, t + MAX_NOTE_TICKS) for t in down.values()]
    return out


EXAMPLES = 200  # each: a render (about 10 ms) and a call-response run (a few ms); derandomized, so CI sees
# the same 200 phrases every run


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(PHRASES, st.integers(1, 4))
def test_any_phrase_renders_within_the_bound(evs, hold_bars):
    """--render's loop: the answer is over before the hard bound, and starts within hold_bound + gap
    of the phrase's last event, whatever is left held (keys, pedal, unmatched note-offs)."""
    mid = phrase_file(messages(evs))
    r = render(BigramModel(1), beats=4, phrase=mid, seed=1, tempo=120, phrase_gap=1.0, pedal_hold_bars=hold_bars)
    last = max(tm.tick for tm in r.phrase)  # on the phrase's axis (its first note at 0)
    cond = r.conductor
    assert r.complete, "the render hit its bound"
    assert r.answer_start <= last + cond.hold_bound_ticks + cond.gap_ticks + 1
    assert r.bound_ticks == last + cond.hold_bound_ticks + cond.gap_ticks + 4 * 24 + RENDER_SLACK_TICKS


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(PHRASES, st.integers(1, 4))
def test_call_response_always_answers_within_a_bound_after_the_last_note_on(evs, hold_bars):
    """The last note-on is answered by an answer that starts after it and within hold_bound + gap of the
    phrase's last event; and no answer starts while a key is really down (struck, not yet up or 4 bars old)."""
    last_on = max(t for t, k, _ in evs if k in ("on", "grace"))
    last = max(t for t, _, _ in evs)
    bound = max(MAX_NOTE_TICKS, hold_bars * BAR) + GAP
    starts, _ = play(messages(evs), last + bound + 2, hold_bars=hold_bars)
    assert any(last_on <= s <= last + bound + 1 for s in starts), (starts, last_on, last)
    for s in starts:
        assert not any(t + 1 <= s <= up - 1 for t, up in held_intervals(evs)), (s, held_intervals(evs))
