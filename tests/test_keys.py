"""Keys: names, the lean added to the logits, the tracker, and the conductor following the phrase's key."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from cadenza.player import events as ev
from cadenza.player import keys
from cadenza.player.config import KEY_STRENGTH, ConfigError, Settings, override
from cadenza.player.sampling import Sampler
from support.fakes import ScriptModel
from support.keyphrases import phrase_notes
from support.rig import SPT, rig


def as_events(notes, t0=0):
    """A list of events.Note as (seconds, message) for the rig's scripted keyboard."""
    out = []
    for n in notes:
        out.append(((t0 + n.start) * SPT, mido.Message("note_on", note=n.pitch, velocity=n.velocity)))
        out.append(((t0 + n.end) * SPT, mido.Message("note_off", note=n.pitch)))
    return sorted(out, key=lambda e: (e[0], e[1].type == "note_on"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("C major", (0, "major")),
        ("d minor", (2, "minor")),
        ("Eb major", (3, "major")),
        ("F# min", (6, "minor")),
        ("Bb", (10, "major")),
        ("c♯ minor", (1, "minor")),
        ("  A  maj ", (9, "major")),
    ],
)
def test_key_names(text, key):
    assert keys.parse(text) == key
    assert keys.parse(keys.name(key)) == key


@pytest.mark.parametrize("text", ["H major", "C dorian", "", "C major please", "7"])
def test_bad_key_names(text):
    with pytest.raises(ValueError, match="not a key"):
        keys.parse(text)


def test_key_settings_in_config_and_their_errors():
    assert override(Settings(), {"play.key": "D minor"}).play.key == "D minor"
    assert Settings().play.key == "auto" and Settings().play.key_strength is None  # the model's own
    assert override(Settings(), {"play.key_strength": 2}).play.key_strength == 2.0
    assert override(Settings(), {"play.key_strength": None}).play.key_strength is None
    assert keys.parse_setting("auto") == "auto" and keys.parse_setting("off") is None
    assert keys.parse_setting("G minor") == (7, "minor")
    with pytest.raises(ConfigError, match="play.key must be"):
        override(Settings(), {"play.key": "H major"})
    with pytest.raises(ConfigError, match="play.key must be"):
        override(Settings(), {"play.key": 5})
    for bad in (-1, 11, "strong", True):
        with pytest.raises(ConfigError, match="play.key_strength"):
            override(Settings(), {"play.key_strength": bad})


class _Meta:
    def __init__(self, meta):
        self.meta = meta


@pytest.mark.parametrize(
    "meta, want",
    [
        ({}, KEY_STRENGTH),  # a model that does not ask: the player's default
        ({"conditioning": {"kind": "key_tokens"}}, KEY_STRENGTH),
        ({"conditioning": {"kind": "key_input", "key_strength": 1.5}}, 1.5),
        ({"conditioning": {"kind": "key_input", "key_strength": 0}}, 0.0),
        ({"conditioning": {"kind": "key_input", "key_strength": "lots"}}, KEY_STRENGTH),  # malformed: ignored
        ({"conditioning": {"kind": "key_input", "key_strength": 99}}, KEY_STRENGTH),
        ({"conditioning": ["key_input"]}, KEY_STRENGTH),
    ],
)
def test_a_model_may_name_its_own_lean(meta, want):
    assert keys.model_strength(_Meta(meta)) == want
    assert keys.model_strength(object()) == KEY_STRENGTH  # (a model with no bundle)


def test_the_conductor_uses_the_model_lean_until_one_is_set():
    from cadenza.player.engine import Engine
    from cadenza.player.sampling import Sampler
    from cadenza.player.steering import Conductor
    from support.fakes import BigramModel

    model = BigramModel()
    model.meta = {"conditioning": {"kind": "key_input", "key_strength": 1.25}}
    cond = Conductor(Engine(model, Sampler(seed=0)), key="D minor", key_strength=None)
    assert cond.key_strength == 1.25
    cond.set_key_strength(4.0)
    assert cond.key_strength == 4.0
    cond.set_key_strength(None)  # a reload with the setting removed: the model's again
    assert cond.key_strength == 1.25
    other = BigramModel(seed=1)  # a patch switch to a model that names no lean: the player's default
    cond.engine.set_model(other)
    cond.model_changed()
    assert cond.key_strength == KEY_STRENGTH
    expected = keys.bias(cond.key, KEY_STRENGTH, other.vocab_size)
    np.testing.assert_array_equal(cond.engine.key_bias, expected)


