"""Key conditioning: KEY tokens placed the same way in training and in the player, never played, never scored."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.player import conditioning as cond
from cadenza.player import events as ev
from cadenza.player import keys
from cadenza.player.engine import Engine
from cadenza.player.sampling import Sampler
from support.fakes import BigramModel, ScriptModel
from support.rig import SPT, off, on, rig


@st.composite
def pieces(draw):
    """A token piece: random notes (chords, rests, long notes) in a random key's scale or chromatic."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    tonic, minor = int(rng.integers(12)), bool(rng.integers(2))
    scale = [(tonic + d) % 12 for d in ((0, 2, 3, 5, 7, 8, 10) if minor else (0, 2, 4, 5, 7, 9, 11))]
    notes, t = [], 0
    for _ in range(int(rng.integers(1, 60))):
        dur = int(rng.choice([0, 3, 6, 12, 24, 48, 100]))
        for _ in range(int(rng.integers(1, 4))):
            octave = int(rng.integers(3, 7))
            pc = int(rng.choice(scale)) if rng.random() < 0.9 else int(rng.integers(12))
            notes.append(ev.Note(t, 12 * octave + pc, t + max(dur, 1)))
        t += dur + int(rng.choice([0, 0, 12, 200]))
    return ev.encode_notes(notes)


def shift_positions(tokens):
    """(index, tick before, tick after) of every SHIFT."""
    out, tick = [], 0
    for i, tok in enumerate(tokens.tolist()):
        if ev.is_shift(tok):
            out.append((i, tick, tick + ev.shift_ticks(tok)))
            tick += ev.shift_ticks(tok)
    return out


@settings(max_examples=150, deadline=None)
@given(pieces(), st.integers(0, 1000))
def test_key_tokens_follow_the_crossing_shifts_and_name_the_key_around_them(tokens, seed):
    out = cond.insert(tokens, np.random.default_rng(seed), dropout=0.0)
    assert np.array_equal(cond.strip(out), tokens)  # the music untouched
    phase = int(np.random.default_rng(seed).integers(cond.EVERY_TICKS))  # the first draw of insert's rng
    notes = ev.decode_notes(tokens)
    music = cond.strip(out)
    expected = []
    for _i, before, after in shift_positions(music):
        if cond.crosses(before, after, cond.EVERY_TICKS, phase):
            near = [n for n in notes if after - cond.BACK_TICKS <= n.start < after + cond.AHEAD_TICKS]
            key = keys.estimate(near) if len(near) >= cond.MIN_NOTES else keys.estimate(notes)
            if key is not None:
                expected.append((after, key))
    got, tick = [], 0
    for k, tok in enumerate(out.tolist()):
        if ev.is_shift(tok):
            tick += ev.shift_ticks(tok)
        if ev.is_key(tok):
            assert k > 0 and ev.is_shift(int(out[k - 1])), "a KEY token comes right after a SHIFT"
            got.append((tick, cond.key_of(tok)))
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(pieces(), st.integers(-6, 6))
def test_transposing_moves_the_key_tokens_with_the_notes(tokens, semitones):
    out = cond.insert(tokens, np.random.default_rng(0), dropout=0.0)
    moved = ev.transpose(out, semitones)
    assert np.array_equal(cond.strip(moved), ev.transpose(tokens, semitones))
    before = [cond.key_of(t) for t in out.tolist() if ev.is_key(t)]
    after = [cond.key_of(t) for t in moved.tolist() if ev.is_key(t)]
    assert after == [((tonic + semitones) % 12, mode) for tonic, mode in before]


def test_dropout_leaves_out_about_its_share():
    rng = np.random.default_rng(1)
    notes = [ev.Note(12 * i, 60 + (i % 5), 12 * i + 12) for i in range(2000)]
    tokens = ev.encode_notes(notes)
    full = ev.is_key(cond.insert(tokens, np.random.default_rng(1), dropout=0.0)).sum()
    kept = ev.is_key(cond.insert(tokens, rng, dropout=0.15)).sum()
    assert 0.80 < kept / full < 0.90


