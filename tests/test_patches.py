"""The patch bank: a switch on the bar line, the new model warmed on the stream, nothing left hanging;
Program Change and the patch knob; the bank's bundles checked at start; [patches] in the config."""

from __future__ import annotations

import logging

import mido
import pytest

from cadenza.player import events as ev
from cadenza.player.bundle import BundleError
from cadenza.player.config import ConfigError, Patch, load_config
from cadenza.player.patches import Bank, Slot, default_patches
from cadenza.player.runtime import open_model
from support.fakes import BigramModel, ScriptModel
from support.models import converted
from support.rig import SPT, cc, off, on, rig

BAR = 4 * ev.TICKS_PER_BEAT

LOW = [ev.note_on(60), ev.shift(6), ev.note_off(60), ev.shift(6)]  # eighth notes of C4
HIGH = [ev.note_on(84), ev.shift(12), ev.note_off(84), ev.shift(12)]  # quarter notes of C6


class Hearing(ScriptModel):
    """A ScriptModel that keeps every token it was fed since its last reset."""

    def reset(self) -> None:
        super().reset()
        self.fed = []


def _bank(*models):
    return Bank([Slot(i, f"m{i}", f"m{i}", m) for i, m in enumerate(models)])


def _play(model_a, model_b, mode="solo", switch_at=1.3, seconds=6.0, events=(), program=1, **kw):
    """The rig with patches 0 (model_a, playing) and 1 (model_b); a Program Change at `switch_at` s."""
    switches = []
    msgs = [*events, (switch_at, mido.Message("program_change", program=program))]
    sch, sink = rig(
        model_a,
        mode=mode,
        events=msgs,
        bank=_bank(model_a, model_b),
        patch=0,
        on_patch=lambda slot, tick: switches.append(
            (slot.program, tick, list(sch.engine.history), list(getattr(slot.model, "fed", [])))
        ),
        **kw,
    )
    sch.begin()
    sch.run(until=sch.clock.now() + seconds)
    sch.end()
    return sch, sink, switches


def _left_sounding(sink) -> dict[int, int]:
    """Note -> note-ons sent without a note-off after them (each note-on needs its own note-off)."""
    sounding: dict[int, int] = {}
    for _, m in sink.sent:
        if m.type == "note_on" and m.velocity:
            sounding[m.note] = sounding.get(m.note, 0) + 1
        elif m.type in ("note_off", "note_on"):
            sounding[m.note] = max(0, sounding.get(m.note, 0) - 1)
    return sounding


def _ticks(sch, sink):
    tb = sch.timebase
    return [(round(tb.tick_at(t)), m) for t, m in sink.sent]


def test_solo_switch_lands_on_the_bar_line_and_the_new_model_plays_from_it():
    a, b = ScriptModel(LOW), Hearing(HIGH)
    sch, sink, switches = _play(a, b, switch_at=1.3)  # 1.3 s at 120 BPM: beat 2.6 of bar 1
    assert [s[0] for s in switches] == [1]
    bar = switches[0][1]
    assert bar % BAR == 0 and bar > 1.3 / SPT
    notes = [(tick, m.note) for tick, m in _ticks(sch, sink) if m.type == "note_on" and m.velocity]
    assert all(n == 60 for tick, n in notes if tick < bar)  # the old model up to the bar
    assert all(n == 84 for tick, n in notes if tick >= bar)  # the new one from it
    assert (bar, 84) in notes  # its first note on the bar line itself: no gap in the beat
    assert sch.engine.model is b and sch.background is not None and sch.background.current == 1


def test_the_new_model_hears_the_last_bars_of_the_stream_before_it_plays():
    a, b = BigramModel(seed=3), Hearing(HIGH)
    keys = [(0.5 + i * 0.25, m) for i, m in enumerate([on(62), off(62), on(65), off(65)])]
    keys += [(8.5 + i * 0.25, m) for i, m in enumerate([on(64), off(64), on(67), off(67)])]
    sch, sink, switches = _play(a, b, switch_at=11.1, mode="duet", events=keys, seconds=14.0)
    (_, bar, history, heard) = switches[0]
    # START, then the stream as it was at the bar line, from the first token of the last four bars on
    stream = [tok for origin, tick, tok in history]
    window = [tok for origin, tick, tok in history if tick >= bar - 4 * BAR]
    warm = heard[1:]
    assert heard[0] == ev.START and ev.START not in warm  # (the piece began long before)
    assert warm == stream[len(stream) - len(warm) :]  # an unbroken stretch, up to the bar line
    # from four bars before the moment it was asked (the bar line is within a bar of it)
    assert len(window) <= len(warm) and history[-len(warm)][1] >= bar - 5 * BAR
    assert {origin for origin, tick, tok in history if tick >= bar - 4 * BAR} >= {"keyboard", "model"}