@pytest.mark.parametrize(
    "meta, want",
    [
        ({}, 1.0),  # a model that does not ask: the same lean throughout
        ({"conditioning": {"kind": "key_input", "key_opening": 2}}, 2.0),
        ({"conditioning": {"kind": "key_input", "key_opening": 0.5}}, 1.0),  # out of range: ignored
        ({"conditioning": {"kind": "key_input", "key_opening": "more"}}, 1.0),
        ({"conditioning": {"kind": "key_input", "key_opening": True}}, 1.0),
    ],
)
def test_a_model_may_name_how_hard_an_answer_opens(meta, want):
    assert keys.model_opening(_Meta(meta)) == want
    assert override(Settings(), {"play.key_opening": 3}).play.key_opening == 3.0
    assert Settings().play.key_opening is None  # the model's own
    for bad in (0.5, 6, "lots", False):
        with pytest.raises(ConfigError, match="play.key_opening"):
            override(Settings(), {"play.key_opening": bad})


def test_an_answer_opens_in_the_key_for_its_first_bar_then_leans_as_set(monkeypatch):
    from cadenza.player import engine as engine_mod

    model = ScriptModel([ev.note_on(67), ev.shift(6), ev.note_off(67)])
    sch, _ = rig(model, mode="call-response", events=as_events(phrase_notes(2, "minor")), answer_bars=2)
    cond, eng = sch.conductor, sch.engine
    cond.set_key("auto", 1.5)
    eng.model.meta = {"conditioning": {"kind": "key_input", "key_opening": 2.0}}
    cond.set_key_opening(None)  # the model's own
    assert cond.key_opening == 2.0
    used = []  # (cursor, the bias the sampled token was leaned with)
    real = keys.lean

    def spy(logits, bias):
        used.append((eng.cursor, bias))
        return real(logits, bias)

    monkeypatch.setattr(engine_mod.keys, "lean", spy)
    starts = []
    cond.listeners.append(lambda what, tick: starts.append(tick) if what == "answer-start" else None)
    sch.begin()
    sch.run(until=10.0 + 800 * SPT)
    assert cond.answers == 1 and len(starts) == 1
    key, bar = (2, "minor"), cond.bar_ticks
    strong, plain = keys.bias(key, 3.0, ev.VOCAB_SIZE), keys.bias(key, 1.5, ev.VOCAB_SIZE)
    first = [b for c, b in used if c < starts[0] + bar]
    rest = [b for c, b in used if c >= starts[0] + bar]
    assert first and rest
    assert all(np.array_equal(b, strong) for b in first)
    assert all(np.array_equal(b, plain) for b in rest)
    # Set to 1 (a reload), the answer leans the same throughout; the knob at 0 leaves the model free, first bar too.
    cond.set_key_opening(1.0)
    assert eng.opening_bias is None
    cond.set_key_opening(None)
    cond.set_key_strength(0.0)
    assert eng.key_bias is None and eng.opening_bias is None


def test_bias_leans_note_ons_to_the_key_profile_and_nothing_else():
    b = keys.bias((2, "minor"), 2.0, ev.VOCAB_SIZE)
    assert b.shape == (ev.VOCAB_SIZE,) and b.dtype == np.float32
    on = b[ev.NOTE_ON_BASE : ev.NOTE_OFF_BASE]
    assert np.all(b[: ev.NOTE_ON_BASE] == 0) and np.all(b[ev.NOTE_OFF_BASE :] == 0)  # offs, shifts, velocities
    pcs = (np.arange(ev.LOW_PITCH, ev.HIGH_PITCH + 1)) % 12
    assert np.all(on[pcs == 2] == 0)  # the tonic, D
    assert np.all(on <= 0)
    per_pc = {pc: on[pcs == pc][0] for pc in range(12)}
    # D minor: the fifth (A) and the third (F) lean less than a chromatic note (D#)
    assert per_pc[9] > per_pc[3] and per_pc[5] > per_pc[3]
    assert per_pc[9] == pytest.approx(2.0 * np.log(keys.MINOR[7] / keys.MINOR[0]), rel=1e-5)
    assert keys.bias((2, "minor"), 0.0, ev.VOCAB_SIZE) is None
    assert keys.bias(None, 3.0, ev.VOCAB_SIZE) is None