def test_key_token_round_trip_and_layout():
    for tonic in range(12):
        for mode in ("major", "minor"):
            assert cond.key_of(cond.key_token((tonic, mode))) == (tonic, mode)
    with pytest.raises(ValueError):
        cond.key_of(ev.VOCAB_SIZE - 1)
    ev.check_layout(ev.layout())
    ev.check_layout(ev.layout(conditioned=True))
    assert ev.layout(conditioned=True)["size"] == ev.VOCAB_SIZE + cond.N_KEYS
    bad = dict(ev.layout(conditioned=True), size=ev.VOCAB_SIZE)
    with pytest.raises(ValueError, match="size"):
        ev.check_layout(bad)


class KeyScript(ScriptModel):
    """The script model with a conditioned vocabulary, which would rather play a KEY token than anything."""

    vocab_size = ev.VOCAB_SIZE + ev.N_KEYS

    def _logits(self):
        z = super()._logits()
        z[ev.KEY_BASE :] = 50.0
        return z


SCRIPT = [ev.note_on(60), ev.shift(12), ev.note_off(60), ev.note_on(64), ev.shift(36), ev.note_off(64)]


def fed_keys(engine: Engine) -> list[tuple[int, int, int]]:
    """(index in the history, tick, token) of each KEY token the engine fed."""
    return [(i, tick, tok) for i, (origin, tick, tok) in enumerate(engine.history) if origin == "key"]


def test_the_engine_feeds_the_key_after_each_crossing_and_never_plays_one():
    sch, sink = rig(KeyScript(SCRIPT), mode="solo")
    sch.conductor.set_key("D minor", 0.0)
    sch.begin()
    sch.run(until=30.0)
    eng = sch.engine
    fed = fed_keys(eng)
    assert len(fed) >= 8  # 20 s at 120 BPM: 40 beats, a KEY every 4
    assert {tok for _i, _t, tok in fed} == {cond.key_token((2, "minor"))}
    for i, tick, _tok in fed:
        origin, before, tok = eng.history[i - 1]
        if ev.is_shift(tok):
            assert cond.crosses(before, tick), (before, tick)
    assert not any(ev.is_key(tok) for origin, _t, tok in eng.history if origin != "key")
    notes = [m for _t, m in sink.sent if m.type == "note_on"]
    assert notes, "the script still plays"


def test_a_new_key_is_fed_at_once_and_an_unconditioned_model_is_never_told():
    sch, _sink = rig(KeyScript(SCRIPT), mode="solo")
    sch.begin()
    sch.run(until=12.0)
    # no key set: the model is told the key of the recent notes (the script's C and E, E the longer)
    script_key = keys.estimate([ev.Note(0, 60, 12), ev.Note(12, 64, 48)])
    assert {tok for _i, _t, tok in fed_keys(sch.engine)} == {cond.key_token(script_key)}
    n = len(sch.engine.history)
    sch.conductor.set_key("A major", 0.0)
    assert sch.engine.history[n][0] == "key" and sch.engine.history[n][2] == cond.key_token((9, "major"))

    plain, _ = rig(BigramModel(3), mode="solo")
    plain.conductor.set_key("A major", 0.0)
    plain.begin()
    plain.run(until=20.0)
    assert fed_keys(plain.engine) == [] and plain.engine.condition is None


def test_engine_masks_key_tokens_whatever_the_logits():
    model = KeyScript(SCRIPT)
    eng = Engine(model, Sampler(temperature=1.0, top_p=1.0, seed=3), keep_history=True)
    eng.start(0)
    eng.play(0, until=2000)
    for _ in range(500):
        eng.generate()
    assert not any(ev.is_key(tok) for origin, _t, tok in eng.history if origin != "key")  # only ever told


