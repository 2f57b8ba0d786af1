"""FLOPs (one sample, forward) and parameters of every network at its shipped config.

    python -m bench/model_cost.py        # or: python bench/model_cost.py [--time]

FLOPs are counted by torch.utils.flop_counter (a multiply-add = 2 FLOPs; convs and matmuls only).
G is counted in eval mode with offsets for every modulated layer (the inference path).
``--time`` also times G on this CPU at batch 1 and 8 (fp32, 1 thread unless OMP_NUM_THREADS).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.nets.classifiers import InstrumentClassifier, PitchClassifier  # noqa: E402
from models.nets.discriminator import Discriminator  # noqa: E402
from models.nets.features import FeatureExtractor  # noqa: E402
from models.nets.generator import Generator  # noqa: E402
from models.signal.mel import SHIPPED_MEL, MelConfig  # noqa: E402


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def g_inputs(G: Generator, batch: int) -> tuple:
    c = G.cfg
    deltas = {n: torch.zeros(batch, *s) for n, s in G.modulated_layers().items()}
    return (torch.randn(batch, c.h_dim), torch.zeros(batch, c.z_dim), torch.full((batch,), 60), deltas)


def table(mel: MelConfig) -> list[tuple[str, int, float, float]]:
    """(name, params, GFLOP per sample, fp16 MiB) per network."""
    x = torch.randn(1, mel.n_mels, mel.n_frames) - 4
    midi = torch.tensor([60])
    G = Generator(Generator.Config.shipped(mel)).eval()
    f = FeatureExtractor(FeatureExtractor.Config.shipped(mel)).eval()
    D = Discriminator(Discriminator.Config.shipped(mel)).eval()
    P = PitchClassifier(PitchClassifier.Config.shipped(mel)).eval()
    inst = InstrumentClassifier(InstrumentClassifier.Config.shipped(mel)).eval()
    rows = [
        ("G (eval, with offsets)", G, lambda: G(*g_inputs(G, 1))),
        ("f", f, lambda: f(x)),
        ("D", D, lambda: D(x, midi, torch.randn(1, D.cfg.h_dim))),
        ("PitchClassifier", P, lambda: P(x)),
        ("InstrumentClassifier", inst, lambda: inst(x)),
    ]
    return [(name, params(net), flops(fn) / 1e9, params(net) * 2 / 2 ** 20) for name, net, fn in rows]


def time_generator(mel: MelConfig, batch: int, repeats: int = 3) -> float:
    G = Generator(Generator.Config.shipped(mel)).eval()
    args = g_inputs(G, batch)
    with torch.no_grad():
        G(*args)
        start = time.perf_counter()
        for _ in range(repeats):
            G(*args)
    return (time.perf_counter() - start) / repeats / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", action="store_true", help="also time G per key on this CPU")
    args = parser.parse_args()
    mel = SHIPPED_MEL
    print(f"mel grid {mel.n_mels} x {mel.n_frames} (n_fft {mel.n_fft}, hop {mel.hop_length})")
    print(f"{'network':26s} {'params':>10s} {'GFLOP/sample':>13s} {'fp16 MiB':>9s}")
    for name, n, gf, mib in table(mel):
        print(f"{name:26s} {n:10,d} {gf:13.2f} {mib:9.1f}")
    G = Generator(Generator.Config.shipped(mel))
    print(f"G modulated layers: {len(G.modulated_layers())}, offset entries "
          f"{sum(a * b for a, b in G.modulated_layers().values()):,}")
    if args.time:
        for batch in (1, 8):
            print(f"G CPU time per key at batch {batch}: {time_generator(mel, batch) * 1e3:.0f} ms "
                  f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
