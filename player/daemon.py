"""The live player: settings -> model, ports, engine, scheduler, signals, systemd.

    Daemon(settings).run()   # until SIGTERM/SIGINT or --duration; returns the exit code

Errors while starting (the model, the ports, the recorder's folder) are raised to
the caller, which exits 2: a setting is wrong. A fault once playing is logged, the
synth silenced, and run() returns EXIT_FAULT, so that systemd restarts it.

The scheduler loop runs on the main thread (at SCHED_FIFO when allowed); the
ports have their own threads (rtmidi's callback, the reconnect watcher). Signals
only set flags; the loop acts on them between sends: stop, or reload (SIGHUP:
new settings and model, same ports; a broken file keeps the old ones).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import struct
import time
from typing import TYPE_CHECKING

import mido

from . import notify
from .assemble import Player, build_player
from .clock import RealClock
from .controls import ControlMap
from .interfaces import Clock, StepModel
from .patches import Bank, Slot
from .scheduler import PortInbox, Scheduler

if TYPE_CHECKING:
    from .config import Settings
    from .midi import InputPort, OutputPort
    from .recorder import SessionRecorder
    from .runtime import StepModel as TfLiteStepModel

log = logging.getLogger(__name__)

RT_PRIORITY = 20  # SCHED_FIFO, below JACK's own threads (70+) so audio still wins
# A fault while playing: not 2 (a wrong setting, which the unit's RestartPreventExitStatus=2 does not
# restart), so that systemd's Restart=on-failure brings the instrument back.
EXIT_FAULT = 1


def model_path(settings: Settings) -> str:
    from .bundle import default_model_path

    return settings.model or str(default_model_path())


def open_model(settings: Settings) -> TfLiteStepModel:
    from .runtime import open_model as _open

    path = model_path(settings)
    model = _open(path, num_threads=settings.num_threads)
    log.info("model %s (vocabulary %d, hidden %d)", path, model.vocab_size, model.hidden)
    return model


def open_bank(settings: Settings, model: StepModel) -> Bank:
    """The patch bank ([patches], or the shipped bundles), every bundle opened (`model`, already open, reused).
    A broken bundle: BundleError naming the patch (exit 2)."""
    from .bundle import model_search_path
    from .patches import default_patches
    from .runtime import open_model as _open

    patches = settings.patches
    if patches is None:
        patches = tuple(default_patches([p.parent for p in model_search_path()]))
    t0 = time.perf_counter()
    bank = Bank.open(
        patches, lambda path: _open(path, num_threads=settings.num_threads), opened={model_path(settings): model}
    )
    if len(bank):
        listing = ", ".join(f"{s.program} {s.name} ({s.load_seconds:.3f} s)" for s in bank.slots.values())
        log.info("patches: %s (opened in %.2f s)", listing, time.perf_counter() - t0)
    return bank


def set_realtime(priority: int = RT_PRIORITY) -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as e:
        log.info(
            "real-time scheduling not permitted (%s); running at normal priority", getattr(e, "strerror", None) or e
        )
        return False
    log.info("scheduler loop at SCHED_FIFO priority %d", priority)
    return True


CPU_DMA_LATENCY = "/dev/cpu_dma_latency"


def hold_wakeup_latency(microseconds: int, path: str = CPU_DMA_LATENCY) -> int | None:
    """Ask the kernel (PM QoS) to keep CPU wake-up latency under `microseconds` while we run.

    The request lasts while the returned file descriptor is open: the kernel drops it
    when the process exits, however it exits. Deep idle states (and, in a virtual
    machine, halting the virtual CPU) make every sleep end late; 0 keeps the CPUs
    polling instead, which costs power. None (one log line) when not permitted.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        log.info(
            "cannot hold CPU wake-up latency at %d µs (%s: %s); CPUs may idle deeply between notes",
            microseconds,
            path,
            e.strerror or e,
        )
        return None
    try:
        os.write(fd, struct.pack("=i", int(microseconds)))
    except OSError as e:
        os.close(fd)
        log.info("cannot hold CPU wake-up latency at %d µs (%s)", microseconds, e.strerror or e)
        return None
    log.info("CPU wake-up latency held at %d µs", microseconds)
    return fd


def under_systemd() -> bool:
    """Started by systemd (it sets INVOCATION_ID for every service it runs)."""
    return bool(os.environ.get("INVOCATION_ID"))


