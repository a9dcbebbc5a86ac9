"""The stage scenario, run as root inside the guest by run.sh (system python3, standard library only).

    scenario.py --part 1|2 --share /mnt/share --tree /root/cadenza

Part 1 (first boot): `sudo make install` as the README says, then the service as a Pi runs it:
a synth switched on late, a keyboard's phrase and its answer, a flood, the synth unplugged and
back, reload, stop, crashes, a frozen player, a broken config, PM QoS, the sandbox's exposure,
the journal; then it asks run.sh for a reboot. Part 2: the service back after the reboot, the
README's step-time bench run with the installed environment, and `make uninstall`. Each check
appends one line to SHARE/results.txt:

    PASS name: figure          FAIL name: figure (and why)

The synth and the keyboard are ALSA sequencer clients (midiclient.py, python-rtmidi from the
installed venv). Timing under emulation means nothing here; function does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

VENV_PY = "/opt/cadenza/venv/bin/python"
CONFIG = Path("/etc/cadenza/config.toml")
WORK = Path("/var/lib/stage")
SYNTH, KEYS = "stage-synth", "stage-keys"
# The flood is paced: under emulation the player handles a few hundred messages a second, and an
# unpaced flood (about 500/s from rtmidi here) measures the emulator, not the player (see README).
FLOOD_N, FLOOD_RATE = 3000, 200

STAGE_CONFIG = """\
# Written by the stage scenario: the synth and keyboard are ALSA clients of the stage.
cpu_dma_latency = 0
[midi]
output = "{synth}"
input = "{keys}"
[play]
mode = "{mode}"
tempo = {tempo}
seed = 7
answer_bars = 2
"""

args = None
results_path: Path


def log(text: str) -> None:
    print(f"[{time.monotonic():8.1f}] {text}", flush=True)


def result(ok: bool, name: str, figure: str) -> bool:
    line = f"{'PASS' if ok else 'FAIL'} {name}: {figure}"
    log(line)
    with open(results_path, "a") as f:
        f.write(line + "\n")
    return ok


def sh(cmd: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")
    return r


def prop(name: str, unit: str = "cadenza") -> str:
    return sh(f"systemctl show {unit} -p {name} --value").stdout.strip()


def main_pid() -> int:
    return int(prop("MainPID") or 0)


def restarts() -> int:
    return int(prop("NRestarts") or 0)


def wait_for(pred, timeout: float, every: float = 0.25):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(every)


def wait_active(timeout: float = 120) -> bool:
    return bool(wait_for(lambda: prop("ActiveState") == "active" and main_pid() > 0, timeout))


def write_config(mode: str = "solo", tempo: float = 150.0, extra: str = "") -> None:
    CONFIG.write_text(STAGE_CONFIG.format(synth=SYNTH, keys=KEYS, mode=mode, tempo=tempo) + extra)


# -- the journal ---------------------------------------------------------------------------


def cursor() -> str:
    out = sh("journalctl -u cadenza -n 0 --show-cursor -q").stdout
    m = re.search(r"-- cursor: (\S+)", out)
    if m:
        return m.group(1)
    out = sh("journalctl -n 0 --show-cursor -q").stdout
    m = re.search(r"-- cursor: (\S+)", out)
    return m.group(1) if m else ""


def journal(after: str = "", program_only: bool = False, invocation: str = "") -> list[str]:
    c = f"--after-cursor='{after}'" if after else ""
    out = sh(f"journalctl -u cadenza {c} -o json --no-pager").stdout
    lines = []
    for row in out.splitlines():
        try:
            e = json.loads(row)
        except ValueError:
            continue
        ident = e.get("SYSLOG_IDENTIFIER", "")
        if program_only and ident == "systemd":
            continue
        if invocation and e.get("_SYSTEMD_INVOCATION_ID") != invocation:
            continue
        msg = e.get("MESSAGE", "")
        if isinstance(msg, list):
            msg = bytes(msg).decode("utf-8", "replace")
        lines.append(f"{ident}: {msg}")
    return lines


def journal_has(pattern: str, after: str = "", timeout: float = 0.0) -> str | None:
    def find():
        for line in journal(after):
            if re.search(pattern, line):
                return line
        return None

    return wait_for(find, timeout, 0.5) if timeout else find()


def end_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Wait for a helper client to end; one that has not ended after `grace` seconds is killed
    (what it logged is already on disk, line by line)."""
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        print(f"stage: {proc.args[2:4]} did not end in {grace:.0f} s: killed", flush=True)
        proc.kill()
        proc.wait(10)


