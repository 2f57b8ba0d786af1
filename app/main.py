"""``hypergan-sampler``: the desktop sampler window.

examples:
  hypergan-sampler                          # shipped weights, first audio output, automatic MIDI input
  hypergan-sampler --weights runs/assets    # other weights
  hypergan-sampler --no-audio --no-midi     # render and export only
  hypergan-sampler --open my_pad.hgi        # a saved instrument
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


class _NoAudio:
    """An audio backend without devices (``--no-audio``)."""

    def outputs(self) -> list:
        from app.audio_output import AudioUnavailable

        raise AudioUnavailable("disabled with --no-audio")

    def open(self, *_: Any) -> Any:
        raise AssertionError("unreachable: no outputs")


class _NoMidi:
    """A MIDI backend without ports (``--no-midi``)."""

    def input_names(self) -> list[str]:
        from app.midi_input import MidiUnavailable

        raise MidiUnavailable("disabled with --no-midi")

    def open_input(self, *_: Any) -> Any:
        raise AssertionError("unreachable: no ports")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypergan-sampler", description="The HyperGANStrument sampler window.",
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped assets)")
    parser.add_argument("--device", default="auto", help="torch device for rendering: auto, cpu, cuda, mps")
    parser.add_argument("--vocoder", default="auto", help="mel inverter: auto, neural or griffinlim")
    parser.add_argument("--no-audio", action="store_true", help="do not open an audio output")
    parser.add_argument("--no-midi", action="store_true", help="do not open MIDI inputs")
    parser.add_argument("--settings", type=Path, default=None, help="an INI file instead of the user's settings")
    parser.add_argument("--load", nargs="+", type=Path, default=None, metavar="FILE",
                        help="sounds for A (and B, C, D) instead of the last ones")
    parser.add_argument("--pad", default=None, metavar="X,Y",
                        help="the morph pad's puck with three or four sounds (each 0 to 1; A is 0,0, D is 1,1)")
    parser.add_argument("--open", type=Path, default=None, metavar="FILE", help="open a saved instrument (.hgi)")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save a PNG of the window after --screenshot-delay ms, then quit")
    parser.add_argument("--screenshot-delay", type=int, default=1500)
    return parser


def qt_refcount_problem() -> str | None:
    """Why this PySide6 build would crash under this Python, or None when it is fine.

    PySide6 6.12.0 returns None from void methods without taking a reference; from Python 3.12 on
    None is immortal and nothing happens, before that the window aborts after a few thousand calls.
    """
    if sys.version_info >= (3, 12):
        return None
    import PySide6
    from PySide6.QtCore import QRectF

    rect = QRectF()
    before = sys.getrefcount(None)
    for _ in range(100):
        rect.setWidth(1.0)
    if sys.getrefcount(None) <= before - 50:
        return (f"PySide6 {PySide6.__version__} loses a reference to None on every call under Python "
                f"{sys.version_info.major}.{sys.version_info.minor} and would crash the window; install "
                "'PySide6-Essentials<6.12' (bash scripts/setup.sh does) or use Python 3.12 or newer")
    return None


def load_engine(weights: Path | None, device: str, vocoder: str) -> tuple[Any | None, str]:
    """(Engine, "") or (None, why not): missing weights say so instead of stopping the app."""
    from models.errors import UserError

    try:
        from engine.instrument import Engine
    except ImportError as exc:
        return None, f"The engine could not be imported: {exc}."
    try:
        return Engine(weights, device=device, vocoder=vocoder), ""
    except UserError as exc:   # CheckpointError: missing, corrupt or mismatched weights
        return None, f"{exc}."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    problem = qt_refcount_problem()
    if problem:
        print(f"hypergan-sampler: error: {problem}", file=sys.stderr)
        return 2
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.audio_output import AudioOutput, SoundDeviceBackend
    from app.main_window import MainWindow
    from app.midi_input import MidoBackend
    from app.settings import AppSettings, default_settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("HyperGANStrument Sampler")
    engine, error = load_engine(args.weights, args.device, args.vocoder)
    store = QSettings(str(args.settings), QSettings.IniFormat) if args.settings else default_settings()
    audio = AudioOutput(_NoAudio() if args.no_audio else SoundDeviceBackend())
    window = MainWindow(engine, error, audio, _NoMidi() if args.no_midi else MidoBackend(), AppSettings(store))
    window.resize(1180, 760)
    window.show()
    window.start(restore_samples=args.load is None and args.open is None)
    for slot, path in zip(("A", "B", "C", "D"), args.load or []):
        window.instrument.load(slot, path)
    if args.pad:
        x, _, y = args.pad.partition(",")
        window.pad.set_position(float(x), float(y))
    if args.open is not None:
        window.files.open(window, args.open)
    if args.screenshot is not None:
        def shoot() -> None:
            window.grab().save(str(args.screenshot))
            window.close()
        QTimer.singleShot(args.screenshot_delay, shoot)
    code = app.exec()
    window.shutdown()
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