def test_no_note_is_left_sounding_across_many_switches():
    for seed in range(12):
        a, b = BigramModel(seed=seed), BigramModel(seed=100 + seed)
        events = []
        t = 0.7
        for k in range(8):  # (a bar is 2 s: each switch is done before the next is asked for)
            events.append((t, mido.Message("program_change", program=(k + 1) % 2)))
            t += 2.1 + 0.37 * ((seed + k) % 5)
        sch, sink = rig(a, mode="duet", events=events, bank=_bank(a, b), patch=0)
        sch.begin()
        sch.run(until=sch.clock.now() + t + 2.0)
        sch.end()
        times = [when for when, _ in sink.sent]
        assert times == sorted(times)  # in time order
        sounding = _left_sounding(sink)
        assert not any(sounding.values()), (seed, sounding)
        assert sch.background.switches == 8, seed


def test_a_switch_asked_during_an_answer_waits_for_its_end():
    a, b = ScriptModel(LOW), Hearing(HIGH)
    phrase = [(0.2, on(67)), (0.4, off(67)), (0.5, on(69)), (0.7, off(69))]
    sch, sink, switches = _play(a, b, mode="call-response", switch_at=2.0, events=phrase, seconds=5.0)
    end = round(3.2 / SPT)  # the answer: one bar from the end of the gap (0.7 s + one beat)
    assert len(switches) == 1 and end <= switches[0][1] <= end + 3
    notes = [m.note for tick, m in _ticks(sch, sink) if m.type == "note_on" and m.velocity]
    assert notes and set(notes) == {60}  # the answer is the old patch's, whole


def test_a_switch_while_listening_takes_over_at_once_and_answers_the_next_phrase():
    a, b = ScriptModel(LOW), Hearing(HIGH)
    phrase = [(0.2, on(67)), (0.4, off(67)), (0.5, on(69)), (0.7, off(69))]
    later = [(4.5, on(64)), (4.7, off(64))]
    # the answer (one bar from 1.2 s) is over at 3.2 s: at 3.5 s nothing plays, so no bar line to wait for
    sch, sink, switches = _play(a, b, mode="call-response", switch_at=3.5, events=phrase + later, seconds=8.0)
    assert len(switches) == 1 and switches[0][1] <= round(3.5 / SPT) + 2
    answer = [m.note for tick, m in _ticks(sch, sink) if m.type == "note_on" and m.velocity and tick > 4.7 / SPT]
    assert answer and set(answer) == {84}


def test_program_change_to_an_empty_slot_is_ignored_with_one_line(caplog):
    a, b = ScriptModel(LOW), Hearing(HIGH)
    with caplog.at_level(logging.INFO, logger="cadenza.player.patches"):
        sch, sink, switches = _play(a, b, program=9)
    assert switches == [] and sch.engine.model is a
    lines = [r.getMessage() for r in caplog.records if "no patch there" in r.getMessage()]
    assert lines == ["program change 9: no patch there, ignored (patches: 0 m0, 1 m1)"]


def test_patch_knob_spreads_the_bank_over_its_travel():
    bank = Bank([Slot(p, str(p), str(p), ScriptModel(LOW)) for p in (3, 7, 40)])
    picks = [bank.for_knob(v) for v in range(128)]
    assert picks[0] == 3 and picks[127] == 40 and picks == sorted(picks)
    assert {picks.count(p) for p in (3, 7, 40)} <= {42, 43}
    assert Bank([]).for_knob(64) is None


def test_patch_knob_switches_through_the_router():
    a, b = ScriptModel(LOW), Hearing(HIGH)
    knob = [(1.3, mido.Message("control_change", control=28, value=120))]
    switches = []
    sch, sink = rig(a, events=knob, bank=_bank(a, b), patch=0, on_patch=lambda s, t: switches.append(s.program))
    sch.begin()
    sch.run(until=sch.clock.now() + 4.0)
    sch.end()
    assert switches == [1]


# -- the bank's bundles, the config ---------------------------------------------------


def test_bank_opens_every_bundle_and_names_a_broken_one(tmp_path):
    good = str(converted().bundle)
    bad = tmp_path / "broken.cadenza"
    bad.write_bytes(b"not a bundle")
    bank = Bank.open([Patch(0, good), Patch(5, good, 40)], open_model)
    assert bank.programs == [0, 5] and bank.get(0).model is bank.get(5).model  # one file, opened once
    assert bank.get(5).synth_program == 40 and bank.find(good).program == 0
    with pytest.raises(BundleError, match=r"^patch 2 \(.*broken\.cadenza\): "):
        Bank.open([Patch(0, good), Patch(2, str(bad))], open_model)
    with pytest.raises(BundleError, match=r"^patch 3 \(.*missing\.cadenza\): "):
        Bank.open([Patch(3, str(tmp_path / "missing.cadenza"))], open_model)