def render_file(
    settings: Settings,
    out_path: str,
    seed_file: str | None = None,
    beats: float | None = None,
    include_seed: bool = False,
) -> int:
    """--render: the engine on a simulated clock, no ports; writes a MIDI file."""
    from .events import MidiFileError, read_midi
    from .render import render, write_render

    phrase = read_midi(seed_file) if seed_file else None
    play = settings.play
    if beats is None:
        beats = play.answer_bars * play.beats_per_bar
    if beats <= 0:
        raise ValueError(f"--beats must be positive, got {beats:g}")
    model = open_model(settings)
    t0 = time.perf_counter()
    try:
        rendered = render(
            model,
            beats=beats,
            phrase=phrase,
            tempo=play.tempo,
            temperature=play.temperature,
            top_p=play.top_p,
            seed=play.seed,
            phrase_gap=play.phrase_gap,
            channel=settings.midi.channel - 1,
            key=play.key,
            key_strength=play.key_strength,
            key_opening=play.key_opening,
            pedal_hold_bars=play.pedal_hold_bars,
            beats_per_bar=play.beats_per_bar,
        )
    except MidiFileError:
        raise  # the seed file's fault (a phrase with no notes): exit 2
    except Exception as e:  # the engine's fault, not a setting's
        log.exception("fault while rendering (%s: %s)", type(e).__name__, " ".join(str(e).split()))
        return EXIT_FAULT
    program = settings.midi.program if settings.midi.program >= 0 else None
    write_render(out_path, rendered, include_seed, play.tempo, program)
    notes = sum(1 for tm in rendered.answer if tm.message.type == "note_on" and tm.message.velocity)
    log.info("wrote %s: %d notes in %g beats (%.2f s)", out_path, notes, beats, time.perf_counter() - t0)
    return 0 if rendered.complete else EXIT_FAULT


