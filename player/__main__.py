"""cadenza-play: the instrument. Flags override the config file.

Exit codes: 0 stopped cleanly; 2 a setting is wrong (config, model bundle, a port
at start, a file named on the command line), one line on stderr, and systemd does
not restart (RestartPreventExitStatus=2); 1 a fault while playing (logged, the
synth silenced), which systemd restarts.

    cadenza-play --output fluid --input keystation
    cadenza-play --list-ports
    cadenza-play --render answer.mid --seed-file phrase.mid --beats 16 --seed 1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import MODES

EXIT_USAGE = 2


def _setting(p: argparse.ArgumentParser, flag: str, key: str, **kw) -> None:
    """A flag that overrides the setting `key` (dotted): the key is its dest, so flag_overrides finds it."""
    p.add_argument(flag, dest=key, **kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cadenza-play",
        description="Play a Cadenza model to a MIDI synth, answering the phrases played on a keyboard.",
    )
    _setting(p, "--model", "model", metavar="FILE", help="model bundle (*.cadenza); default: the bundled model")
    _setting(p, "--output", "midi.output", metavar="NAME", help="MIDI output: a substring of its name, or 'virtual'")
    _setting(p, "--input", "midi.input", metavar="NAME", help="MIDI input (keyboard): a substring, 'virtual' or 'none'")
    _setting(
        p,
        "--backend",
        "midi.backend",
        metavar="API",
        help="MIDI backend: alsa, jack, coremidi, windows, or a mido backend",
    )
    _setting(p, "--client-name", "midi.client_name", metavar="NAME", help="MIDI client name (default cadenza)")
    p.add_argument("--config", metavar="FILE", help="TOML settings (default /etc/cadenza/config.toml if it exists)")
    _setting(p, "--mode", "play.mode", choices=MODES)
    _setting(p, "--tempo", "play.tempo", type=float, metavar="BPM")
    _setting(
        p, "--temperature", "play.temperature", type=float, metavar="T", help="sampling temperature (1 = as trained)"
    )
    _setting(
        p,
        "--top-p",
        "play.top_p",
        type=float,
        metavar="P",
        help="nucleus sampling: keep the most likely tokens up to P",
    )
    _setting(p, "--phrase-gap", "play.phrase_gap", type=float, metavar="BEATS", help="silence that ends a phrase")
    _setting(p, "--answer-bars", "play.answer_bars", type=int, metavar="N", help="length of an answer")
    _setting(
        p,
        "--key",
        "play.key",
        metavar="KEY",
        help="'auto' (answer in the phrase's key), 'off', or a key to stay in, e.g. 'D minor'",
    )
    _setting(
        p,
        "--key-strength",
        "play.key_strength",
        type=float,
        metavar="S",
        help="how hard answers lean to the key (0 = not at all)",
    )
    _setting(
        p,
        "--key-opening",
        "play.key_opening",
        type=float,
        metavar="X",
        help="an answer's first bar leans X times as hard (1 = the same throughout)",
    )
    p.add_argument("--duration", type=float, metavar="SECONDS", help="play this long, then stop cleanly")
    _setting(p, "--seed", "play.seed", type=int, metavar="N", help="random seed: the same seed plays the same notes")
    p.add_argument("--debug", action="store_true", help="debug logging")
    p.add_argument("--list-ports", action="store_true", help="list MIDI ports and exit")
    g = p.add_argument_group("offline rendering (no ports)")
    g.add_argument("--render", metavar="OUT.mid", help="write the model's playing to a MIDI file, as fast as it can")
    g.add_argument("--seed-file", metavar="PHRASE.mid", help="a phrase to answer (as if played on the keyboard)")
    g.add_argument("--beats", type=float, metavar="N", help="length to render (default: answer_bars bars)")
    g.add_argument("--include-seed", action="store_true", help="write the phrase before the answer")
    g.add_argument(
        "--or-render",
        metavar="OUT.mid",
        help="with no MIDI system at all, say so and render a 30-second answer here instead "
        "(and OUT.wav when fluidsynth and a General MIDI sound font are installed)",
    )
    return p


FALLBACK_SECONDS = 30.0
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)


def midi_missing(settings) -> str | None:
    """The one-line reason when this machine has no MIDI system for the configured backend, else None."""
    from .midi import PortError, list_ports, open_backend

    try:
        list_ports(open_backend(settings.midi.backend))
    except PortError as e:
        text = str(e)
        return text if text.startswith("no MIDI system") else None
    return None


def render_instead(settings, args, reason: str) -> int:
    """`make play` on a machine without MIDI: a rendered answer (and a WAV when fluidsynth can make one)."""
    import shutil
    import subprocess
    from pathlib import Path

    from .daemon import render_file

    beats = args.beats or FALLBACK_SECONDS * settings.play.tempo / 60.0
    seed_file, include_seed = args.seed_file, args.include_seed
    example = Path(__file__).resolve().parent.parent / "examples" / "phrase.mid"
    if seed_file is None and example.exists():  # a source checkout: answer the example phrase
        seed_file, include_seed = str(example), True
    print(
        f"cadenza-play: {reason}; rendering a {FALLBACK_SECONDS:g}-second answer to {args.or_render} instead",
        file=sys.stderr,
    )
    code = render_file(settings, args.or_render, seed_file=seed_file, beats=beats, include_seed=include_seed)
    font = next((f for f in SOUNDFONTS if Path(f).exists()), None)
    if code == 0 and shutil.which("fluidsynth") and font:
        wav = str(Path(args.or_render).with_suffix(".wav"))
        res = subprocess.run(
            ["fluidsynth", "-ni", "-F", wav, "-r", "44100", font, args.or_render], capture_output=True, text=True
        )
        print(
            f"cadenza-play: wrote {wav}"
            if res.returncode == 0
            else f"cadenza-play: fluidsynth could not write {wav}: {res.stderr.strip()[-200:]}",
            file=sys.stderr,
        )
    return code


def setup_logging(level: str = "info") -> None:
    """stderr; without timestamps under systemd (the journal stamps each line)."""
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if os.environ.get("JOURNAL_STREAM")
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def flag_overrides(args: argparse.Namespace) -> dict:
    """The settings given as flags: their dests are the settings' dotted keys (see _setting)."""
    keys = {"model"} | {dest for dest in vars(args) if "." in dest}
    return {key: getattr(args, key) for key in sorted(keys) if getattr(args, key, None) is not None}


