"""``hypergan render``: turn a one-shot (or a mix of two) into an 88-key multisample pack."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import AudioFileError, UserError

if TYPE_CHECKING:   # the engine loads torch: imported when a command runs, not for --help
    from engine.instrument import Engine, Sample
    from engine.key_cache import Variations
    from engine.refine import RefineConfig

EXAMPLES = """examples:
  hypergan render pluck.wav --out packs/
  hypergan render pluck.wav --mix organ.wav --alpha 0.3 --keys 36-96 --out packs/ --name pluckorgan --format all
  hypergan render voice.flac --out packs/ --format sfz,wav --vocoder griffinlim --force --refine 0
  hypergan render pluck.wav --out packs/ --round-robins 3 --velocity-layers 3 --format all
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("sample", help="the one-shot sound (wav, flac, ogg, aiff, ...)")
    parser.add_argument("--mix", metavar="SAMPLE_B", help="a second sound to blend with (timbre mix)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="share of SAMPLE_B's timbre in [0, 1] (default 0.5 with --mix)")
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
    parser.add_argument("--near-root", type=int, default=0, metavar="SEMITONES",
                        help="keys within this many semitones of the root play the sound itself, repitched "
                             "(cross-faded over two more keys; single sounds only; default 0: off)")
    parser.add_argument("--refine", default="1", metavar="STRENGTH",
                        help="refine each sound's conditioning towards the sound before rendering: 0 (off) to 2, "
                             "1 the default refinement (a few seconds per sound on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: one per core)")
    parser.add_argument("--release", type=float, default=0.3, help="release time written to the pack (s)")
    parser.add_argument("--round-robins", type=int, default=1, metavar="N",
                        help="samples per key and velocity layer, played in turn: 1 (off) to 8; each is G's "
                             "noise and h moved slightly, like striking the same instrument again")
    parser.add_argument("--velocity-layers", type=int, default=1, metavar="N",
                        help="velocity layers: 1 (off) to 5; softer layers move the timbre along the velocity "
                             "direction learnt from real notes (duller, slower), on top of the velocity gain")


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


def default_name(sample: Path, mix: Path | None, alpha: float) -> str:
    if mix is None:
        return sample.stem
    return f"{sample.stem}_x_{mix.stem}_{round(100 * alpha):02d}"


def run(args: argparse.Namespace) -> int:
    from engine.export import check_formats, check_target, export_pack
    from engine.instrument import Engine, EngineConfig
    from engine.key_cache import Variations
    from engine.refine import DEFAULT_REFINEMENT
    from engine.variations import velocity_timbre_for

    keys = parse_keys(args.keys)
    refine = DEFAULT_REFINEMENT.at_strength(parse_strength(args.refine))
    refine = refine if refine.enabled else None
    if not 0 <= args.near_root <= 24:
        raise UserError(f"--near-root {args.near_root}: give 0 (off) to 24 semitones")
    formats = check_formats(args.format.split(","))
    if args.alpha is not None and args.mix is None:
        raise UserError("--alpha needs --mix SAMPLE_B")
    alpha = 0.5 if args.alpha is None else args.alpha
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha must lie within [0, 1], got {alpha}")
    variations = Variations(round_robins=args.round_robins, velocity_layers=args.velocity_layers)
    if args.rate < 8000 or args.rate > 192000:
        raise UserError(f"--rate {args.rate}: use a rate between 8000 and 192000 Hz")
    sample_path = Path(args.sample)
    mix_path = Path(args.mix) if args.mix else None
    name = args.name or default_name(sample_path, mix_path, alpha)
    for path in (sample_path, mix_path):
        if path is not None and path.is_dir():
            raise AudioFileError(f"{path} is a folder, not an audio file")
        if path is not None and not path.is_file():
            raise AudioFileError(f"no such file: {path}")
    check_target(args.out, name, args.force)      # fail before minutes of rendering, not after

    engine = Engine(args.weights, device=args.device, vocoder=args.vocoder,
                    cfg=EngineConfig(output_rate=args.rate), num_threads=args.threads)
    velocity_timbre_for(engine, variations)      # a missing velocity asset fails now, not after the keys
    a = engine.load_sample(sample_path, midi=args.root)
    b = engine.load_sample(mix_path) if mix_path else None
    for s in (a, b):
        if s is not None:
            how = "given" if s is a and args.root is not None else f"estimated, confidence {s.confidence:.2f}"
            print(f"{s.name}: root key {s.root_note} ({how})", file=sys.stderr)
    if refine is not None:
        refine_s = refine_sounds(engine, [s for s in (a, b) if s is not None], refine)
        print(f"refined in {refine_s:.1f} s ({refine.steps} steps per sound)", file=sys.stderr)
    progress = Progress(len(keys))
    rendered = engine.render(a, b, alpha, keys=keys, on_key=progress, refine=refine, near_root=args.near_root)
    progress.finish()
    print(f"first key {progress.first_s or 0:.2f} s, {len(rendered)} keys in "
          f"{time.perf_counter() - progress.start:.1f} s ({engine.nets.vocoder_name}, {engine.device})",
          file=sys.stderr)
    variants = render_variations(engine, (a, b, alpha), keys, variations, refine, args.near_root)
    pack = export_pack(rendered, name, args.out, formats=formats, force=args.force, release_s=args.release,
                       variants=variants, variations=variations)
    print(pack)
    return 0


def render_variations(engine: Engine, sounds: tuple, keys: list[int], variations: Variations,
                      refine: RefineConfig | None, near_root: int) -> dict:
    """The velocity layers and round robins beyond the main keys (progress on stderr); {} when off."""
    if variations.count == 1:
        return {}
    progress = Progress(len(keys) * (variations.count - 1), unit="samples")
    variants = engine.render_variations(*sounds, variations=variations, keys=keys, refine=refine, near_root=near_root,
                                        on_variant=lambda midi, layer, rr, key: progress(midi, key))
    progress.finish()
    print(f"{variations.velocity_layers} velocity layer(s) x {variations.round_robins} round robin(s): "
          f"{len(variants)} more samples in {time.perf_counter() - progress.start:.1f} s", file=sys.stderr)
    return variants
