"""Stop each stage midway, resume it, and compare with an uninterrupted run, on any device.

Tiny networks on the tiny synthetic set (models/data/tiny.py), the stages' own ``train``. On
the CPU the two runs agree bit for bit (tests/test_train_resume.py asserts it); on CUDA cuDNN's
autotuned and atomic kernels are not deterministic, so this reports how far apart they end up
and checks that the CUDA paths of saving and resuming run.

    python -m bench.resume_check --device cuda
    python -m bench.resume_check --device cpu --stages gan,features --moments float32
"""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from models.train import common, resume
from models.train.cli import train_stage
from models.data.tiny import QUICK, TINY_STAGES, tiny_noteset, tiny_weights


def train(stage: str, data, weights: Path, out: Path, steps: int, device: str, moments: str) -> None:
    opts = common.RunOptions(minutes=5, max_steps=steps, tiny=True, device=device, weights=str(weights),
                             overrides=QUICK + TINY_STAGES[stage] + (f"moments_dtype={moments}",))
    with contextlib.redirect_stdout(io.StringIO()):  # the stages' progress lines
        train_stage(stage, data, out, opts)


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, str, int]:
    """Largest |difference| of the weights (and its key), and how many tensors differ at all."""
    worst, where, differ = 0.0, "", 0
    for k in a:
        if k.startswith(("rng.", "optim.")) or not a[k].is_floating_point() or a[k].numel() == 0:
            continue
        diff = float((a[k].double() - b[k].double()).abs().max())
        differ += diff > 0
        if diff > worst:
            worst, where = diff, k
    return worst, where, differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--stages", default=",".join(TINY_STAGES))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--stop", type=int, default=4)
    parser.add_argument("--moments", default="float32", choices=sorted(resume.MOMENTS_DTYPES))
    args = parser.parse_args(argv)
    data = tiny_noteset(n_instruments=4, keys=range(45, 81, 6), valid_instruments=1)
    print("| stage | max abs weight difference | at | tensors that differ | seconds |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        weights = tiny_weights(Path(tmp) / "weights", len(data.instruments))
        for stage in args.stages.split(","):
            start = time.perf_counter()
            straight, stopped = Path(tmp) / stage / "straight", Path(tmp) / stage / "stopped"
            train(stage, data, weights, straight, args.steps, args.device, args.moments)
            train(stage, data, weights, stopped, args.stop, args.device, args.moments)
            train(stage, data, weights, stopped, args.steps - args.stop, args.device, args.moments)
            (a, _), (b, meta) = resume.load_state(straight, "state"), resume.load_state(stopped, "state")
            assert int(meta["step"]) == args.steps and a.keys() == b.keys(), stage
            worst, where, differ = compare(a, b)
            print(f"| {stage} | {worst:.3g} | {where or '-'} | {differ} | {time.perf_counter() - start:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
