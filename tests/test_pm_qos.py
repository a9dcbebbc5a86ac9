"""Holding the CPUs' wake-up latency (PM QoS) while playing: the request, and a refusal in one line."""

from __future__ import annotations

import logging
import os
import struct

from cadenza.player.daemon import hold_wakeup_latency


def test_the_request_is_written_as_the_kernel_reads_it_and_held_open(tmp_path):
    dev = tmp_path / "cpu_dma_latency"  # stands in for the device: the kernel reads one native int32
    dev.write_bytes(b"")
    fd = hold_wakeup_latency(20, str(dev))
    try:
        assert fd is not None and os.fstat(fd).st_ino == dev.stat().st_ino  # open for as long as we play
        assert struct.unpack("=i", dev.read_bytes()) == (20,)
    finally:
        os.close(fd)


def test_no_permission_or_no_device_is_one_line_and_no_request(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert hold_wakeup_latency(0, str(tmp_path / "missing")) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("cannot hold CPU wake-up latency at 0 µs")
    assert "No such file or directory" in lines[0]
