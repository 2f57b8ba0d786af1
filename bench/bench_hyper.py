"""H's size and CPU cost at the shipped configs: parameters, float16 bytes, and the time per input
of the hypernetwork path (f + G + f + H, done once per loaded sample) against one G forward.

    OMP_NUM_THREADS=1 python bench/bench_hyper.py [--threads 1] [--repeats 5] [--keys 88]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from models import checkpoint
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.nets.hyper import HyperConfig, HyperNetwork, refine, zero_z
from models.signal.mel import SHIPPED_MEL
from models.units import LOWEST_KEY, N_KEYS


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up (seconds)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fp16_bytes(net: torch.nn.Module) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.safetensors"
        checkpoint.save(path, net, {}, dtype=torch.float16)
        return path.stat().st_size


def variants(G: Generator, h_dim: int) -> dict[str, HyperConfig]:
    base = HyperConfig.shipped(G.modulated_layers(), h_dim)
    return {
        "shipped": base,
        "rank 1": dataclasses.replace(base, rank=1),
        "rank 8": dataclasses.replace(base, rank=8),
        "unshared heads": dataclasses.replace(base, shared_heads=False),
        "all layers": HyperConfig.shipped(G.modulated_layers(), h_dim, skip_coarse=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keys", type=int, default=88, help="keys rendered in one batch for the render timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    f = FeatureExtractor(FeatureExtractor.Config.shipped(SHIPPED_MEL)).eval()
    G = Generator(Generator.Config.shipped(SHIPPED_MEL)).eval()
    x = torch.randn(1, SHIPPED_MEL.n_mels, SHIPPED_MEL.n_frames) - 4
    midi = torch.tensor([60])
    with torch.no_grad():
        h = f(x)
    h_dim = h.shape[1]
    print(f"mel grid {SHIPPED_MEL.n_mels}x{SHIPPED_MEL.n_frames}, h_dim {h_dim}, {args.threads} thread(s)")
    print(f"G modulated layers: {G.modulated_layers()}")
    print("\n| H variant | layers | params | float16 MiB | H alone ms |\n|---|---|---|---|---|")
    H_by_name = {}
    for name, cfg in variants(G, h_dim).items():
        H = HyperNetwork(cfg).eval()
        H_by_name[name] = H
        params = sum(p.numel() for p in H.parameters())
        with torch.no_grad():
            t_h = best_time(lambda: H(h, h), args.repeats)
        print(f"| {name} | {len(cfg.layers)} | {params:,} | {fp16_bytes(H) / 2**20:.2f} | {t_h * 1e3:.1f} |")
    H = H_by_name["shipped"]
    z = zero_z(G, 1, h.device)
    keys = torch.arange(LOWEST_KEY, LOWEST_KEY + min(args.keys, N_KEYS))
    hk, zk = h.expand(len(keys), -1), zero_z(G, len(keys), h.device)
    with torch.no_grad():
        deltas = refine(G, f, H, h, midi)
        deltas_k = {k: v.expand(len(keys), -1, -1) for k, v in deltas.items()}
        t_f = best_time(lambda: f(x), args.repeats)
        t_g = best_time(lambda: G(h, z, midi), args.repeats)
        t_prep = best_time(lambda: refine(G, f, H, f(x), midi), args.repeats)
        t_keys = best_time(lambda: G(hk, zk, keys), max(1, args.repeats // 2))
        t_keys_h = best_time(lambda: G(hk, zk, keys, deltas_k), max(1, args.repeats // 2))
    print("\n| step (one input, CPU) | ms |\n|---|---|")
    print(f"| f(x) | {t_f * 1e3:.1f} |")
    print(f"| G(h, 0, p) | {t_g * 1e3:.1f} |")
    print(f"| H path: f + G + f + H | {t_prep * 1e3:.1f} |")
    print(f"| H path minus G alone (the paper's 'added time') | {(t_prep - t_g) * 1e3:.1f} |")
    print(f"| {len(keys)} keys, G alone | {t_keys * 1e3:.1f} |")
    print(f"| {len(keys)} keys, G with H's offsets | {t_keys_h * 1e3:.1f} |")


if __name__ == "__main__":
    main()
