"""Griffin-Lim quality and speed per mel preset.

    OMP_NUM_THREADS=1 python -m bench.bench_inversion                 # SC table + 88-note timing
    OMP_NUM_THREADS=1 python -m bench.bench_inversion --no-timing     # SC only

Spectral convergence (SC, lower is better) of eight test notes after inversion, per preset and
variant; "oracle" runs the same Griffin-Lim from the true linear magnitude (the floor the mel loses
nothing to). Timing: 88 notes (keys 21..108) of each preset's length in one call, median of
``--repeats`` runs, as process CPU seconds (what one uncontended core would take) and wall seconds.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from models.signal.mel import PAPER_MEL, SHIPPED_MEL, TINY_MEL, GriffinLim, LogMel, MelConfig
from models.signal.tones import additive_tone, noisy_pluck, plucked_string
from models.units import ALL_KEYS

PRESETS = {"SHIPPED": SHIPPED_MEL, "PAPER": PAPER_MEL, "TINY": TINY_MEL}
NOTES = ["tone 33", "tone 60", "tone 84", "pluck 33", "pluck 60", "pluck 84", "saw 45", "noisy 52"]
VARIANTS = {
    "default (32 it)": dict(),
    "16 it": dict(n_iter=16),
    "no mel projection": dict(project_mel=False),
    "project every 4th": dict(project_every=4),
}


def test_notes(cfg: MelConfig) -> torch.Tensor:
    """The eight NOTES as ``[8, num_samples]``."""
    n, rate = cfg.num_samples, cfg.sample_rate
    dur = n / rate + 0.01
    waves = [additive_tone(k, rate, dur, decay_s=1.0) for k in (33, 60, 84)]
    waves += [plucked_string(k, rate, dur) for k in (33, 60, 84)]
    waves += [additive_tone(45, rate, dur, n_harmonics=400, decay_s=1.0), noisy_pluck(52, rate, dur)]
    return torch.from_numpy(np.stack([w[:n] for w in waves]))


def convergence(cfg: MelConfig, ref: torch.Tensor, est: torch.Tensor) -> np.ndarray:
    """Per-note SC ``[B]``."""
    analysis = LogMel(cfg)
    a, b = analysis.magnitude(ref), analysis.magnitude(est)
    return ((a - b).flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1).clamp_min(1e-12)).numpy()


class OracleGriffinLim(GriffinLim):
    """Same iterations from the true linear magnitude: what is lost to the mel, what to the phase."""

    def __init__(self, cfg: MelConfig, waves: torch.Tensor) -> None:
        super().__init__(cfg, project_mel=False, chunk=len(waves))
        self.true_mag = LogMel(cfg).magnitude(waves)

    def linear_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.true_mag


def quality_table() -> None:
    print("| preset | variant | " + " | ".join(NOTES) + " | mean |")
    print("|---" * (len(NOTES) + 3) + "|")
    for name, cfg in PRESETS.items():
        waves = test_notes(cfg)
        log_mel = LogMel(cfg)(waves)
        rows = {label: GriffinLim(cfg, **kw) for label, kw in VARIANTS.items()}
        rows["oracle (true magnitude)"] = OracleGriffinLim(cfg, waves)
        for label, inverter in rows.items():
            sc = convergence(cfg, waves, inverter(log_mel))
            print(f"| {name} | {label} | " + " | ".join(f"{v:.3f}" for v in sc) + f" | {sc.mean():.3f} |", flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timing(repeats: int) -> None:
    print(f"\n88 notes per call, median of {repeats}; torch threads {torch.get_num_threads()}")
    print("| preset | variant | CPU s | wall s |")
    print("|---|---|---|---|")
    for name, cfg in PRESETS.items():
        n = cfg.num_samples
        waves = torch.from_numpy(np.stack([additive_tone(k, cfg.sample_rate, n / cfg.sample_rate + 0.01,
                                                         decay_s=1.0)[:n] for k in ALL_KEYS]))
        log_mel = LogMel(cfg)(waves)
        for label in ("default (32 it)", "no mel projection"):
            inverter = GriffinLim(cfg, **VARIANTS[label])
            inverter(log_mel[:2])  # warm-up
            cpu, wall = [], []
            for _ in range(repeats):
                c0, w0 = cpu_seconds(), time.perf_counter()
                inverter(log_mel)
                cpu.append(cpu_seconds() - c0)
                wall.append(time.perf_counter() - w0)
            print(f"| {name} | {label} | {np.median(cpu):.1f} | {np.median(wall):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        if not args.no_quality:
            quality_table()
        if not args.no_timing:
            timing(args.repeats)


if __name__ == "__main__":
    main()
