"""A flood of input writes a line a second, not a line a message, and says how many it left out."""

from __future__ import annotations

import logging

from cadenza.player.logutil import Throttle
from support.fakes import ScriptModel
from support.rig import MELODY, cc, rig


def test_throttle_counts_what_it_leaves_out():
    now = [0.0]
    logger = logging.getLogger("throttle-test")
    records = []
    logger.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r.getMessage())})())
    logger.setLevel(logging.INFO)
    q = Throttle(logger, 1.0, clock=lambda: now[0])
    for i in range(100):
        now[0] = i * 0.01  # 100 in one second
        q.info("panic", "panic: all notes off")
    q.info("mode", "mode %s -> %s", "solo", "duet")  # another kind is not held back
    now[0] = 1.5
    q.info("panic", "panic: all notes off")
    assert records == [
        "panic: all notes off",
        "mode solo -> duet",
        "panic: all notes off (and 99 more like it left out)",
    ]


def test_a_cc_storm_of_panics_and_mode_changes_writes_few_lines(caplog):
    from cadenza.player import controls, steering

    controls.QUIET.reset()
    steering.QUIET.reset()
    caplog.set_level(logging.INFO)
    storm = []
    for i in range(400):  # 400 CC messages in 2 simulated seconds: panic presses and a mode knob swept
        storm.append((i * 0.005, cc(25, 127)))
        storm.append((i * 0.005 + 0.001, cc(23, (i % 3) * 60)))
    sch, sink = rig(ScriptModel(MELODY), mode="solo", events=storm)
    sch.begin()
    sch.run(until=10.0 + 2.5)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    panics = [ln for ln in lines if ln.startswith("panic")]
    modes = [ln for ln in lines if ln.startswith("mode ")]
    # the storm takes well under a real second on the simulated clock: one line of each kind
    assert len(panics) == 1 and len(modes) == 1, lines
    assert (
        sch.conductor.mode == "call-response" and not sch.engine.sounding
    )  # the storm's last word: panic, then mode 0
