"""Exit code 2 means "a setting is wrong", nothing else: a fault while playing exits 1, so systemd restarts.

The unit restarts on failure except for exit 2 (RestartPreventExitStatus=2). Start-up errors (config,
bundle, a port at start, a file named on the command line) exit 2 with one line; those are also
checked in test_cli.py. A ValueError or OSError raised inside the play loop (injected here into the
engine of the real process) is logged, the synth silenced, and the exit code is 1.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

from cadenza.player.daemon import EXIT_FAULT

REPO = Path(__file__).resolve().parent.parent

# cadenza-play's main, with the engine failing after `at` seconds of generating, once a note of its own
# sounds (or at 3 * `at` in any case): a fault inside the play loop, with a note to silence.
FAULTY = """
import sys, time
from cadenza.player import engine
real, first = engine.Engine.generate, []
def generate(self):
    first.append(time.monotonic()) if not first else None
    late = time.monotonic() - first[0]
    if (late >= float(sys.argv[2]) and self.sounding) or late >= 3 * float(sys.argv[2]):
        raise {"ValueError": ValueError, "OSError": OSError}[sys.argv[1]]("injected fault")
    return real(self)
engine.Engine.generate = generate
from cadenza.player.__main__ import main
sys.exit(main(sys.argv[3:]))
"""


def faulty(exc: str, at: float, *args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", FAULTY, exc, str(at), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_fault_is_not_exit_2_and_systemd_restarts_it():
    from support.daemon import unit_keys

    keys = unit_keys()
    assert EXIT_FAULT != 2 and keys["Restart"] == ["on-failure"]
    assert str(EXIT_FAULT) not in " ".join(keys["RestartPreventExitStatus"]).split()


def test_start_up_errors_exit_2(tmp_path):
    """A file named on the command line that cannot be written is the user's to fix: 2, one line."""
    from support.daemon import one_line_exit_2, run_player

    phrase = tmp_path / "p.mid"
    mido.MidiFile().save(phrase)  # a readable file with no notes
    assert "no notes" in one_line_exit_2(run_player("--render", tmp_path / "o.mid", "--seed-file", phrase))
    assert "o.mid" in one_line_exit_2(run_player("--render", tmp_path / "no-such-dir" / "o.mid", "--beats", "1"))


@pytest.mark.parametrize("exc", ["ValueError", "OSError"])
def test_a_fault_while_rendering_exits_1(bundle, tmp_path, exc):
    r = faulty(exc, 0, "--render", tmp_path / "o.mid", "--model", bundle, "--beats", 8, "--seed", 1)
    assert r.returncode == EXIT_FAULT, r.stderr[-2000:]
    assert f"fault while rendering ({exc}: injected fault)" in r.stderr


@pytest.mark.jack
@pytest.mark.parametrize("exc", ["ValueError", "OSError"])
def test_a_fault_while_playing_silences_logs_and_exits_1(jack_server, bundle, tmp_path, exc):
    from support.daemon import notes, sounding_after
    from support.jack import JackReceiver

    client = f"fault{exc[:2].lower()}"
    with JackReceiver(None, client=client) as rx:
        t0 = time.monotonic()
        r = faulty(
            exc,
            1.0,
            "--backend",
            "jack",
            "--model",
            bundle,
            "--output",
            client,
            "--input",
            "none",
            "--mode",
            "solo",
            "--tempo",
            240,
            "--seed",
            1,
            "--duration",
            60,
        )
        rx.settle()
        msgs = rx.messages()
    assert time.monotonic() - t0 < 40  # it exited on the fault, not at --duration
    assert r.returncode == EXIT_FAULT, r.stderr[-3000:]
    said = [ln for ln in r.stderr.splitlines() if "fault while playing" in ln]
    assert len(said) == 1 and f"({exc}: injected fault)" in said[0], r.stderr[-3000:]
    assert "Traceback" in r.stderr  # the journal gets the whole story
    assert notes(msgs), "it never played"
    last_on = max(i for i, m in enumerate(msgs) if m.type == "note_on" and m.velocity)
    assert any(m.type == "control_change" and m.control == 123 for m in msgs[last_on:])  # all notes off
    assert sounding_after(msgs) == set()