# -- the synth's log -------------------------------------------------------------------------


class Synth:
    """A synth as an ALSA client: counts what it receives (midiclient.py synth)."""

    def __init__(self, tree: str) -> None:
        self.tree = tree
        self.log = WORK / "synth.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        self.proc = subprocess.Popen(
            [VENV_PY, f"{self.tree}/tests/stage/guest/midiclient.py", "synth", SYNTH, str(self.log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.proc.stdout.readline()
        return time.time()

    def stop(self) -> float:
        if self.proc is not None:
            self.proc.terminate()
            end_process(self.proc)
            self.proc = None
        return time.time()

    def messages(self, since: float = 0.0, until: float = 1e20) -> list[tuple[float, list[int]]]:
        out = []
        if not self.log.exists():
            return out
        for line in self.log.read_text().splitlines():
            t, *hexes = line.split()
            t = float(t)
            if since <= t < until:
                out.append((t, [int(h, 16) for h in hexes]))
        return out

    def notes(self, since: float = 0.0, until: float = 1e20) -> int:
        return sum(1 for _, m in self.messages(since, until) if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0)

    def sounding(self) -> int:
        """Notes the synth would still be playing, from everything it ever received."""
        on: set[tuple[int, int]] = set()
        for _, m in self.messages():
            if len(m) < 3:
                continue
            kind, ch = m[0] & 0xF0, m[0] & 0x0F
            if kind == 0x90 and m[2] > 0:
                on.add((ch, m[1]))
            elif kind in (0x80, 0x90):
                on.discard((ch, m[1]))
            elif kind == 0xB0 and m[1] in (120, 123):
                on = {(c, n) for c, n in on if c != ch}
        return len(on)

    def first_after(self, since: float) -> list[int] | None:
        msgs = self.messages(since)
        return msgs[0][1] if msgs else None

    def silenced_first(self, since: float) -> tuple[bool, str]:
        """Whether the first messages since `since` are note-offs and CC 123, before any note-on."""
        msgs = self.messages(since)
        if not msgs:
            return False, "nothing received"
        seen_123 = False
        for _, m in msgs:
            if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0:
                break
            if len(m) == 3 and m[0] & 0xF0 == 0xB0 and m[1] == 123:
                seen_123 = True
        first = " ".join(f"{b:02x}" for b in msgs[0][1])
        return seen_123, f"first message {first}, CC 123 before the first note: {'yes' if seen_123 else 'no'}"

    def quiet_since(self, seconds: float) -> bool:
        msgs = self.messages(time.time() - seconds)
        return not any(len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0 for _, m in msgs)


class Keys:
    """A keyboard as an ALSA client (midiclient.py keys), driven line by line."""

    def __init__(self, tree: str) -> None:
        self.proc = subprocess.Popen(
            [VENV_PY, f"{tree}/tests/stage/guest/midiclient.py", "keys", KEYS, tree],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.proc.stdout.readline()

    def cmd(self, line: str) -> list[str]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().split()

    def close(self) -> None:
        try:
            self.cmd("quit")
        except Exception:
            pass
        end_process(self.proc)


def cc(control: int, value: int, channel: int = 0) -> str:
    return f"{0xB0 | channel:02x},{control:02x},{value:02x}"


# -- part 1 ----------------------------------------------------------------------------------


def check(name):
    """A check that raises is a failed check with the exception as its figure; the rest go on."""

    def wrap(fn):
        def run(*a, **k):
            t0 = time.monotonic()
            try:
                return fn(*a, **k)
            except Exception as e:
                result(False, name, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
                return None
            finally:
                log(f"{name} took {time.monotonic() - t0:.1f} s")

        return run

    return wrap


@check("install")
def c_install(tree: str) -> bool:
    t0 = time.monotonic()
    r = sh(f"cd {tree} && sudo make install", timeout=1800)
    secs = time.monotonic() - t0
    with open(Path(args.share) / "times.txt", "a") as f:
        f.write(f"install_seconds {secs:.1f}\n")
    (WORK / "install.log").write_text(r.stdout + r.stderr)
    size = sh("du -sm /opt/cadenza/venv").stdout.split()[0] if Path("/opt/cadenza/venv").exists() else "?"
    pkgs = sh(f"{VENV_PY} -m pip list --format=freeze").stdout.lower()
    tf = "tensorflow" in pkgs
    versions = ", ".join(
        line
        for line in pkgs.split()
        if line.split("==")[0] in ("numpy", "ai-edge-litert", "tflite-runtime", "python-rtmidi", "mido")
    )
    ok = r.returncode == 0 and not tf
    why = "" if r.returncode == 0 else f"; exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
    return result(
        ok,
        "install",
        f"`sudo make install` {secs:.0f} s, venv {size} MB, TensorFlow "
        f"{'present' if tf else 'absent'} ({versions}){why}",
    )


@check("enabled-at-boot")
def c_enabled() -> bool:
    en = sh("systemctl is-enabled cadenza").stdout.strip()
    active = wait_active(120)
    return result(
        en == "enabled" and active, "enabled-at-boot", f"is-enabled {en}, {prop('ActiveState')} with the default config"
    )


@check("ready-sandboxed")
def c_ready() -> bool:
    write_config("solo")
    c = cursor()
    t0 = time.monotonic()
    sh("systemctl restart cadenza")
    ok = wait_active(120)
    secs = time.monotonic() - t0
    ready = journal_has(r"ready in", c, timeout=10) or ""
    pid = main_pid()
    status = Path(f"/proc/{pid}/status").read_text() if pid else ""
    uid = int(re.search(r"Uid:\s+(\d+)", status).group(1)) if status else -1
    groups = re.search(r"Groups:\s*(.*)", status).group(1).split() if status else []
    audio = sh("getent group audio").stdout.split(":")[2] if sh("getent group audio").stdout else "?"
    dynamic = 61184 <= uid <= 65519  # systemd's range for DynamicUser
    fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")] if pid else []
    seq = "/dev/snd/seq" in fds
    waiting = journal_has(r"no MIDI output matches .*stage-synth.*waiting for it", c)
    ok = ok and dynamic and audio in groups and seq and bool(ready)
    return result(
        ok,
        "ready-sandboxed",
        f"READY {secs:.1f} s after restart ({ready.split(': ', 1)[-1][:60]}), "
        f"uid {uid} ({'a' if dynamic else 'NOT a'} DynamicUser), "
        f"audio group {'yes' if audio in groups else 'no'}, /dev/snd/seq open {'yes' if seq else 'no'}, "
        f"synth absent: {'waited for' if waiting else 'no wait line'}",
    )


@check("pm-qos")
def c_pm_qos(c0: str) -> bool:
    lines = [line for line in journal(c0) if "wake-up latency" in line]
    ok = len(lines) == 1
    return result(ok, "pm-qos", f"{len(lines)} line(s): " + (lines[0].split(": ", 1)[-1] if lines else "none"))


@check("synth-late")
def c_synth_late(synth: Synth) -> bool:
    t_on = synth.start()
    seen = wait_for(lambda: synth.notes(t_on) > 0, 30)
    t_first = synth.messages(t_on)[0][0] if synth.messages(t_on) else None
    time.sleep(5)
    silenced, how = synth.silenced_first(t_on)
    lag = f"{t_first - t_on:.1f} s" if t_first else "never"
    n = synth.notes(t_on)
    return result(
        bool(seen) and silenced and n > 0,
        "synth-late",
        f"synth switched on after the service: found in {lag}, {n} notes in {time.time() - t_on:.0f} s; {how}",
    )


@check("reload")
def c_reload(synth: Synth) -> bool:
    pid = main_pid()
    write_config("call-response", tempo=120.0)
    c = cursor()
    sh("systemctl reload cadenza", check=True)
    line = journal_has(r"reloaded settings and model", c, timeout=30)
    status = prop("StatusText")
    t = time.time()
    time.sleep(3)
    n_after = synth.notes(t)
    # Call-response with no keyboard connected yet plays solo (and answers once one is plugged in).
    ok = bool(line) and main_pid() == pid and "120 BPM" in status and status.startswith("solo") and n_after > 0
    return result(
        ok,
        "reload",
        f"`systemctl reload` (tempo 150 -> 120, mode call-response): "
        f"{'reloaded' if line else 'no reload line'}, same PID {'yes' if main_pid() == pid else 'no'}, "
        f"status '{status}'; no keyboard yet, so solo: {n_after} notes in 3 s",
    )


@check("keyboard-appears")
def c_keyboard(synth: Synth) -> tuple[bool, "Keys"]:
    c = cursor()
    t_on = time.time()
    keys = Keys(args.tree)
    line = journal_has(r"keyboard .*stage-keys.* connected: call-response", c, timeout=30)
    lag = time.time() - t_on
    time.sleep(1.5)
    t = time.time()
    time.sleep(3)
    n = synth.notes(t)
    left = synth.sounding()
    ok = bool(line) and n == 0 and left == 0
    result(
        ok,
        "keyboard-appears",
        f"keyboard plugged in: {'call-response' if line else 'no switch'} "
        f"within {lag:.1f} s; then {n} notes in 3 s (listening) and {left} left sounding",
    )
    return keys


@check("phrase-answer")
def c_phrase(keys: Keys, synth: Synth) -> bool:
    phrase = [62, 66, 69, 74, 73, 71, 69, 66]  # D major
    reply = keys.cmd("notes " + ",".join(map(str, phrase)) + " 0.4")
    t_end = float(reply[2])
    got = wait_for(lambda: synth.notes(t_end) > 0, 20)
    time.sleep(3)
    n = synth.notes(t_end)
    first = next((t for t, m in synth.messages(t_end) if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0), None)
    return result(
        bool(got),
        "phrase-answer",
        f"{len(phrase)}-note phrase played, answer: {n} notes, first {first - t_end:.2f} s after the "
        f"phrase's last note-off"
        if first
        else "no answer within 20 s",
    )


@check("patch")
def c_patch(keys: Keys, synth: Synth) -> bool:
    """A Program Change from the keyboard: the folk patch of the default bank, an answer in it, and back."""
    c = cursor()
    keys.cmd("send c0,01")  # Program Change 1, channel 1
    to_folk = journal_has(r"patch 1: folk", c, timeout=60)
    phrase = [67, 71, 74, 72, 71, 69, 67, 66]  # G major
    reply = keys.cmd("notes " + ",".join(map(str, phrase)) + " 0.4")
    t_end = float(reply[2])
    wait_for(lambda: synth.notes(t_end) > 0, 20)
    time.sleep(3)
    n = synth.notes(t_end)
    c2 = cursor()
    keys.cmd("send c0,00")
    to_bach = journal_has(r"patch 0: bach", c2, timeout=60)
    return result(
        bool(to_folk) and n > 0 and bool(to_bach),
        "patch",
        f"Program Change 1: {'folk playing' if to_folk else 'no switch'}; a phrase answered with {n} notes; "
        f"Program Change 0: {'bach again' if to_bach else 'no switch'}",
    )


@check("flood")
def c_flood(keys: Keys, synth: Synth) -> bool:
    pid, nr = main_pid(), restarts()
    c = cursor()
    reply = keys.cmd(f"flood {FLOOD_N} 1 {FLOOD_RATE}")
    sent, secs = int(reply[1]), float(reply[2])
    time.sleep(2)
    # Back to a playable state, as a player would: mode call-response, a middle tempo, short answers, panic.
    keys.cmd("send " + " ".join([cc(23, 0), cc(22, 40), cc(24, 0), cc(64, 0), cc(25, 127), cc(25, 0)]))
    quiet = wait_for(lambda: synth.sounding() == 0 and synth.quiet_since(2), 60, 0.5)
    left = synth.sounding()
    alive = main_pid() == pid and restarts() == nr and prop("ActiveState") == "active"
    counters = [line.split(": ", 1)[-1] for line in journal(c) if re.search(r"dropped|malformed|ignored", line)]
    ok = alive and bool(quiet) and left == 0
    return result(
        ok,
        "flood",
        f"{sent} hostile messages in {secs:.1f} s ({sent / max(secs, 1e-3):.0f}/s) over ALSA; "
        f"alive (same PID, no restart) {'yes' if alive else 'no'}; after knobs reset and panic: "
        f"{'quiet' if quiet else 'still playing'}, {left} notes left sounding"
        + (f"; log: {counters[-1][:120]}" if counters else ""),
    )


@check("synth-reconnect")
def c_reconnect(keys: Keys, synth: Synth) -> bool:
    keys.cmd("send " + cc(23, 127))  # the mode knob to solo: it plays on its own
    wait_for(lambda: synth.notes(time.time() - 2) > 0, 20)
    c = cursor()
    synth.stop()
    lost = journal_has(r"MIDI output .*stage-synth.* lost", c, timeout=15)
    time.sleep(2)
    t_on = synth.start()
    reopened = journal_has(r"MIDI output .*stage-synth.* back after", c, timeout=20)
    got = wait_for(lambda: synth.notes(t_on) > 0, 20)
    silenced, how = synth.silenced_first(t_on)
    ok = bool(lost) and bool(reopened) and bool(got) and silenced
    return result(
        ok,
        "synth-reconnect",
        f"synth gone: {'noticed' if lost else 'not noticed'}; back: "
        f"{'reopened' if reopened else 'not reopened'}, {synth.notes(t_on)} notes since; {how}",
    )


@check("stop")
def c_stop(synth: Synth) -> bool:
    wait_for(lambda: synth.notes(time.time() - 2) > 0, 20)
    t0 = time.monotonic()
    sh("systemctl stop cadenza")
    secs = time.monotonic() - t0
    time.sleep(1)
    left = synth.sounding()
    res = prop("Result")
    return result(
        left == 0 and prop("ActiveState") == "inactive",
        "stop",
        f"`systemctl stop` while playing: {secs:.1f} s, result {res}, {left} notes left sounding",
    )


def _crash(name: str, signal_name: str, synth: Synth, wait_s: float = 60) -> bool:
    wait_for(lambda: synth.notes(time.time() - 2) > 0, 20)
    pid, nr = main_pid(), restarts()
    c = cursor()
    t_kill = time.time()
    os.kill(pid, getattr(__import__("signal"), signal_name))
    back = wait_for(lambda: main_pid() not in (0, pid) and prop("ActiveState") == "active", wait_s)
    secs = time.time() - t_kill
    wait_for(lambda: synth.notes(t_kill + 0.5) > 0, 20)
    silenced, how = synth.silenced_first(t_kill + 0.5)
    nr2 = restarts()
    return back, nr2 - nr, secs, silenced, how, c


@check("kill-KILL")
def c_kill(synth: Synth) -> bool:
    back, dn, secs, silenced, how, _ = _crash("kill-KILL", "SIGKILL", synth)
    return result(
        bool(back) and dn == 1 and silenced,
        "kill-KILL",
        f"restarted by systemd in {secs:.1f} s (restarts +{dn}); after the restart {how}",
    )


@check("kill-SEGV")
def c_segv(synth: Synth) -> bool:
    back, dn, secs, silenced, how, _ = _crash("kill-SEGV", "SIGSEGV", synth)
    return result(
        bool(back) and dn == 1 and silenced,
        "kill-SEGV",
        f"restarted by systemd in {secs:.1f} s (restarts +{dn}); after the restart {how}",
    )


@check("watchdog")
def c_watchdog(synth: Synth) -> bool:
    back, dn, secs, silenced, how, c = _crash("watchdog", "SIGSTOP", synth, wait_s=90)
    wd = journal_has(r"[Ww]atchdog timeout", c)
    how_killed = journal_has(r"Killing process|killed|signal=", c) or ""
    return result(
        bool(back) and dn == 1 and bool(wd) and silenced,
        "watchdog",
        f"SIGSTOP: {'watchdog timeout' if wd else 'no watchdog line'}, "
        f"{how_killed.split(': ', 1)[-1][:80]}; back in {secs:.1f} s (restarts +{dn}); {how}",
    )


@check("broken-config")
def c_broken() -> bool:
    sh("systemctl reset-failed cadenza")
    good = CONFIG.read_text()
    CONFIG.write_text(
        good + "[play]\ntempo_typo = 1\n" if "[play]" not in good else good.replace("[play]", "[play]\ntempoo = 1", 1)
    )
    nr = restarts()
    c = cursor()
    sh("systemctl restart cadenza")
    time.sleep(6)  # three times RestartSec: a restart loop would show
    state, code, nr2 = prop("ActiveState"), prop("ExecMainStatus"), restarts()
    lines = journal(c, program_only=True, invocation=prop("InvocationID"))
    CONFIG.write_text(good)
    ok = state == "failed" and code == "2" and nr2 == nr and len(lines) == 1
    shown = lines[0].split(": ", 1)[-1][:120] if lines else "none"
    result(
        ok,
        "broken-config",
        f"{state}, exit {code}, restarts +{nr2 - nr} in 6 s, {len(lines)} journal line(s) from the player: {shown}",
    )
    sh("systemctl reset-failed cadenza")
    sh("systemctl start cadenza")
    return ok


@check("security")
def c_security() -> bool:
    out = sh("systemd-analyze security cadenza --no-pager").stdout
    m = re.search(r"Overall exposure level for cadenza\.service:\s*([\d.]+)\s*(\S+)", out)
    if not m:
        return result(False, "security", "no exposure line: " + out.strip()[-200:])
    level = float(m.group(1))
    return result(
        level <= 1.5, "security", f"`systemd-analyze security cadenza` online: {level} {m.group(2)} (goal ≤ 1.5)"
    )


@check("journal")
def c_journal() -> bool:
    text = "\n".join(journal())
    want = {
        "model": r"model .*bach\.cadenza",
        "patches": r"patches: 0 bach .*1 folk",
        "ready": r"ready in [\d.]+ s",
        "output": r"MIDI output .*stage-synth.* open",
        "input": r"MIDI input .*stage-keys",
        "no-keyboard": r"no keyboard connected: playing solo",
        "reload": r"reloaded settings and model",
        "stopping": r"SIGTERM: stopping",
        "watchdog": r"[Ww]atchdog timeout",
        "sched": r"SCHED_FIFO|real-time",
    }
    missing = [k for k, p in want.items() if not re.search(p, text)]
    tracebacks = text.count("Traceback")
    # (ProcSubset=pid hides /proc/cpuinfo from the service: the interpreter's CPU probe says so at each start)
    cpuinfo = text.count("Error in cpuinfo")
    return result(
        not missing and tracebacks == 0,
        "journal",
        f"{len(want) - len(missing)}/{len(want)} expected lines"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + f", {tracebacks} tracebacks"
        + (f"; {cpuinfo} 'Error in cpuinfo' lines (no /proc/cpuinfo in the sandbox)" if cpuinfo else ""),
    )


def part1(tree: str) -> None:
    c_install(tree)
    if not Path(VENV_PY).exists():
        return
    c_enabled()
    c0 = cursor()
    c_ready()
    c_pm_qos(c0)
    synth = Synth(tree)
    c_synth_late(synth)
    c_reload(synth)
    keys = c_keyboard(synth) or Keys(tree)
    c_phrase(keys, synth)
    c_patch(keys, synth)
    c_flood(keys, synth)
    c_reconnect(keys, synth)
    c_stop(synth)
    write_config("solo")
    sh("systemctl reset-failed cadenza")
    sh("systemctl start cadenza")
    wait_active(120)
    c_kill(synth)
    c_segv(synth)
    c_watchdog(synth)
    c_broken()
    wait_active(120)
    c_security()
    c_journal()
    keys.close()
    synth.stop()
    sh("journalctl -u cadenza -o short-monotonic --no-pager > " + str(Path(args.share) / "journal-part1.txt"))
    (WORK / "reboot").touch()


# -- part 2 ----------------------------------------------------------------------------------


@check("reboot")
def c_reboot(tree: str) -> bool:
    active = wait_active(180)
    t_ready = int(prop("ActiveEnterTimestampMonotonic") or 0) / 1e6
    synth = Synth(tree)
    t_on = synth.start()
    got = wait_for(lambda: synth.notes(t_on) > 0, 30)
    n = synth.notes(t_on)
    synth.stop()
    return result(
        bool(active) and bool(got),
        "reboot",
        f"service back after the reboot: {'active' if active else prop('ActiveState')}, READY "
        f"{t_ready:.1f} s after the kernel started; {n} notes to the synth",
    )


@check("uninstall")
def c_uninstall(tree: str) -> bool:
    before = CONFIG.read_text()
    r = sh(f"cd {tree} && sudo make uninstall")
    gone = not Path("/opt/cadenza").exists() and not Path("/etc/systemd/system/cadenza.service").exists()
    kept = CONFIG.exists() and CONFIG.read_text() == before
    state = prop("LoadState")
    return result(
        r.returncode == 0 and gone and kept,
        "uninstall",
        f"`make uninstall`: exit {r.returncode}, /opt/cadenza and the unit "
        f"{'gone' if gone else 'still there'} (unit {state}), config {'kept' if kept else 'NOT kept'}",
    )


@check("bench-step")
def c_bench_step(tree: str) -> bool:
    """The README's step-time command for a real Pi, run with the installed environment (the figure is emulated)."""
    r = sh(
        f"cd {tree} && {VENV_PY} bench/bench_step.py --time /opt/cadenza/share/bach.cadenza --steps 300", timeout=600
    )
    out = (r.stdout.strip().splitlines() or [r.stderr.strip()[-200:]])[-1]
    return result(
        r.returncode == 0,
        "bench-step",
        f"bench/bench_step.py with /opt/cadenza/venv runs on arm64 "
        f"(emulated, not a Pi's figure): {' '.join(out.split())[:160]}",
    )


def part2(tree: str) -> None:
    if not Path(VENV_PY).exists():
        return
    c_reboot(tree)
    c_bench_step(tree)
    sh("journalctl -b -u cadenza -o short-monotonic --no-pager > " + str(Path(args.share) / "journal-part2.txt"))
    c_uninstall(tree)


def main() -> int:
    global args, results_path
    p = argparse.ArgumentParser()
    p.add_argument("--part", type=int, required=True)
    p.add_argument("--share", required=True)
    p.add_argument("--tree", required=True)
    args = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.share) / "results.txt"
    up = float(Path("/proc/uptime").read_text().split()[0])
    boot = sh("systemd-analyze time").stdout.strip().splitlines()
    log(f"part {args.part}: started {up:.1f} s after the kernel; {boot[0] if boot else ''}")
    with open(Path(args.share) / "times.txt", "a") as f:
        f.write(f"boot{args.part}_scenario_start_uptime {up:.1f}\n")
        if boot:
            f.write(f"boot{args.part} {boot[0]}\n")
    t0 = time.monotonic()
    (part1 if args.part == 1 else part2)(args.tree)
    with open(Path(args.share) / "times.txt", "a") as f:
        f.write(f"part{args.part}_seconds {time.monotonic() - t0:.1f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
