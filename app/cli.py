"""The ``hypergan`` command: one entry point, subcommands dispatched lazily to their owning module.

Each owning module defines ``add_arguments(parser)`` and ``run(args) -> int | None``. Nothing heavy
is imported until a subcommand is chosen, so ``hypergan --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (owning module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("models.data.cli", "build or show the NSynth-like training set"),
    "train": ("models.train.cli", "train a stage: features, gan, hyper-pre, hyper-adv, eval-classifiers, vocoder"),
    "eval": ("models.evaluation.table1", "the paper's Table 1 on held-out instruments"),
    "render": ("engine.render_cli", "turn a one-shot into an 88-key multisample pack"),
    "inspect": ("models.inspect_cli", "print the config and provenance stored in a weights file"),
}

EPILOG = """examples:
  hypergan render assets/demo/pluck.wav --out packs/
  hypergan data build --out data/nsynth_like --sources timgm6mb,procedural
  hypergan train gan --data data/nsynth_like --minutes 9 --out runs/gan
"""


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser | None, str | None]:
    parser = argparse.ArgumentParser(prog="hypergan", description="HyperGANStrument sampler tools.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    chosen_parser = None
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            chosen_parser = p
    return parser, chosen_parser, chosen


def main(argv: list[str] | None = None) -> int:
    from models.errors import UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser, chosen_parser, chosen = build_parser(argv)
    module = None
    if chosen in COMMANDS and chosen_parser is not None:
        module = importlib.import_module(COMMANDS[chosen][0])
        module.add_arguments(chosen_parser)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"hypergan {chosen}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
