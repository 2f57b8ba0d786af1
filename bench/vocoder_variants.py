"""Where the vocoder's mel L1 comes from, and inference-only step variants that lower it.

The CPU path's mel L1 against Griffin-Lim 32's: the mel error on held-out real notes split by
level (relative to each clip's loudest mel bin), for variants of the weightless steps after the
network. A variant is ``R/P`` (the vocoder's refine / fine projections) followed by ``+`` ops:
``cKxN[pE]`` N projections on a K x coarser grid (over-relaxed: ratio ** E), ``f`` one fine
projection, ``oE`` one over-relaxed fine projection, ``g`` a silence gate. "s" is wall time
(compare within one run only).

    python -m bench.vocoder_variants --data DATA --vocoder assets/vocoder.safetensors --device cuda
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch

from models.signal.mel import GriffinLim, LogMel
from models.nets.vocoder import load_vocoder
from models.signal.stft import multi_resolution_stft
from models.evaluation.vocoder_quality import pick_notes, pitch_hits, _pitched

# Levels relative to each clip's loudest mel bin, natural-log units (20 dB = ln 10).
EDGES = (-math.inf, -4 * math.log(10), -2.5 * math.log(10), -1 * math.log(10), math.inf)
EDGE_NAMES = ("< -80 dB", "-80..-50", "-50..-20", "> -20 dB")


def gate(net, wave: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
    """Zero the samples under frames whose every mel band is at the floor (smoothed over a hop)."""
    m = net.cfg.mel
    silent = (log_mel <= m.log_min + 1e-3).all(dim=1).float()  # [B, F]
    keep = 1.0 - silent
    # a frame is centred at t * hop; interpolate the keep mask to samples
    env = torch.nn.functional.interpolate(keep[:, None], size=wave.shape[-1], mode="linear", align_corners=True)[:, 0]
    return wave * env


def make_variant(net, name: str):
    def run(log_mel: torch.Tensor) -> torch.Tensor:
        parts = name.split("+")
        base = parts[0]  # "r/p"
        r, p = (int(n) for n in base.split("/"))
        # the base's projections on the mel's own grid (models/README.md "Vocoder" compares these)
        net.schedule = dataclasses.replace(net.schedule.with_steps(r, p), mel_hop_factor=1, cuda_mel_hop_factor=1)
        wave = net(log_mel)
        for op in parts[1:]:
            if op.startswith("c"):  # c2x3: 3 projections at hop x2; c4x6p1.5: over-relaxed (ratio^1.5)
                factor, rest = op[1:].split("x")
                count, _, power = rest.partition("p")
                for _ in range(int(count)):
                    wave = net.bands.project(wave, log_mel, int(factor), float(power or 1.0))
            elif op.startswith("o"):  # o1.3: one over-relaxed fine projection
                wave = net.bands.project(wave, log_mel, 1, float(op[1:]))
            elif op == "f":
                wave = net.bands.project(wave, log_mel)
            elif op == "g":
                wave = gate(net, wave, log_mel)
            else:
                raise ValueError(op)
        return wave
    return run


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--vocoder", required=True)
    parser.add_argument("--splits", type=int, nargs="+", default=[2])
    parser.add_argument("--max-notes", type=int, default=192)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", nargs="+", default=["1/2", "1/2+g", "1/2+c2x2", "1/2+c4x4", "1/2+c2x2+f",
                                                           "1/3", "2/4", "4/32"])
    parser.add_argument("--pitch", action="store_true")
    args = parser.parse_args()
    from models.train.common import load_data

    data = load_data(args.data)
    dev = torch.device(args.device)
    index = pick_notes(data, tuple(args.splits), args.max_notes, 0)
    ref = torch.from_numpy(np.asarray(data.audio)[index].astype(np.float32) / 32768.0)
    mels = torch.from_numpy(np.asarray(data.mels)[index].astype(np.float32))
    midi = np.asarray(data.pitch)[index]
    pitched = _pitched(data, index)
    net = load_vocoder(args.vocoder, dev)
    analysis = LogMel(data.mel_cfg).to(dev)
    ref_mel = torch.cat([analysis(r.to(dev)) for r in ref.split(32)])
    rel = ref_mel - ref_mel.amax(dim=(1, 2), keepdim=True)
    floor = ref_mel <= data.mel_cfg.log_min + 1e-3
    print(f"{len(index)} notes of splits {args.splits}; share of bins per level: "
          + ", ".join(f"{n} {float(((rel >= lo) & (rel < hi)).float().mean()):.3f}" for n, lo, hi
                      in zip(EDGE_NAMES, EDGES[:-1], EDGES[1:])) + f"; at floor {float(floor.float().mean()):.3f}")
    print("| variant | mel L1 | " + " | ".join(EDGE_NAMES) + " | MR-STFT | pitch | s |")
    print("|---|---|" + "---|" * len(EDGE_NAMES) + "---|---|---|")
    gl = GriffinLim(data.mel_cfg, n_iter=32).to(dev)
    inverters = {name: make_variant(net, name) for name in args.variants}
    inverters["Griffin-Lim 32"] = gl
    for name, inv in inverters.items():
        start = time.perf_counter()
        waves = torch.cat([inv(m.to(dev)) for m in mels.split(4)])
        seconds = time.perf_counter() - start
        est_mel = torch.cat([analysis(w) for w in waves.split(32)])
        err = (est_mel - ref_mel).abs()
        # contribution of each level to the overall mean
        contrib = [float((err * ((rel >= lo) & (rel < hi))).sum() / err.numel()) for lo, hi in zip(EDGES[:-1], EDGES[1:])]
        sc, lm = multi_resolution_stft(ref.to(dev), waves)
        pitch = ""
        if args.pitch and pitched.any():
            pitch = f"{pitch_hits(waves.cpu()[pitched], midi[pitched], data.mel_cfg.sample_rate).mean():.3f}"
        print(f"| {name} | {float(err.mean()):.4f} | " + " | ".join(f"{c:.4f}" for c in contrib)
              + f" | {float((sc + lm).mean()):.3f} | {pitch} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