def test_bias_moves_sampling_to_the_key():
    # equal logits over every NOTE_ON: without the lean all 12 pitch classes are as likely
    logits = np.full(ev.VOCAB_SIZE, -30.0, np.float32)
    logits[ev.NOTE_ON_BASE : ev.NOTE_OFF_BASE] = 0.0
    b = keys.bias((7, "major"), 3.5, ev.VOCAB_SIZE)  # G major
    s = Sampler(1.0, 1.0, seed=3)
    pcs = np.array([(s.sample(keys.lean(logits, b)) - ev.NOTE_ON_BASE + ev.LOW_PITCH) % 12 for _ in range(4000)])
    counts = np.bincount(pcs, minlength=12)
    assert counts.argmax() == 7
    g_major = [7, 9, 11, 0, 2, 4, 6]
    assert counts[g_major].sum() > 0.85 * len(pcs)
    assert keys.estimate([ev.Note(0, 60 + pc, 1, 80) for pc in pcs]) == (7, "major")


def test_lean_keeps_the_chance_of_playing_a_note():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=ev.VOCAB_SIZE).astype(np.float32)
    z = keys.lean(logits, keys.bias((1, "minor"), 5.0, ev.VOCAB_SIZE))

    def p_on(x):
        p = np.exp(x - x.max())
        return p[ev.NOTE_ON_BASE : ev.NOTE_OFF_BASE].sum() / p.sum()

    assert p_on(z) == pytest.approx(p_on(logits), rel=1e-4)
    np.testing.assert_array_equal(z[ev.NOTE_OFF_BASE :], logits[ev.NOTE_OFF_BASE :])  # the rest as the model has it
    assert not np.allclose(z[ev.NOTE_ON_BASE : ev.NOTE_OFF_BASE], logits[ev.NOTE_ON_BASE : ev.NOTE_OFF_BASE])


def test_tracker_counts_durations_forgets_with_its_half_life_and_counts_held_notes():
    t = keys.KeyTracker(half_life=48)
    t.note_on(60, 0)
    t.note_off(60, 24)
    assert t.hist[0] == 24
    t.note_on(67, 24)
    t.note_off(67, 72)  # 48 ticks later: the C counts half
    assert t.hist[0] == pytest.approx(12) and t.hist[7] == pytest.approx(48)
    t.note_on(64, 72)
    h = t.hist.copy()
    t.estimate(96)  # the held E counts in the estimate, not in the histogram
    assert t.hist[4] == 0 and np.allclose(t.hist, h * 0.5 ** (24 / 48))
    t.reset()
    assert t.estimate(200) is None
    for n in phrase_notes(9, "minor"):
        t.note_on(n.pitch, n.start)
        t.note_off(n.pitch, n.end)
    assert t.estimate() == (9, "minor")


def answer_rig(key="auto", mode="call-response", events=(), strength=3.5):
    sch, sink = rig(ScriptModel([ev.note_on(67), ev.shift(6), ev.note_off(67)]), mode=mode, events=events)
    sch.conductor.set_key(key, strength)
    return sch, sink


def test_call_response_answers_in_the_key_of_each_phrase():
    first = phrase_notes(2, "minor")  # D minor: scale and cadence, 288 ticks
    second = phrase_notes(4, "major")  # E major, after the first answer
    events = as_events(first) + as_events(second, t0=1000)
    sch, _ = answer_rig(events=events)
    cond, eng = sch.conductor, sch.engine
    seen = []
    cond.listeners.append(lambda what, tick: seen.append((what, cond.key, eng.key_bias)))
    sch.begin()
    sch.run(until=10.0 + 900 * SPT)
    assert seen[0][0] == "answer-start" and seen[0][1] == (2, "minor")
    np.testing.assert_array_equal(seen[0][2], keys.bias((2, "minor"), 3.5, ev.VOCAB_SIZE))
    assert cond.tracker.hist.sum() == 0  # the answer ended: the next phrase starts afresh
    sch.run(until=10.0 + 1500 * SPT)
    starts = [k for what, k, _ in seen if what == "answer-start"]
    assert starts == [(2, "minor"), (4, "major")]


