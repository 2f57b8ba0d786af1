"""``hypergan train STAGE``: each stage lives in its own module as ``train(data, out, opts)``."""
from __future__ import annotations

import argparse
from pathlib import Path

STAGE_HELP = {
    "features": "S1: the pitch-invariant feature extractor f",
    "eval-classifiers": "the evaluation pitch and instrument classifiers",
    "gan": "S2: GANStrument G and D with instance conditioning",
    "hyper-pre": "S3: the hypernetwork H with L_pre (G, f frozen)",
    "hyper-adv": "S4: H and D adversarially",
    "vocoder": "the neural mel vocoder",
    "vocoder-distill": "a narrower vocoder learning the trained one's magnitude",
}

EXAMPLES = """examples:
  hypergan train features --data data/set --out runs/features --minutes 9
  hypergan train gan --data data/set --out runs/gan --weights runs/features --set batch_size=128 G.w_dim=256
  hypergan train vocoder --data data/set --out runs/vocoder --dry-run
"""


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every stage takes."""
    parser.add_argument("--data", required=True, help="dataset folder (hypergan data build)")
    parser.add_argument("--out", required=True, help="run folder: state (resumed if present), metrics.jsonl, plots")
    parser.add_argument("--minutes", type=float, default=9.0, help="wall-clock training budget")
    parser.add_argument("--weights", default=None,
                        help="folder with earlier stages' weights (features.safetensors, generator.safetensors, ...)")
    parser.add_argument("--init", help="start from these weights (e.g. the shipped assets) instead of scratch")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config fields, e.g. --set lr=1e-4 net.h_dim=128 (unknown keys are errors)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--tiny", action="store_true", help="tiny networks (tests, smoke runs)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, help_text in STAGE_HELP.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_arguments(p)


def train_stage(stage: str, data, out: Path, opts) -> dict[str, float]:
    """Train one stage. Imports stay inside: a stage's import pulls in its networks and evaluation."""
    if stage == "features":
        from models.train.features import train
    elif stage == "eval-classifiers":
        from models.train.eval_classifiers import train
    elif stage == "gan":
        from models.train.gan import train
    elif stage == "hyper-pre":
        from models.train.hyper_pre import train
    elif stage == "hyper-adv":
        from models.train.hyper_adv import train
    elif stage == "vocoder":
        from models.train.vocoder import train
    elif stage == "vocoder-distill":
        from models.train.vocoder_distill import train
    else:
        raise ValueError(f"unknown stage {stage!r}")
    return train(data, out, opts)

def run(args: argparse.Namespace) -> int:
    from models.train import common

    train_stage(args.stage, common.load_data(args.data), Path(args.out), common.RunOptions.from_args(args))
    return 0