def load_settings(args: argparse.Namespace):
    from .config import load_config, override

    return override(load_config(args.config), flag_overrides(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("debug" if args.debug else "info")
    from .bundle import BundleError
    from .config import ConfigError
    from .events import MidiFileError
    from .midi import PortError

    try:
        if args.list_ports:
            from .midi import format_port_list, open_backend

            backend = getattr(args, "midi.backend")
            if backend is None:
                backend = load_settings(args).midi.backend
            print(format_port_list(open_backend(backend)))
            return 0
        settings = load_settings(args)
        if not args.debug:
            setup_logging(settings.log.level)
        if args.render:
            from .daemon import render_file

            return render_file(
                settings, args.render, seed_file=args.seed_file, beats=args.beats, include_seed=args.include_seed
            )
        if args.or_render:
            reason = midi_missing(settings)
            if reason:
                return render_instead(settings, args, reason)
        if args.seed_file or args.beats or args.include_seed:
            raise ConfigError("--seed-file, --beats and --include-seed go with --render or --or-render")
        from .daemon import Daemon

        return Daemon(settings, config_path=args.config, overrides=flag_overrides(args), duration=args.duration).run()
    except (ConfigError, BundleError, PortError, MidiFileError, ImportError, OSError, ValueError) as e:
        logging.getLogger("cadenza.player").debug("exiting on an error", exc_info=True)
        text = " ".join(str(e).split()) or type(e).__name__
        print(f"cadenza-play: {text}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