# The opening of "My time o ye Muses" (music21's ryansMammoth, moved to C minor), as (start, end, pitch) in
# ticks: C minor throughout, but its last bar and a half walk around F and Ab, so a tracker that fades the
# opening hears F minor by the end.
MUSES = [(48, 60, 75), (60, 72, 74), (72, 96, 72), (96, 120, 72), (120, 132, 75), (132, 144, 77), (144, 168, 79),
         (168, 192, 79), (192, 210, 84), (210, 216, 82), (216, 240, 79), (240, 258, 80), (258, 264, 79),
         (264, 276, 77), (276, 288, 75), (288, 336, 77), (336, 348, 79), (348, 360, 77)]  # fmt: skip


def test_a_call_is_heard_whole_and_a_duet_follows_the_keyboard():
    notes = [ev.Note(s, p, e, 80) for s, e, p in MUSES]
    assert keys.estimate(notes) == (0, "minor")
    sch, _ = answer_rig(events=as_events(notes))
    cond = sch.conductor
    seen = []
    cond.listeners.append(lambda what, tick: seen.append((what, cond.key)))
    assert cond.tracker.half_life is None
    sch.begin()
    sch.run(until=10.0 + 700 * SPT)
    assert seen[0] == ("answer-start", (0, "minor"))  # the whole call's key, its first bars counted in full
    # The same notes with the duet's fading memory end in F minor: playing along follows the keyboard.
    cond.set_mode("duet", 800)
    assert cond.tracker.half_life == 16 * ev.TICKS_PER_BEAT
    fading = keys.KeyTracker(half_life=cond.tracker.half_life)
    for tick, on, pitch in sorted([(n.start, 1, n.pitch) for n in notes] + [(n.end, 0, n.pitch) for n in notes]):
        (fading.note_on if on else fading.note_off)(pitch, tick)
    assert fading.estimate(360) == (5, "minor")
    cond.set_mode("call-response", 900)
    assert cond.tracker.half_life is None


def test_key_off_leaves_the_model_free_and_a_fixed_key_holds_in_solo():
    sch, _ = answer_rig(key="off", events=as_events(phrase_notes(2, "minor")))
    sch.begin()
    sch.run(until=10.0 + 500 * SPT)
    assert sch.conductor.answers == 1 and sch.engine.key_bias is None
    sch, _ = answer_rig(key="Bb major", mode="solo")
    sch.begin()
    assert sch.conductor.key == (10, "major")
    np.testing.assert_array_equal(sch.engine.key_bias, keys.bias((10, "major"), 3.5, ev.VOCAB_SIZE))
    sch.conductor.set_key_strength(0.0)
    assert sch.engine.key_bias is None


def test_duet_follows_the_keyboard_into_a_new_key():
    events = as_events(phrase_notes(0, "major")) + as_events(phrase_notes(6, "major") * 1, t0=600)
    sch, _ = answer_rig(mode="duet", events=events)
    sch.begin()
    sch.run(until=10.0 + 300 * SPT)
    assert sch.conductor.key == (0, "major")
    sch.run(until=10.0 + 900 * SPT)
    assert sch.conductor.key == (6, "major")  # C major has faded (half-life 16 beats)


def test_render_with_the_real_model_stays_in_a_fixed_key():
    from cadenza.player.render import render
    from cadenza.player.runtime import open_model
    from support.models import converted

    model = open_model(converted().bundle)
    free = render(model, beats=64, seed=5)
    leaned = render(model, beats=64, seed=5, key="A minor", key_strength=10.0)

    def pitch_classes(r):
        return [tm.message.note % 12 for tm in r.answer if tm.message.type == "note_on" and tm.message.velocity]

    a_minor = {9, 11, 0, 2, 4, 5, 7, 8}  # with the raised seventh
    free_pcs, leaned_pcs = pitch_classes(free), pitch_classes(leaned)
    assert len(leaned_pcs) >= 10
    assert sum(pc in a_minor for pc in leaned_pcs) / len(leaned_pcs) > 0.9
    assert len(set(free_pcs) - a_minor) > 0  # without the lean the tiny model plays outside it
