"""``hypergan data``: build, show or check the NSynth-like training set."""
from __future__ import annotations

import argparse
import os
import sys

EXAMPLES = """examples:
  hypergan data build --out data/nsynth_like --workers 16
  hypergan data build --out /tmp/tiny --sources timgm6mb,procedural --mel tiny --limit-instruments 4
  hypergan data show data/nsynth_like --out data/nsynth_like/show
  hypergan data check-fonts   (needs fluidsynth; writes models/data/font_check.json)
  hypergan data slim-fonts --out carry/fonts   (only the presets a build renders, resampled, Ogg Vorbis)
  hypergan data check-fonts --slimmed carry/fonts   (after slim-fonts: what the transcoded copies lose)
"""


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from models.data.build import BuildConfig
    from models.data.sources import DEFAULT_SOURCES, PROCEDURAL
    from models.data.transcode import TranscodeConfig

    FONT_DEFAULTS = [s for s in DEFAULT_SOURCES if s != PROCEDURAL]

    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="render, filter and store the set (resumable)")
    b.add_argument("--out", required=True, help="data folder (finished instruments there are reused)")
    b.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                   help="comma list of musescore, timgm6mb, gmbank, fluidr3, procedural, or .sf2/.sf3 paths")
    b.add_argument("--folder", help="instead of the sources: a folder of your own one-shots/multisamples")
    b.add_argument("--mel", default="shipped", choices=("shipped", "tiny", "paper"))
    b.add_argument("--velocities", type=_ints, default=(60, 95, 127))
    b.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    b.add_argument("--limit-instruments", type=int, default=0, help="per source, evenly spread; 0 = all")
    b.add_argument("--procedural-count", type=int, default=BuildConfig.procedural_count)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--keep-audio", action="store_true", help="also store int16 audio")
    b.add_argument("--keep-parts", action="store_true", help="keep the per-instrument parts after assembly")
    b.add_argument("--font-dir", help="folder(s, ':'-separated) holding the .sf2/.sf3 files; default: "
                                      "$HYPERGAN_FONTS, carry/fonts, /usr/share/sounds/sf3, /usr/share/sounds/sf2")
    b.add_argument("--no-font-check", action="store_true",
                   help="render presets that the fluidsynth reference check marked as wrong")
    b.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    s = sub.add_parser("show", help="contact sheets (PNG) and a few WAVs of a built set")
    s.add_argument("data", help="a built data folder")
    s.add_argument("--out", required=True, help="folder for the PNGs and WAVs")
    s.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("slim-fonts", help="write the fonts cut down to the presets a build renders")
    m.add_argument("--out", required=True, help="folder for the slimmed fonts (same file names)")
    m.add_argument("--sources", default=",".join(FONT_DEFAULTS))
    m.add_argument("--font-dir", default="/usr/share/sounds/sf3:/usr/share/sounds/sf2",
                   help="where the original fonts are (default: the Debian packages' folders)")
    m.add_argument("--copy", action="store_true",
                   help="copy the kept samples bit for bit (notes identical, ~5x larger) instead of transcoding")
    m.add_argument("--max-rate", type=int, default=22050, help="resample samples above this rate (Hz)")
    m.add_argument("--ogg-quality", type=float, default=0.4, help="Vorbis quality 0..1; 0 = keep PCM (SF2)")
    m.add_argument("--pcm-below", type=int, default=TranscodeConfig.pcm_below_semitones,
                   help="samples played this many semitones or more below their root stay PCM")
    c = sub.add_parser("check-fonts", help="compare tinysoundfont with fluidsynth on every preset")
    c.add_argument("--sources", default=",".join(FONT_DEFAULTS))
    c.add_argument("--font-dir", default="/usr/share/sounds/sf3:/usr/share/sounds/sf2",
                   help="where the original fonts are (default: the Debian packages' folders, never carry/fonts)")
    c.add_argument("--out", help="JSON verdicts (default: models/data/font_check.json, updated in place)")
    c.add_argument("--slimmed", help="folder of slimmed fonts: tinysoundfont plays those, fluidsynth the "
                                     "originals; the verdicts join each original's entry (its 'slimmed' drops)")
    c.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_build(args: argparse.Namespace) -> int:
    from models.data.build import BuildConfig, build, make_plan

    if args.folder:
        from models.data.folder import FolderConfig, build_folder

        build_folder(FolderConfig(folder=args.folder, out=args.out, mel=args.mel, seed=args.seed,
                                  keep_audio=args.keep_audio), progress=_say)
        return 0
    cfg = BuildConfig(out=args.out, sources=tuple(s for s in args.sources.split(",") if s), mel=args.mel,
                      velocities=args.velocities, seed=args.seed, procedural_count=args.procedural_count,
                      limit_instruments=args.limit_instruments, workers=args.workers, keep_audio=args.keep_audio,
                      keep_parts=args.keep_parts, font_dir=args.font_dir, use_font_check=not args.no_font_check)
    _say(f"config: {cfg}")
    if args.dry_run:
        plan = make_plan(cfg)
        for spec in plan.instruments:
            _say(f"  {spec.name}  [{spec.family}] {len(spec.notes)} notes")
        _say(f"{len(plan.instruments)} instruments, {sum(len(s.notes) for s in plan.instruments)} notes")
        for source, skipped in plan.skipped.items():
            _say(f"{source}: left out " + ", ".join(f"{len(v)} {k}" for k, v in skipped.items()))
        return 0
    build(cfg, progress=_say)
    return 0


def run_slim(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models.data.build import BuildConfig, make_plan
    from models.data.slim import slim_font
    from models.data.transcode import TranscodeConfig

    transcode = None if args.copy else TranscodeConfig(max_rate=args.max_rate, ogg=args.ogg_quality > 0,
                                                        ogg_quality=args.ogg_quality,
                                                        pcm_below_semitones=args.pcm_below)
    plan = make_plan(BuildConfig(out="-", sources=tuple(args.sources.split(",")), font_dir=args.font_dir))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for source, info in plan.fonts.items():
        keep = {(s.bank, s.program) for s in plan.instruments if s.source == source}
        # A transcoded font is an SF3 whatever it was (sources.find_font accepts either extension).
        sf3 = info.is_sf3 or (transcode is not None and transcode.ogg)
        dst = out / (Path(info.path).stem + (".sf3" if sf3 else ".sf2"))
        for stale in (out / (Path(info.path).stem + ext) for ext in (".sf2", ".sf3")):
            if stale != dst and stale.exists():
                stale.unlink()  # an earlier slimming's other format would be found first
        if Path(info.path).resolve() == dst.resolve():
            _say(f"{source}: {dst} is already the build's font; left as it is")
            continue
        slim_font(info.path, keep, dst, transcode)
        _say(f"{source}: {len(keep)} presets, {info.size_bytes} -> {dst.stat().st_size} bytes: {dst}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.data_command == "build":
        return run_build(args)
    if args.data_command == "show":
        from models.data.show import show

        for path in show(args.data, args.out, seed=args.seed):
            _say(str(path))
        return 0
    if args.data_command == "slim-fonts":
        return run_slim(args)
    if args.data_command == "check-fonts":
        from models.data.reference import check_fonts

        check_fonts(tuple(args.sources.split(",")), args.font_dir, args.out, args.workers, progress=_say,
                    slimmed_dir=args.slimmed)
        return 0
    print(f"unknown action {args.data_command}", file=sys.stderr)
    return 2