def test_default_bank_is_the_shipped_bundles_found(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bach.cadenza").write_bytes(b"x")
    (tmp_path / "b" / "folk.cadenza").write_bytes(b"x")
    (tmp_path / "a" / "folk.cadenza").write_bytes(b"x")
    found = default_patches([tmp_path / "a", tmp_path / "b"])
    assert found == [Patch(0, str(tmp_path / "b" / "bach.cadenza")), Patch(1, str(tmp_path / "a" / "folk.cadenza"))]


def test_patches_table_in_the_config(tmp_path):
    p = tmp_path / "config.toml"
    p.write_text('[patches]\n0 = "bach.cadenza"\n12 = { model = "/m/folk.cadenza", program = 73 }\n')
    s = load_config(p)
    assert s.patches == (Patch(0, str(tmp_path / "bach.cadenza")), Patch(12, "/m/folk.cadenza", 73))
    p.write_text("[patches]\n")
    assert load_config(p).patches == ()
    p.write_text("[play]\ntempo = 90\n")
    assert load_config(p).patches is None  # no table: the shipped bundles


@pytest.mark.parametrize(
    "text, message",
    [
        ('[patches]\nx = "a.cadenza"\n', "patches.x: a patch is named by its Program Change number, 0..127; got 'x'"),
        ('[patches]\n128 = "a.cadenza"\n', "patches.128: a patch is named by its Program Change number"),
        ("[patches]\n1 = 5\n", 'patches.1 must be a bundle path or { model = "...", program = N }, got 5'),
        ('[patches]\n1 = { model = "a", sound = 3 }\n', "unknown key 'patches.1.sound'; a patch has: model, program"),
        ('[patches]\n1 = { model = "a", program = 128 }\n', "patches.1.program must be an integer in -1..127"),
        ("[patches]\n1 = { program = 3 }\n", "patches.1.model must be the path of a model bundle, got None"),
        ('[patches]\n1 = ""\n', "patches.1: the model path is empty"),
        ('patches = "a"\n', "[patches] must be a table of Program Change numbers, got 'a'"),
    ],
)
def test_bad_patches_are_one_line_errors(tmp_path, text, message):
    p = tmp_path / "config.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_storm_of_program_changes_leaves_the_music_going_and_nothing_hanging():
    a, b, c = BigramModel(seed=1), BigramModel(seed=2), BigramModel(seed=3)
    storm = [(0.5 + i * 0.01, mido.Message("program_change", program=i % 4)) for i in range(400)]  # 3 is empty
    sch, sink = rig(a, mode="duet", events=storm, bank=_bank(a, b, c), patch=0)
    sch.begin()
    sch.run(until=sch.clock.now() + 10.0)
    sch.end()
    ons = [t for t, m in sink.sent if m.type == "note_on" and m.velocity]
    assert ons and max(ons) > sch.clock.now() - 2.0  # still playing after the storm
    sounding: dict[int, int] = {}
    for _, m in sink.sent:
        if m.type == "note_on" and m.velocity:
            sounding[m.note] = sounding.get(m.note, 0) + 1
        elif m.type in ("note_off", "note_on"):
            sounding[m.note] = 0
    assert not any(sounding.values())
    assert sch.background.current == 2 and not sch.background.busy  # the last patch asked for (3 is empty)


def test_the_old_patch_notes_end_on_the_bar_line():
    held = [ev.note_on(48), ev.note_on(55), *[ev.shift(48)] * 4, ev.note_off(48), ev.note_off(55)]
    a, b = ScriptModel(held), Hearing(HIGH)  # the old patch holds a fifth for two bars at a time
    sch, sink, switches = _play(a, b, switch_at=1.3)
    bar = switches[0][1]
    ticks = _ticks(sch, sink)
    for note in (48, 55):
        ons = [t for t, m in ticks if m.type == "note_on" and m.velocity and m.note == note]
        offs = [t for t, m in ticks if m.note == note and (m.type == "note_off" or not m.velocity)]
        assert ons and max(ons) < bar and offs and min(o for o in offs if o > max(ons)) == bar
    # the new patch heard them end: its stream has their note-offs at the bar, before its first note
    (_, _, history, heard) = switches[0]
    assert heard[-2:] == [ev.note_off(48), ev.note_off(55)]


def _stranger(seed):
    """A stranger's keyboard for a minute of call-response: phrases with keys left down, note-offs with no
    note-on, zero-length notes, chords, a sustain pedal (reversed in odd seeds) and Program Changes anywhere."""
    import numpy as np

    rng = np.random.default_rng(seed)
    reversed_pedal = seed % 2 == 1
    up, down = (127, 0) if reversed_pedal else (0, 127)
    out = [(0.05, cc(64, up))]
    t = 0.3
    programs = []
    while t < 40.0:
        for _ in range(int(rng.integers(2, 9))):  # a phrase
            notes = [int(n) for n in rng.integers(48, 84, size=int(rng.integers(1, 4)))]  # a note or a chord
            length = float(rng.choice([0.0, 0.1, 0.25, 0.5, 1.0]))
            for n in notes:
                if length == 0.0:
                    out += [(t, off(n)), (t, on(n))]  # zero length, the note-off first
                else:
                    out.append((t, on(n)))
                    if rng.random() > 0.15:  # some keys are left down (a lost note-off)
                        out.append((t + length, off(n)))
            if rng.random() < 0.1:
                out.append((t + 0.05, off(int(rng.integers(48, 84)))))  # a note-off with no note-on
            if rng.random() < 0.2:
                out.append((t, cc(64, down)))
                if rng.random() < 0.6:
                    out.append((t + length + 0.3, cc(64, up)))
            t += max(length, 0.2) + float(rng.choice([0.0, 0.1, 0.3]))
        if rng.random() < 0.7:
            p = int(rng.integers(0, 2))
            programs.append(p)
            out.append((t + float(rng.uniform(0.0, 6.0)), mido.Message("program_change", program=p)))
        t += float(rng.uniform(2.0, 9.0))
    return sorted(out, key=lambda e: e[0]), programs


@pytest.mark.parametrize("seed", range(10))
def test_switches_amid_held_keys_reversed_pedals_and_stray_note_offs_leave_nothing_hanging(seed):
    a, b = BigramModel(seed=seed), BigramModel(seed=50 + seed)
    events, programs = _stranger(seed)
    switches = []
    sch, sink = rig(
        a,
        mode="call-response",
        events=events,
        bank=_bank(a, b),
        patch=0,
        on_patch=lambda slot, tick: switches.append((slot.program, tick)),
    )
    sch.begin()
    sch.run(until=sch.clock.now() + 75.0)  # the last event by 55 s, then time for its answer
    sch.end()
    sounding: dict[int, int] = {}
    last = -1.0
    answered = 0
    for when, m in sink.sent:
        assert when >= last  # in time order
        last = when
        if m.type == "note_on" and m.velocity:
            sounding[m.note] = sounding.get(m.note, 0) + 1
            answered += 1
        elif m.type in ("note_off", "note_on"):
            sounding[m.note] = max(0, sounding.get(m.note, 0) - 1)
    assert not any(sounding.values()), (seed, sounding)
    assert answered, seed  # it answered the phrases: the held keys and the pedal did not silence it
    wanted = [p for i, p in enumerate(programs) if p != ([0] + programs)[i]]  # each change of patch asked for
    if programs:
        assert sch.background.current == programs[-1] and not sch.background.busy, (seed, switches)
    assert len(switches) <= len(wanted)  # a request for the patch already playing is no switch
    assert all(p != q for (p, _), (q, _) in zip([(0, 0), *switches], switches))


def test_real_models_of_different_sizes_switch_on_bar_lines_and_leave_nothing_hanging(tmp_path):
    """Patches need not share a shape: a plain 32-unit model and a 48-unit key input model, both converted."""
    from cadenza.convert.__main__ import main as convert
    from support.models import tiny_run

    run_dir = tiny_run(tmp_path, sizes=dict(embed_dim=16, hidden=48, key_input=True), name="wide")
    wide = tmp_path / "wide.cadenza"
    rc = convert(
        [str(run_dir), "--out", str(wide), "--variant", "fp32", "--latency-steps", "50", "--agreement-steps", "50",
         "--keras-steps", "5", "--calibration-samples", "50", "--max-test-tokens", "800"]
    )  # fmt: skip
    assert rc == 0
    bank = Bank.open([Patch(0, str(converted().bundle)), Patch(1, str(wide))], open_model)
    a, b = bank.get(0).model, bank.get(1).model
    events, t = [], 0.7
    for k in range(6):
        events.append((t, mido.Message("program_change", program=(k + 1) % 2)))
        t += 2.3
    switches: list[tuple[int, int]] = []
    sch, sink = rig(
        a, mode="duet", events=events, bank=bank, patch=0, on_patch=lambda s, tick: switches.append((s.program, tick))
    )
    sch.begin()
    sch.run(until=sch.clock.now() + t + 2.0)
    sch.end()
    assert sch.background.switches == 6 and [p for p, _ in switches] == [1, 0, 1, 0, 1, 0]
    sounding = _left_sounding(sink)
    assert not any(sounding.values()), sounding
    onsets = [tick for tick, m in _ticks(sch, sink) if m.type == "note_on" and m.velocity]
    for (_, start), (_, end) in zip(switches, switches[1:]):  # each patch played in its turn
        assert any(start <= tick < end for tick in onsets), (start, end)
    assert b is not a
