"""The engine and scheduler on a simulated clock: exact event order and times."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from cadenza.player import events as ev
from cadenza.player.clock import TempoMap
from cadenza.player.engine import Engine
from cadenza.player.sampling import Sampler
from support.fakes import BigramModel, ScriptModel
from support.rig import MELODY, SPT, rig


def sent(sink, t0=10.0):
    return [(round((t - t0) / SPT, 6), m.type, getattr(m, "note", None)) for t, m in sink.sent]


def test_solo_sends_the_script_at_exact_tick_times():
    sch, sink = rig(ScriptModel(MELODY))
    sch.begin()
    sch.run(until=10.0 + 48 * SPT)
    assert sent(sink) == [
        (0, "note_on", 60),
        (12, "note_off", 60),
        (12, "note_on", 64),
        (24, "note_off", 64),
        (24, "note_on", 67),
        (48, "note_off", 67),
    ]
    assert sink.sent[1][0] == pytest.approx(10.0 + 12 * SPT, abs=1e-9)


def test_sends_are_in_time_order_and_never_early():
    sch, sink = rig(BigramModel(3))
    sch.measure = True
    sch.begin()
    sch.run(until=10.0 + 30.0)
    times = [t for t, _ in sink.sent]
    assert len(times) > 100 and times == sorted(times)
    assert min(sch.late) >= 0 and max(sch.late) < 1e-9  # a sim clock is always punctual


def test_every_note_on_gets_its_note_off_after_stop():
    sch, sink = rig(BigramModel(5))
    sch.begin()
    sch.run(until=10.0 + 7.3)
    sch.end()
    on = set()
    for _, m in sink.sent:
        if m.type == "note_on" and m.velocity:
            on.add(m.note)
        elif m.type in ("note_on", "note_off"):
            on.discard(m.note)
    assert not on and not sch.engine.sounding


def test_tempo_change_reanchors_without_a_jump():
    tb = TempoMap(120, 5.0)
    t_before = tb.time_of(48)
    tb.set_tempo(60, tb.time_of(24))
    assert tb.time_of(24) == pytest.approx(5.0 + 24 * SPT)
    assert tb.time_of(48) == pytest.approx(tb.time_of(24) + 24 * 2 * SPT)
    assert tb.time_of(48) > t_before


def test_rollback_restores_state_and_drops_unsent_messages():
    model = BigramModel(7)
    eng = Engine(model, Sampler(1.0, 0.9, seed=2))
    eng.start(0)
    eng.play(0)
    saved = []  # before each token generated: the cursor, the model's state and the next token's logits
    while eng.cursor < 40:
        saved.append((eng.cursor, [np.array(a, copy=True) for a in model.get_state()], np.array(eng.logits)))
        eng.generate()
    n_planned = [tm for tm in eng.planned if tm.tick <= 10]
    eng.rollback(10)
    assert eng.cursor <= 10
    assert all(tm.tick <= 10 for tm in eng.planned)
    assert list(eng.planned) == n_planned
    # the state is the one the model had at that point (the last token generated from at most tick 10)
    cursor, state, logits = [s for s in saved if s[0] <= 10][-1]
    assert eng.cursor == cursor
    restored = model.get_state()
    assert len(restored) == len(state) and all(np.array_equal(a, b) for a, b in zip(restored, state))
    np.testing.assert_array_equal(eng.logits, logits)
    assert not np.array_equal(restored[0], saved[-1][1][0])  # (and not the one it had at tick 40)
    assert eng.playing


def test_keyboard_heard_in_time_order_in_duet():
    """The keyboard's tokens go into the state at their tick, before the model's later ones."""
    on = mido.Message("note_on", note=72, velocity=100)
    off = mido.Message("note_off", note=72)
    sch, sink = rig(ScriptModel(MELODY), mode="duet", events=[(30 * SPT, on), (40 * SPT, off)])
    sch.begin()
    sch.run(until=10.0 + 96 * SPT)
    hist = [(o, t, ev.describe(tok)) for o, t, tok in sch.engine.history]
    ticks = [t for _, t, _ in hist]
    assert ticks == sorted(ticks)  # one time line, in order
    assert ("keyboard", 30, "ON 72") in hist and ("keyboard", 40, "OFF 72") in hist
    # the model's notes after the keyboard were generated after hearing it (rolled back and redone)
    i = hist.index(("keyboard", 30, "ON 72"))
    assert any(o == "model" for o, _, _ in hist[i:])
    assert [m for _, m in sink.sent if getattr(m, "note", None) == 72] == []  # no thru


def test_sampler_top_p_and_temperature():
    z = np.log(np.array([0.6, 0.3, 0.1], np.float32))
    s = Sampler(1.0, 0.5, seed=0)
    assert {s.sample(z) for _ in range(50)} == {0}
    s = Sampler(1.0, 0.85, seed=0)
    assert {s.sample(z) for _ in range(200)} == {0, 1}
    assert Sampler(0.0, 1.0).sample(z) == 0
    a = [Sampler(1.0, 1.0, seed=9).sample(z) for _ in range(3)]
    assert len(set(a)) == 1
    counts = np.bincount([Sampler(1.0, 1.0, seed=i).sample(z) for i in range(2000)], minlength=3)
    assert abs(counts[0] / 2000 - 0.6) < 0.05
