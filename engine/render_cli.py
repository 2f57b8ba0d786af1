"""``hypergan render``: turn a one-shot (or a mix of several) into an 88-key multisample pack."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import AudioFileError, UserError

if TYPE_CHECKING:   # the engine loads torch: imported when a command runs, not for --help
    from engine.instrument import Engine, Sample
    from engine.instrument_file import SavedInstrument
    from engine.key_cache import Variations
    from engine.mix import Mix
    from engine.refine import RefineConfig

EXAMPLES = """examples:
  hypergan render pluck.wav --out packs/
  hypergan render pluck.wav --mix organ.wav --alpha 0.3 --keys 36-96 --out packs/ --name pluckorgan --format all
  hypergan render pluck.wav --mix organ.wav:0.3 --mix voice.wav:0.2 --out packs/   # pluck gets the other 0.5
  hypergan render --instrument my_pad.hgi --out packs/     # a saved instrument: its sounds, mix and settings
  hypergan render voice.flac --out packs/ --format sfz,wav --vocoder griffinlim --force --refine 0
  hypergan render pluck.wav --out packs/ --round-robins 3 --velocity-layers 3 --format all
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("sample", nargs="?", help="the one-shot sound (wav, flac, ogg, aiff, ...)")
    parser.add_argument("--instrument", metavar="FILE", default=None,
                        help="render a saved instrument (.hgi) instead: its sounds, mix, roots, refinement, "
                             "near-root setting, release, velocity layers and round robins (options given "
                             "here win)")
    parser.add_argument("--mix", metavar="SOUND[:WEIGHT]", action="append", default=None,
                        help="a sound to blend with, and its share of the timbre in [0, 1]; repeat for more "
                             "sounds (the first sound gets what the others leave)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="with one --mix without a weight: its share in [0, 1] (default 0.5)")
    parser.add_argument("--keys", default="21-108", help="MIDI keys: a range '21-108', a list '48,60,72' or both")
    parser.add_argument("--out", required=True, help="folder to write the pack folder into")
    parser.add_argument("--format", default="sfz,dspreset",
                        help="instrument files, comma separated: sfz, dspreset, sf2, multisample, wav or all "
                             "(WAVs are always written)")
    parser.add_argument("--weights", default=None, help="weights folder (default: the shipped assets/)")
    parser.add_argument("--vocoder", choices=("auto", "griffinlim", "neural"), default="auto",
                        help="mel inversion (auto: the neural vocoder if its weights exist)")
    parser.add_argument("--name", default=None, help="pack name (default: from the sample file names)")
    parser.add_argument("--force", action="store_true", help="replace an existing pack of the same name")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate of the pack's WAVs (Hz)")
    parser.add_argument("--root", type=float, default=None, help="the sample's pitch as MIDI (skip estimation)")
    parser.add_argument("--near-root", type=int, default=None, metavar="SEMITONES",
                        help="keys within this many semitones of the root play the sound itself, repitched "
                             "(cross-faded over two more keys; single sounds only; default 0: off)")
    parser.add_argument("--refine", default=None, metavar="STRENGTH",
                        help="refine each sound's conditioning towards the sound before rendering: 0 (off) to 2, "
                             "1 the default refinement (a few seconds per sound on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    parser.add_argument("--release", type=float, default=None, help="release time written to the pack (s; default 0.3)")
    parser.add_argument("--round-robins", type=int, default=None, metavar="N",
                        help="samples per key and velocity layer, played in turn: 1 (off, the default) to 8; each "
                             "is G's noise and h moved slightly, like striking the same instrument again")
    parser.add_argument("--velocity-layers", type=int, default=None, metavar="N",
                        help="velocity layers: 1 (off, the default) to 5; softer layers move the timbre along the "
                             "velocity direction learnt from real notes (duller, slower), on top of the velocity gain")


def parse_keys(text: str) -> list[int]:
    """'21-108' / '48,60,72' / '36-48,60' -> sorted MIDI notes within 21..108."""
    keys: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-")
            lo_i, hi_i = int(lo), int(hi) if hi else int(lo)
            if lo_i > hi_i:
                raise ValueError
            keys.update(range(lo_i, hi_i + 1))
    except ValueError:
        raise UserError(f"--keys {text!r}: use MIDI numbers like 21-108 or 48,60,72") from None
    if not keys or min(keys) < 21 or max(keys) > 108:
        raise UserError(f"--keys {text!r}: keys must lie within 21-108")
    return sorted(keys)


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, width: int = 30, unit: str = "keys") -> None:
        self.total, self.width, self.done, self.unit = total, width, 0, unit
        self.start = time.perf_counter()
        self.first_s: float | None = None

    def __call__(self, midi: int, _key: object) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        if self.first_s is None:
            self.first_s = elapsed
        filled = self.width * self.done // self.total
        line = f"rendering [{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} {self.unit}  {elapsed:5.1f} s"
        if sys.stderr.isatty():
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif self.done == self.total or (10 * self.done) // self.total > (10 * (self.done - 1)) // self.total:
            print(line, file=sys.stderr, flush=True)   # a log file gets a line per tenth

    def finish(self) -> None:
        if sys.stderr.isatty():
            print(file=sys.stderr, flush=True)


def parse_strength(text: str) -> float:
    """``--refine`` text -> a strength in [0, 2]."""
    try:
        strength = float(text)
    except ValueError:
        strength = float("nan")
    if not 0.0 <= strength <= 2.0:   # also refuses nan
        raise UserError(f"--refine {text!r}: give a strength from 0 (off) to 2; 1 is the default refinement")
    return strength


def refine_sounds(engine: Engine, sounds: list[Sample], cfg: RefineConfig) -> float:
    """Refine each sound (progress on stderr, a line per sound in a log); returns the seconds it took."""
    start = time.perf_counter()
    for sound in sounds:
        if not engine.refinement_cached(sound, cfg):
            engine.refined(sound, cfg, progress=lambda step, steps, name=sound.name: _refine_line(name, step, steps))
    return time.perf_counter() - start


def _refine_line(name: str, step: int, steps: int) -> None:
    line = f"refining {name}: step {step}/{steps}"
    if sys.stderr.isatty():
        print("\r" + line, end="\n" if step == steps else "", file=sys.stderr, flush=True)
    elif step == steps:
        print(line, file=sys.stderr, flush=True)


def parse_mix(entries: list[str] | None, alpha: float | None) -> list[tuple[Path, float]]:
    """``--mix`` (and ``--alpha``) -> [(sound, weight)] of the sounds mixed into the first one.

    ``--mix b.wav:0.3 --mix c.wav:0.2`` gives each sound its weight; the older ``--mix b.wav
    [--alpha 0.3]`` gives one sound ``alpha`` (default 0.5). The weights may add up to at most 1.
    """
    entries = entries or []
    if alpha is not None and not entries:
        raise UserError("--alpha needs --mix SAMPLE_B")
    parsed = [_split_weight(text) for text in entries]
    if len(parsed) == 1 and parsed[0][1] is None:
        share = 0.5 if alpha is None else alpha
        if not 0.0 <= share <= 1.0:
            raise UserError(f"--alpha must lie within [0, 1], got {share}")
        return [(parsed[0][0], share)]
    if alpha is not None:
        raise UserError("--alpha goes with one --mix SOUND; with weights give each --mix SOUND:WEIGHT")
    missing = [str(path) for path, weight in parsed if weight is None]
    if missing:
        raise UserError(f"--mix {missing[0]}: with several --mix sounds give each a weight, e.g. --mix {missing[0]}:0.3")
    total = math.fsum(weight for _, weight in parsed)
    if total > 1.0 + 1e-9:
        raise UserError(f"the --mix weights add up to {total:g}; they may add up to at most 1 "
                        "(the first sound gets the rest)")
    return [(path, float(weight)) for path, weight in parsed]


def _split_weight(text: str) -> tuple[Path, float | None]:
    """'b.wav:0.3' -> (b.wav, 0.3); 'b.wav' (or a file whose name holds a colon) -> (b.wav, None)."""
    path, sep, tail = text.rpartition(":")
    if not sep or Path(text).is_file() or "/" in tail or "\\" in tail:
        return Path(text), None
    try:
        weight = float(tail)
    except ValueError:
        raise UserError(f"--mix {text}: the weight {tail!r} is not a number (use SOUND:0.3)") from None
    if not 0.0 <= weight <= 1.0:   # also refuses nan
        raise UserError(f"--mix {text}: the weight must lie within [0, 1]")
    return Path(path), weight


def default_name(sample: Path, mix: list[tuple[Path, float]]) -> str:
    """'pluck', 'pluck_x_organ_30', 'pluck_x_organ_30_x_voice_20'."""
    return "".join([sample.stem] + [f"_x_{path.stem}_{round(100 * weight):02d}" for path, weight in mix])


def open_saved(args: argparse.Namespace) -> SavedInstrument | None:
    """The ``--instrument`` file, read and checked (None without one); refuses sounds given beside it."""
    if args.instrument is None:
        if args.sample is None:
            raise UserError("give a SAMPLE to render, or --instrument FILE")
        return None
    if args.sample is not None or args.mix or args.alpha is not None or args.root is not None:
        raise UserError("--instrument FILE brings its own sounds, mix and roots: leave out SAMPLE, --mix, "
                        "--alpha and --root")
    from engine.instrument_file import open_instrument

    return open_instrument(args.instrument)


def settings(args: argparse.Namespace, saved: SavedInstrument | None) -> tuple[RefineConfig | None, int, float]:
    """(refinement or None, near-root semitones, release s): the options given, else the saved instrument's."""
    from engine.keys import MAX_NEAR_ROOT
    from engine.refine import DEFAULT_REFINEMENT

    strength = parse_strength(args.refine) if args.refine is not None else saved.refine_strength if saved else 1.0
    refine = DEFAULT_REFINEMENT.at_strength(strength)
    near_root = args.near_root if args.near_root is not None else saved.near_root if saved else 0
    if not 0 <= near_root <= MAX_NEAR_ROOT:
        raise UserError(f"--near-root {near_root}: give 0 (off) to {MAX_NEAR_ROOT} semitones")
    release = args.release if args.release is not None else saved.envelope.release_s if saved else 0.3
    return (refine if refine.enabled else None), near_root, release


def variations_of(args: argparse.Namespace, saved: SavedInstrument | None) -> Variations:
    """Velocity layers and round robins: the counts given, else the saved instrument's, else none.

    The saved instrument's other variation settings (seed, how far round robins move) stay as saved.
    """
    from dataclasses import replace

    from engine.key_cache import PLAIN

    base = saved.variations if saved is not None else PLAIN
    counts = {name: getattr(args, name) for name in ("round_robins", "velocity_layers")
              if getattr(args, name) is not None}
    return replace(base, **counts)


def saved_mix(engine: Engine, saved: SavedInstrument) -> Mix:
    """The saved instrument's sounds (at their roots) and weights, as the engine's Mix."""
    from engine.instrument_file import load_sound
    from engine.mix import Mix

    weights = saved.weights()
    sounds = [load_sound(engine, sound)[1] for sound in saved.sounds]
    for sound, s in zip(saved.sounds, sounds):
        how = "saved" if sound.root is not None else f"detected, confidence {sound.confidence:.2f}"
        print(f"{s.name}: root key {s.root_note} ({how}), weight {weights[sound.slot]:.2f}", file=sys.stderr)
    return Mix.of(sounds, [weights[sound.slot] for sound in saved.sounds])


def files_mix(engine: Engine, args: argparse.Namespace, mix_paths: list[tuple[Path, float]]) -> Mix:
    """SAMPLE and the --mix sounds, loaded, with their weights (SAMPLE gets the rest)."""
    from engine.mix import Mix

    a = engine.load_sample(Path(args.sample), midi=args.root)
    others = [engine.load_sample(path) for path, _ in mix_paths]
    for s in [a] + others:
        how = "given" if s is a and args.root is not None else f"estimated, confidence {s.confidence:.2f}"
        print(f"{s.name}: root key {s.root_note} ({how})", file=sys.stderr)
    weights = [w for _, w in mix_paths]
    return Mix.of([a] + others, [max(0.0, 1.0 - math.fsum(weights))] + weights)


def run(args: argparse.Namespace) -> int:
    from engine.export import check_formats, check_target, export_pack
    from engine.instrument import Engine, EngineConfig
    from engine.variations import velocity_timbre_for

    keys = parse_keys(args.keys)
    saved = open_saved(args)
    refine, near_root, release = settings(args, saved)
    formats = check_formats(args.format.split(","))
    mix_paths = parse_mix(args.mix, args.alpha)
    variations = variations_of(args, saved)
    if args.rate < 8000 or args.rate > 192000:
        raise UserError(f"--rate {args.rate}: use a rate between 8000 and 192000 Hz")
    if saved is None:
        name = args.name or default_name(Path(args.sample), mix_paths)
        for path in [Path(args.sample)] + [p for p, _ in mix_paths]:
            if path.is_dir():
                raise AudioFileError(f"{path} is a folder, not an audio file")
            if not path.is_file():
                raise AudioFileError(f"no such file: {path}")
    else:
        name = args.name or Path(args.instrument).stem
    check_target(args.out, name, args.force)      # fail before minutes of rendering, not after

    engine = Engine(args.weights, device=args.device, vocoder=args.vocoder,
                    cfg=EngineConfig(output_rate=args.rate), num_threads=args.threads)
    velocity_timbre_for(engine, variations)      # a missing velocity asset fails now, not after the keys
    mix = saved_mix(engine, saved) if saved is not None else files_mix(engine, args, mix_paths)
    if refine is not None:
        refine_s = refine_sounds(engine, list(mix.sounding().sounds), refine)
        print(f"refined in {refine_s:.1f} s ({refine.steps} steps per sound)", file=sys.stderr)
    progress = Progress(len(keys))
    rendered = engine.render(mix, keys=keys, on_key=progress, refine=refine, near_root=near_root)
    progress.finish()
    print(f"first key {progress.first_s or 0:.2f} s, {len(rendered)} keys in "
          f"{time.perf_counter() - progress.start:.1f} s ({engine.nets.vocoder_name}, {engine.device})",
          file=sys.stderr)
    variants = render_variations(engine, mix, keys, variations, refine, near_root)
    pack = export_pack(rendered, name, args.out, formats=formats, force=args.force, release_s=release,
                       variants=variants, variations=variations)
    print(pack)
    return 0


def render_variations(engine: Engine, mix: Mix, keys: list[int], variations: Variations,
                      refine: RefineConfig | None, near_root: int) -> dict:
    """The velocity layers and round robins of ``mix`` beyond the main keys (progress on stderr); {} when off."""
    if variations.count == 1:
        return {}
    progress = Progress(len(keys) * (variations.count - 1), unit="samples")
    variants = engine.render_variations(mix, variations=variations, keys=keys, refine=refine, near_root=near_root,
                                        on_variant=lambda midi, layer, rr, key: progress(midi, key))
    progress.finish()
    print(f"{variations.velocity_layers} velocity layer(s) x {variations.round_robins} round robin(s): "
          f"{len(variants)} more samples in {time.perf_counter() - progress.start:.1f} s", file=sys.stderr)
    return variants
