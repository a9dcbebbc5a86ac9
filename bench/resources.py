"""Resident memory, CPU and start-to-READY of `cadenza-play` as a process.

    python bench/resources.py [--model FILE] [--tempo 100] [--seconds 30]

Starts `python -m player` (solo, virtual JACK output, no input) on a private JACK
server with a NOTIFY_SOCKET of our own; start-to-READY is from spawning the
process to the READY=1 datagram. Then, over --seconds: VmRSS / VmHWM from
/proc/PID/status, CPU from /proc/PID/stat (user+system time / wall time), and the
note rate seen by bench/receiver.py in another process.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for bench and support

from bench import jackrig  # noqa: E402
from bench.timing import default_model  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def mem_kb(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")):
            k, v = line.split(":")
            out[k] = int(v.split()[0])
    # PSS: each shared page counted once across the processes that map it (JACK's segments are
    # mapped by jackd and every client; libraries by every Python process).
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Pss:", "Pss_Anon:", "Pss_File:", "Pss_Shmem:")):
            k, v = line.split(":")
            out[k] = int(v.split()[0])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--tempo", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--period", type=int, default=16, help="JACK period in frames")
    ap.add_argument(
        "--port-max",
        type=int,
        default=None,
        help="jackd --port-max (its shared memory, mapped by every client, grows with it)",
    )
    args = ap.parse_args(argv)
    if args.model is None:
        default_model()  # makes the tiny test bundle once
    model = args.model or "/tmp/cadenza-bench-tiny.cadenza"
    sock_path = str(jackrig.OUT / f"notify-{os.getpid()}")
    with jackrig.jack(args.period, port_max=args.port_max):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        sock.bind(sock_path)
        sock.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cadenza.player",
                "--backend",
                "jack",
                "--output",
                "virtual",
                "--input",
                "none",
                "--mode",
                "solo",
                "--model",
                model,
                "--tempo",
                str(args.tempo),
                "--seed",
                "1",
            ],
            cwd=jackrig.REPO,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        ready = None
        while ready is None:
            if b"READY=1" in sock.recv(4096):
                ready = time.monotonic() - t0
        with jackrig.receiver("cadenza:out", args.seconds, "resources") as recv_path:
            c0, w0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.seconds)
            c1, w1 = cpu_seconds(proc.pid), time.monotonic()
            mem = mem_kb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        sock.close()
        os.unlink(sock_path)
        received = jackrig.read_received(recv_path)
    ons = sum(1 for _, d in received if (d[0] & 0xF0) == 0x90 and d[2] > 0)
    result = {
        "name": "resources",
        "model": model,
        "tempo": args.tempo,
        "seconds": args.seconds,
        "start_to_ready_s": round(ready, 3),
        "rss_mb": round(mem.get("VmRSS", 0) / 1024, 1),
        "peak_rss_mb": round(mem.get("VmHWM", 0) / 1024, 1),
        "rss_anon_mb": round(mem.get("RssAnon", 0) / 1024, 1),
        "rss_file_mb": round(mem.get("RssFile", 0) / 1024, 1),
        "rss_shmem_mb": round(mem.get("RssShmem", 0) / 1024, 1),
        "jack_period": args.period,
        "jack_port_max": args.port_max,
        "pss_mb": round(mem.get("Pss", 0) / 1024, 1),
        "pss_shmem_mb": round(mem.get("Pss_Shmem", 0) / 1024, 1),
        "cpu_percent_of_a_core": round(100 * (c1 - c0) / (w1 - w0), 2),
        "notes_per_s": round(ons / args.seconds, 2),
        "exit_code": proc.returncode,
    }
    jackrig.save(f"resources-p{args.period}" + (f"-ports{args.port_max}" if args.port_max else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