def test_call_response_tells_the_model_the_phrase_key_before_the_answer():
    """A D-minor phrase: the answer's first tokens come after KEY(D minor), fed when the answer is planned."""
    notes = (62, 65, 69, 62, 64, 65, 61, 62)  # D F A D E F C# D
    events = []
    for i, n in enumerate(notes):
        events += [(24 * i * SPT, on(n)), ((24 * i + 20) * SPT, off(n))]
    sch, sink = rig(KeyScript(SCRIPT), mode="call-response", events=events, phrase_gap=1.0, answer_bars=1)
    sch.conductor.set_key("auto", 0.0)
    sch.begin()
    sch.run(until=10.0 + 30 * 24 * SPT)
    hist = sch.engine.history
    first_model = next(i for i, (origin, _t, _tok) in enumerate(hist) if origin == "model")
    told = [tok for origin, _t, tok in hist[:first_model] if origin == "key"]
    assert told and told[-1] == cond.key_token((2, "minor"))
    assert any(m.type == "note_on" for _t, m in sink.sent)


def test_training_settings_size_the_vocabulary_and_scoring_skips_key_targets():
    from cadenza.train import batches
    from cadenza.train.config import make_config

    assert make_config("tiny", key_tokens=True).vocab_size == ev.VOCAB_SIZE + ev.N_KEYS
    assert make_config("tiny").vocab_size == ev.VOCAB_SIZE
    with pytest.raises(ValueError, match="vocab_size"):
        make_config("tiny", key_tokens=True, vocab_size=ev.VOCAB_SIZE)
    notes = [ev.Note(12 * i, 60 + (i % 7), 12 * i + 12) for i in range(100)]
    plain = ev.encode_notes(notes)
    keyed = cond.insert(plain, np.random.default_rng(0), dropout=0.0)
    assert ev.is_key(keyed).sum() > 5
    _arr, mask_plain = batches.padded([plain])
    _arr, mask_keyed = batches.padded([keyed])
    assert mask_plain.sum() == mask_keyed.sum()  # the same music targets are scored


@pytest.mark.slow
def test_a_conditioned_run_converts_and_plays(tmp_path):
    """A tiny key-conditioned run: the bundle declares its KEY tokens, the converter scores the music only,
    and the player tells it the phrase's key and never plays a KEY token."""
    import json
    import zipfile

    from cadenza.convert.__main__ import main as convert
    from support.daemon import run_player
    from support.models import TINY, tiny_run

    run_dir = tiny_run(tmp_path, sizes=dict(TINY, key_tokens=True), name="tinykey")
    out = tmp_path / "key.cadenza"
    rc = convert(
        [str(run_dir), "--out", str(out), "--variant", "dynamic", "--latency-steps", "200", "--agreement-steps",
         "200", "--keras-steps", "20", "--calibration-samples", "100", "--max-test-tokens", "2000"]
    )  # fmt: skip
    assert rc == 0
    meta = json.loads(zipfile.ZipFile(out).read("model.json"))
    assert meta["vocab"]["size"] == ev.VOCAB_SIZE + ev.N_KEYS and meta["vocab"]["key"] == [ev.KEY_BASE, ev.N_KEYS]
    assert meta["conditioning"]["kind"] == "key_tokens" and meta["conditioning"]["every_ticks"] == cond.EVERY_TICKS
    music = sum(int(t) < ev.VOCAB_SIZE for p in _test_pieces(run_dir) for t in p[1:])
    assert meta["metrics"]["interpreter_test_tokens"] == min(music, 2000)
    mid = tmp_path / "answer.mid"
    r = run_player("--render", mid, "--model", out, "--seed-file", _phrase(tmp_path), "--beats", 8, "--seed", 2)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    assert mid.exists()


def _test_pieces(run_dir):
    from cadenza.train.config import TrainConfig
    from cadenza.train.corpus import splits_for

    cfg = TrainConfig.load(run_dir / "config.json")
    return [p.tokens for p in splits_for(cfg)[2]]


def _phrase(tmp_path):
    notes = [ev.Note(24 * i, n, 24 * i + 20) for i, n in enumerate((62, 65, 69, 62, 64, 65, 61, 62))]
    path = tmp_path / "phrase.mid"
    ev.tokens_to_midi(ev.encode_notes(notes), tempo_bpm=120).save(path)
    return path


