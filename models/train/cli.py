"""``hypergan train STAGE``: each stage lives in its own module as ``train(data, out, opts)``."""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

# stage -> (module, help)
STAGES: dict[str, tuple[str, str]] = {
    "features": ("models.train.features", "S1: the pitch-invariant feature extractor f"),
    "eval-classifiers": ("models.train.eval_classifiers", "the evaluation pitch and instrument classifiers"),
    "gan": ("models.train.gan", "S2: GANStrument G and D with instance conditioning"),
    "hyper-pre": ("models.train.hyper_pre", "S3: the hypernetwork H with L_pre (G, f frozen)"),
    "hyper-adv": ("models.train.hyper_adv", "S4: H and D adversarially"),
    "vocoder": ("models.train.vocoder", "the neural mel vocoder"),
    "vocoder-distill": ("models.train.vocoder_distill", "a narrower vocoder learning the trained one's magnitude"),
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every stage takes."""
    parser.add_argument("--data", required=True, help="dataset folder (hypergan data build)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, state, metrics.jsonl, plots")
    parser.add_argument("--minutes", type=float, default=9.0, help="wall-clock training budget")
    parser.add_argument("--weights", default=None,
                        help="folder with earlier stages' weights (features.safetensors, generator.safetensors, ...)")
    parser.add_argument("--init", help="start from these weights (e.g. the shipped assets) instead of scratch")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config fields, e.g. --set lr=1e-4 net.h_dim=128")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--tiny", action="store_true", help="tiny networks (tests, smoke runs)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (module_name, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_stage_module=module_name)
        add_common_arguments(p)


def run(args: argparse.Namespace) -> int:
    from models.train import common

    module = importlib.import_module(args._stage_module)
    module.train(common.load_data(args.data), Path(args.out), common.RunOptions.from_args(args))
    return 0
