"""--render: the live engine on a simulated clock, written to a file; reproducible with --seed."""

from __future__ import annotations

from pathlib import Path

import mido

from cadenza.player import events as ev
from cadenza.player.render import render
from support.daemon import run_player
from support.fakes import BigramModel


def phrase_file(path: Path) -> Path:
    notes = [ev.Note(12 * i, p, 12 * i + 12, 80) for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62, 60])]
    ev.tokens_to_midi(ev.encode_notes(notes), tempo_bpm=100).save(path)
    return path


def notes_of(mid: mido.MidiFile) -> list[ev.Note]:
    return ev.decode_notes(ev.encode_midi(mid))


def test_same_seed_same_answer_other_seed_other_answer(tmp_path):
    phrase = mido.MidiFile(phrase_file(tmp_path / "p.mid"))
    a = render(BigramModel(1), beats=16, phrase=phrase, seed=7)
    b = render(BigramModel(1), beats=16, phrase=phrase, seed=7)
    c = render(BigramModel(1), beats=16, phrase=phrase, seed=8)
    key = lambda r: [(tm.tick, str(tm.message)) for tm in r.answer]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)
    assert a.answer_start == 108 + 24  # the last note-off, then phrase_gap (1 beat)


def test_answer_only_or_with_the_phrase(tmp_path):
    phrase = mido.MidiFile(phrase_file(tmp_path / "p.mid"))
    r = render(BigramModel(2), beats=8, phrase=phrase, seed=1, phrase_gap=2.0)
    assert r.answer_start == 108 + 48
    answer = r.messages(include_seed=False)
    assert answer[0].tick == 0 and answer[0].message.type == "note_on"  # no leading silence
    assert max(tm.tick for tm in answer) <= 8 * 24
    both = r.messages(include_seed=True)
    first = both[0]  # the phrase comes first: its first note, on at tick 0, then off
    assert (first.tick, first.message.type, first.message.note) == (0, "note_on", 60)
    assert [(tm.message.type, tm.message.note) for tm in both[:2]] == [("note_on", 60), ("note_off", 60)]
    assert len(both) == len(answer) + 18


def test_cli_render_is_reproducible_and_opens_no_ports(bundle, tmp_path):
    seed = phrase_file(tmp_path / "p.mid")
    outs = []
    for name, s in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.mid"
        r = run_player(
            "--render",
            out,
            "--model",
            bundle,
            "--seed",
            s,
            "--seed-file",
            seed,
            "--beats",
            16,
            "--backend",
            "no.such.backend",
            timeout=120,
        )  # never opened
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    out = tmp_path / "with.mid"
    r = run_player("--render", out, "--model", bundle, "--seed", 3, "--seed-file", seed, "--include-seed", timeout=120)
    assert r.returncode == 0
    both = mido.MidiFile(out)
    notes = notes_of(both)
    assert [n.pitch for n in notes[:9]] == [60, 62, 64, 65, 67, 65, 64, 62, 60]
    assert [t.name for t in both.tracks] == ["phrase", "answer"]  # a DAW shows them apart
    answer_only = mido.MidiFile(tmp_path / "a.mid")
    assert sum(m.type == "note_on" for m in both.tracks[1]) == sum(m.type == "note_on" for m in answer_only.tracks[0])
    solo = tmp_path / "solo.mid"
    assert run_player("--render", solo, "--model", bundle, "--seed", 1, "--beats", 8, timeout=120).returncode == 0
    assert max(n.end for n in notes_of(mido.MidiFile(solo))) <= 8 * 24