@pytest.mark.parametrize("seed", range(20))
def test_a_shifted_continuation_moves_the_notes_from_a_bar_on_and_only_those(seed):
    """A line of quarter notes over 12 bars (no two notes overlap, so none can collide when moved)."""
    rng = np.random.default_rng(100 + seed)
    line = [ev.Note(24 * i, int(rng.integers(48, 84)), 24 * i + 20) for i in range(48)]
    after = ev.decode_notes(cond.shift_continuation(ev.encode_notes(line), np.random.default_rng(seed)))
    assert [(n.start, n.end) for n in after] == [(n.start, n.end) for n in line]  # the same rhythm
    intervals = [(a.pitch - b.pitch) % 12 for a, b in zip(after, line)]
    cut = next(n.start for n, k in zip(line, intervals) if k)
    assert cut % cond.EVERY_TICKS == 0 and cut >= 2 * cond.EVERY_TICKS  # from a bar line, two bars in at least
    assert all(k == 0 for n, k in zip(line, intervals) if n.start < cut)
    assert len({k for n, k in zip(line, intervals) if n.start >= cut}) == 1  # one interval for all that follow


def test_key_shift_applies_to_training_pieces_only():
    from cadenza.train.config import make_config

    with pytest.raises(ValueError, match="key_shift"):
        make_config("tiny", key_shift=0.5)
    assert make_config("tiny", key_tokens=True, key_shift=0.5).key_shift == 0.5


@pytest.mark.parametrize("seed", range(20))
def test_shifted_segments_move_the_notes_at_bar_lines_each_by_its_own_interval(seed):
    rng = np.random.default_rng(200 + seed)
    line = [ev.Note(24 * i, int(rng.integers(48, 84)), 24 * i + 20) for i in range(96)]  # 24 bars of quarters
    after = ev.decode_notes(cond.shift_segments(ev.encode_notes(line), np.random.default_rng(seed), mean_bars=3))
    assert [(n.start, n.end) for n in after] == [(n.start, n.end) for n in line]
    intervals = [(a.pitch - b.pitch) % 12 for a, b in zip(after, line)]
    changes = [n.start for n, k, j in zip(line[1:], intervals[1:], intervals) if k != j]
    assert changes  # (at one cut in 3 bars, 22 bar lines: none at all has probability 0.0001)
    assert all(c % cond.EVERY_TICKS == 0 and c >= 2 * cond.EVERY_TICKS for c in changes)  # only on bar lines
    assert all(k == 0 for n, k in zip(line, intervals) if n.start < 2 * cond.EVERY_TICKS)
    bars = {n.start // cond.EVERY_TICKS: k for n, k in zip(line, intervals)}
    assert all(k == bars[n.start // cond.EVERY_TICKS] for n, k in zip(line, intervals))  # one interval per bar


def test_fresh_key_shifts_are_drawn_every_epoch_and_keep_the_key_tokens_true():
    from cadenza.train.config import make_config
    from cadenza.train.corpus import reshifted

    with pytest.raises(ValueError, match="key_shift_bars"):
        make_config("tiny", key_tokens=True, key_shift_bars=4)
    rng = np.random.default_rng(3)
    line = [ev.Note(24 * i, 60 + (0, 2, 4, 5, 7, 9, 11)[i % 7], 24 * i + 20) for i in range(64)]  # C major
    piece = cond.insert(ev.encode_notes(line), np.random.default_rng(0))
    drawn = [reshifted(piece, 1.0, 3.0, rng) for _ in range(5)]
    assert len({tuple(d.tolist()) for d in drawn}) == 5  # anew each time
    for d in drawn:
        music = cond.strip(d)
        assert [n.start for n in ev.decode_notes(music)] == [n.start for n in line]
        assert cond.strip(cond.insert(music, np.random.default_rng(1))).tolist() == music.tolist()
        named = [cond.key_of(t) for t in d.tolist() if ev.is_key(np.asarray([t]))[0]]
        assert named and len(set(named)) > 1  # the KEY tokens follow the moves
