"""Bytes of the GAN stage's complete resume state at the shipped G + D (random init, CPU).

Adam's state is filled by one step on zero gradients (no forward pass needed to count bytes); the
state is written by the loop's own ``Run.save`` and then cast as ``restore_state.sh`` does for
carrying.

    OMP_NUM_THREADS=1 python -m bench.gan_state_size
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from models.nets.discriminator import Discriminator
from models.nets.generator import Generator
from models.runs.state import cast_state
from models.signal.mel import SHIPPED_MEL
from models.train import resume
from models.train.common import RunOptions
from models.train.gan import GanTrainConfig
from models.train.loop import Run, Stage

MIB = 2**20


def filled_adam(net: torch.nn.Module, cfg: GanTrainConfig) -> torch.optim.Adam:
    opt = torch.optim.Adam(net.parameters(), lr=cfg.g_lr, betas=(cfg.beta1, cfg.beta2))
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return opt


def describe(paths: list[Path]) -> str:
    sizes = [p.stat().st_size for p in paths]
    tensors, _ = resume.load_state(paths[0].parent, "state")
    parts: dict[str, int] = {}
    for k, v in tensors.items():
        group = "optim." + k.rsplit(".", 1)[1] if k.startswith("optim.") else k.split(".")[0]
        parts[group] = parts.get(group, 0) + v.numel() * v.element_size()
    detail = ", ".join(f"{k} {v / MIB:.1f}" for k, v in sorted(parts.items()) if v >= 0.05 * MIB)
    return f"{sum(sizes) / MIB:5.1f} MiB in {len(paths)} files (largest {max(sizes) / MIB:.2f} MiB): {detail}"


def main() -> int:
    torch.manual_seed(0)
    G, D = Generator(Generator.Config.shipped(SHIPPED_MEL)), Discriminator(Discriminator.Config.shipped(SHIPPED_MEL))
    G_ema = copy.deepcopy(G)
    print(f"G {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters, "
          f"D {sum(p.numel() for p in D.parameters()) / 1e6:.2f} M")
    for moments in ("float32", "bfloat16"):
        cfg = GanTrainConfig(moments_dtype=moments)
        run = Run(RunOptions(device="cpu"), cfg)
        opts = {"G": filled_adam(G, cfg), "D": filled_adam(D, cfg)}
        stage = Stage("gan", cfg, {"G": G, "D": D, "ema": G_ema}, lambda step, gen: {}, opts)
        with tempfile.TemporaryDirectory() as tmp:
            run.save(stage, Path(tmp) / "full", 1, torch.Generator())
            print(f"moments {moments:8s}  as saved:             {describe(sorted((Path(tmp) / 'full').glob('*')))}")
            half = cast_state(Path(tmp) / "full", Path(tmp) / "half", torch.float16)
            print(f"{'':17s}  float16 weights:      {describe(half)}")
            bare = cast_state(Path(tmp) / "full", Path(tmp) / "bare", torch.float16, weights_only=True)
            print(f"{'':17s}  float16, weights only: {describe(bare)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