class Daemon:
    def __init__(
        self,
        settings: Settings,
        config_path: str | None = None,
        overrides: dict | None = None,
        duration: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.overrides = overrides or {}
        self.duration = duration
        self.clock = clock or RealClock()
        self._reload = False
        self._last_watchdog = -math.inf
        self._watchdog_every = notify.watchdog_interval()
        self.out: OutputPort | None = None
        self.inp: InputPort | None = None
        self.recorder: SessionRecorder | None = None
        self.player: Player | None = None  # built by run() once the ports are open
        self._keyboard = self._solo_for_keyboard = False  # a keyboard just found; solo until one is
        self._pm_qos: int | None = None  # the open /dev/cpu_dma_latency request, if any
        self.bank: Bank | None = None

    # -- wiring ---------------------------------------------------------------

    def _open_ports(self) -> tuple[OutputPort, InputPort]:
        from .midi import InputPort, OutputPort, open_backend

        m = self.settings.midi
        backend = open_backend(m.backend)
        # As a service, a synth or keyboard switched on after boot is waited for (and played to when it
        # appears); from a terminal, a name that matches nothing is a one-line error right away.
        wait = under_systemd()
        self.out = out = OutputPort(m.output, backend, m.client_name, wait=wait)
        log.info("MIDI output: %s", out.name)
        self.inp = inp = InputPort(m.input, backend, m.client_name, wait=wait)
        inp.on_reconnect = self._keyboard_found
        if inp.enabled:
            log.info("MIDI input: %s", inp.name)
        return out, inp

    def _build(self, model: StepModel, out: OutputPort, inp: InputPort) -> Player:
        recorder = self.recorder
        bank = self.bank
        return build_player(
            self.settings,
            model,
            clock=self.clock,
            inbox=PortInbox(self.clock, inp),
            sink=_Sink(out, recorder),
            align=True,
            on_alive=self._alive,
            on_change=self._changed,
            on_input=None if recorder is None else lambda t, msg: recorder.record("in", t, msg),
            bank=bank,
            patch=self._program_of(bank, self.settings),
            on_patch=self._patched,
        )

    @staticmethod
    def _program_of(bank: Bank | None, settings: Settings) -> int | None:
        slot = None if bank is None else bank.find(model_path(settings))
        return None if slot is None else slot.program

    def _patched(self, slot: Slot, tick: int) -> None:
        """Another patch has taken over, from the bar line at `tick` (the time is on time.monotonic())."""
        player, _ = self._parts()
        when = (
            f" from the bar line at tick {tick} ({player.timebase.time_of(tick):.4f} s)"
            if player.engine.playing
            else ""
        )
        log.info("patch %d: %s%s (%s)", slot.program, slot.name, when, slot.path)
        self._status()

    def _synth_program(self) -> int:
        """The program the synth is sent on start and when it comes back: the patch's, else [midi] program."""
        switcher = self.player.switcher if self.player is not None else None
        slot = switcher.slot if switcher is not None else None
        if slot is not None and slot.synth_program >= 0:
            return slot.synth_program
        return self.settings.midi.program

    def _changed(self, setting: str, value: object) -> None:
        if setting == "tempo":
            self._mark_tempo()
        self._status()  # a control changed a setting

    def _mark_tempo(self) -> None:
        """The tempo into the session recording (so it can be read back in beats)."""
        if self.recorder is not None and self.player is not None:
            self.recorder.tempo(time.monotonic(), self.player.timebase.bpm)

    def _parts(self) -> tuple[Player, InputPort]:
        """The player and the keyboard's port (for what runs once run() has built them)."""
        assert self.player is not None and self.inp is not None
        return self.player, self.inp

    def _status(self) -> str:
        player, _ = self._parts()
        cond, tb = player.conductor, player.timebase
        text = f"{cond.mode}, {tb.bpm:.0f} BPM, temperature {player.sampler.temperature:.2f}"
        if tb.external:
            text += " (external clock)"
        text += f", {cond.describe_key()}"
        if player.switcher is not None:
            text += f", {player.switcher.describe()}"
        notify.status(text)
        return text

    # -- signals and the loop's housekeeping -------------------------------------

    def _on_stop(self, signum, frame) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        if self.player is not None:
            self.player.scheduler.stop()

    def _on_hup(self, signum, frame) -> None:
        self._reload = True

    def _keyboard_found(self, port) -> None:
        self._keyboard = True  # (the port's thread: the loop acts on it)

    def _solo_until_keyboard(self) -> None:
        """Call-response with no keyboard connected has nothing to answer: it plays solo until one is."""
        player, inp = self._parts()
        cond = player.conductor
        self._solo_for_keyboard = cond.mode == "call-response" and not (inp.enabled and inp.connected)
        if self._solo_for_keyboard:
            cond.reconfigure(mode="solo")
            log.info("no keyboard connected: playing solo; call-response once one is")

    def _alive(self, now: float) -> None:
        """Called by the scheduler loop on every pass: the watchdog, a pending reload, a keyboard found."""
        if self._watchdog_every is not None and now - self._last_watchdog >= self._watchdog_every:
            notify.watchdog()
            self._last_watchdog = now
        if self._keyboard:
            self._keyboard = False
            if self._solo_for_keyboard:
                self._solo_for_keyboard = False
                player, inp = self._parts()
                sch, tb = player.scheduler, player.timebase
                log.info("keyboard %s connected: call-response", inp.name)
                if player.conductor.set_mode("call-response", tb.tick_at(now) if tb.running else player.engine.cursor):
                    sch.silence()
                self._status()
        if self._reload:
            self._reload = False
            self.reload()

    def reload(self) -> None:
        """SIGHUP: settings and model again, the ports kept; anything broken keeps the old."""
        from .config import load_config, override

        notify.reloading()
        try:
            new = override(load_config(self.config_path), self.overrides)
            model = open_model(new)
            bank = open_bank(new, model)
        except Exception as e:  # a broken file must not stop the music
            log.error("reload failed, keeping the old settings and model: %s", " ".join(str(e).split()))
            notify.ready()
            self._status()
            return
        old, self.settings = self.settings, new
        player, _ = self._parts()
        sch, tb, eng, cond = player.scheduler, player.timebase, player.engine, player.conductor
        now = self.clock.now()
        tick = tb.tick_at(now) if tb.running else eng.cursor
        if old.midi != new.midi or old.clock != new.clock:
            log.warning("MIDI port and clock settings change on restart only; kept as they were")
        play = new.play
        cond.cut(tick)
        sch.send_due()
        eng.set_model(model)
        player.sampler.configure(play.temperature, play.top_p)
        if not tb.external:
            tb.set_tempo(play.tempo, now)
        sch.reconfigure(velocity_scale=play.velocity_scale)
        cond.reconfigure(
            phrase_gap=play.phrase_gap,
            answer_bars=play.answer_bars,
            beats_per_bar=play.beats_per_bar,
            sustain_ends_phrase=new.controls.sustain_ends_phrase,
            pedal_hold_bars=play.pedal_hold_bars,
        )
        player.router.set_controls(ControlMap.from_settings(new.controls))
        self.bank = bank
        if player.switcher is not None:
            player.switcher.reconfigure(bank, self._program_of(bank, new))
        cond.reconfigure(mode=play.mode)
        self._solo_until_keyboard()
        cond.restart(tick)  # the new model has not heard the old phrase
        self._mark_tempo()
        cond.set_key(play.key)
        cond.set_key_strength(play.key_strength)  # (None: the model's own)
        cond.set_key_opening(play.key_opening)
        log.info("reloaded settings and model")
        notify.ready()
        self._status()

    # -- run ----------------------------------------------------------------------

    def run(self) -> int:
        s = self.settings
        t_start = time.monotonic()
        model = open_model(s)
        self.bank = open_bank(s, model)
        # Real-time before the ports' threads exist, so they inherit it: a normal-priority thread
        # holding the GIL while preempted would otherwise stall the loop (measured: 59 ms).
        set_realtime()
        if s.cpu_dma_latency >= 0 and self._pm_qos is None:
            self._pm_qos = hold_wakeup_latency(s.cpu_dma_latency)
        out, inp = self._open_ports()
        try:
            if s.record.enabled:
                from .recorder import SessionRecorder

                self.recorder = SessionRecorder(s.record.directory, s.record.max_files, s.record.max_bytes)
            self.player = self._build(model, out, inp)
            self._mark_tempo()
            sch = self.player.scheduler
            out.all_notes_off()

            def send_program(port: object = None) -> None:  # at start, and when `out` is reopened: the synth's sound
                program = self._synth_program()
                if program >= 0:
                    out.send(mido.Message("program_change", channel=self.settings.midi.channel - 1, program=program))

            send_program()
            out.on_reconnect = send_program
            signal.signal(signal.SIGTERM, self._on_stop)
            signal.signal(signal.SIGINT, self._on_stop)
            signal.signal(signal.SIGHUP, self._on_hup)
            self._solo_until_keyboard()
            sch.begin()
            status = self._status()
            notify.ready(status)
            log.info("ready in %.2f s: %s", time.monotonic() - t_start, status)
        except BaseException:
            self.close()  # a start-up error: the caller reports it (exit 2 for a wrong setting)
            raise
        code = EXIT_FAULT
        try:
            code = self._play(sch)
        finally:
            try:
                self.close()
            except Exception:
                log.exception("fault while closing the ports")
                code = EXIT_FAULT
        log.info("stopped after %.1f s; %d MIDI messages sent", time.monotonic() - t_start, out.sent)
        return code

    def _play(self, sch: Scheduler) -> int:
        """The loop, until a stop or --duration. A fault in it (whatever its type: a ValueError here is
        no setting's fault) is logged, the synth silenced, and EXIT_FAULT returned, so systemd restarts."""
        code = 0
        until = None if self.duration is None else self.clock.now() + self.duration
        try:
            sch.run(until=until)
        except Exception as e:
            log.exception(
                "fault while playing (%s: %s): silencing, exiting with code %d to be restarted",
                type(e).__name__,
                " ".join(str(e).split()),
                EXIT_FAULT,
            )
            code = EXIT_FAULT
        finally:
            notify.stopping()
            try:
                sch.end()
            except Exception:
                log.exception("fault while silencing the engine's notes")
                code = EXIT_FAULT
        return code

    def close(self) -> None:
        if self.out is not None:
            self.out.all_notes_off()
        for port in (self.inp, self.out):
            if port is not None:
                port.close()
        if self.recorder is not None:
            path = self.recorder.close()
            if path:
                log.info("session recorded to %s", path)
        if self._pm_qos is not None:
            os.close(self._pm_qos)  # the kernel drops the request
            self._pm_qos = None


class _Sink:
    """The scheduler's output: the port (and the recorder, when recording)."""

    def __init__(self, out: OutputPort, recorder: SessionRecorder | None) -> None:
        self.out = out
        self.recorder = recorder

    def send(self, msg: mido.Message) -> None:
        self.out.send(msg)
        if self.recorder is not None:
            self.recorder.record("out", time.monotonic(), msg)

    def all_notes_off(self) -> None:
        self.out.all_notes_off()
