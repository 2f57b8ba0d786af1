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
"""


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from models.data.sources import DEFAULT_SOURCES

    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="render, filter and store the set (resumable)")
    b.add_argument("--out", required=True, help="data folder (finished instruments there are reused)")
    b.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                   help="comma list of musescore, timgm6mb, gmbank, fluidr3, procedural")
    b.add_argument("--folder", help="instead of the sources: a folder of your own one-shots/multisamples")
    b.add_argument("--mel", default="shipped", choices=("shipped", "tiny", "paper"))
    b.add_argument("--velocities", type=_ints, default=(60, 95, 127))
    b.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    b.add_argument("--limit-instruments", type=int, default=0, help="per source, evenly spread; 0 = all")
    b.add_argument("--procedural-count", type=int, default=300)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--keep-audio", action="store_true", help="also store int16 audio")
    b.add_argument("--keep-parts", action="store_true", help="keep the per-instrument parts after assembly")
    b.add_argument("--font-dir", help="folder holding the .sf2/.sf3 files (else carry/fonts, system dirs)")
    b.add_argument("--no-font-check", action="store_true",
                   help="render presets that the fluidsynth reference check marked as wrong")
    b.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    s = sub.add_parser("show", help="contact sheets (PNG) and a few WAVs of a built set")
    s.add_argument("data", help="a built data folder")
    s.add_argument("--out", required=True, help="folder for the PNGs and WAVs")
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("check-fonts", help="compare tinysoundfont with fluidsynth on every preset")
    c.add_argument("--sources", default="musescore,timgm6mb,gmbank")
    c.add_argument("--font-dir")
    c.add_argument("--out", help="JSON verdicts (default: models/data/font_check.json)")
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


def run(args: argparse.Namespace) -> int:
    if args.data_command == "build":
        return run_build(args)
    if args.data_command == "show":
        from models.data.show import show

        for path in show(args.data, args.out, seed=args.seed):
            _say(str(path))
        return 0
    if args.data_command == "check-fonts":
        from models.data.reference import check_fonts

        check_fonts(tuple(args.sources.split(",")), args.font_dir, args.out, args.workers, progress=_say)
        return 0
    print(f"unknown action {args.data_command}", file=sys.stderr)
    return 2
