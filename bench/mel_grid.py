"""Choose the shipped mel grid by measurement: key separability, inversion quality and cost.

    OMP_NUM_THREADS=1 python -m bench.mel_grid              # all candidates, markdown to stdout
    OMP_NUM_THREADS=1 python -m bench.mel_grid --quick      # fewer timbres/keys, a smoke run

(a) Separability: synthetic notes of several timbres at every key 21..108; each note's time-averaged
log-mel (centred, unit norm) is matched to its nearest neighbour among the *other* timbres' notes;
accuracy of the neighbour's key, per 12-key band. A grid that blurs neighbouring low keys fails here.
(b) Inversion: spectral convergence after Griffin-Lim (32 iterations) of a harmonic tone and a pluck
at keys 33, 60 and 84. (c) Cost: mel size, empty mel filters, Griffin-Lim seconds for 88 notes.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import resource
import time
import warnings

import numpy as np
import torch

from models.signal.mel import GriffinLim, LogMel, MelConfig, spectral_convergence
from models.signal.tones import additive_tone, plucked_string
from models.units import ALL_KEYS

BANDS = [(21, 32), (33, 44), (45, 56), (57, 68), (69, 80), (81, 92), (93, 108)]
BASE = MelConfig(sample_rate=16000, hop_length=128, n_frames=256, f_max=8000.0)


def candidates() -> list[MelConfig]:
    grids = []
    for n_fft, n_mels, scale, f_min in itertools.product((1024, 2048), (128, 160, 256), ("htk", "slaney"), (0.0, 20.0)):
        grids.append(dataclasses.replace(BASE, n_fft=n_fft, win_length=n_fft, n_mels=n_mels, mel_scale=scale, f_min=f_min))
    for n_mels in (192, 224):
        grids.append(dataclasses.replace(BASE, n_fft=2048, win_length=2048, n_mels=n_mels))
    # The paper's window (1024) zero-padded to 2048, at our hop and frame count, for reference.
    grids.append(dataclasses.replace(BASE, n_fft=2048, win_length=1024, n_mels=256))
    return grids


def timbres(n: int) -> dict[str, callable]:
    """Note makers ``midi -> float32 wave of n samples``: different spectral shapes, same keys."""
    def cut(w: np.ndarray) -> np.ndarray:
        return np.pad(w, (0, max(0, n - w.size)))[:n]
    dur = n / 16000 + 0.01
    return {
        "saw": lambda m: cut(additive_tone(m, duration_s=dur, n_harmonics=400, decay_s=1.0)),
        "square": lambda m: cut(additive_tone(m, duration_s=dur, n_harmonics=200, step=2, decay_s=1.5)),
        "soft": lambda m: cut(additive_tone(m, duration_s=dur, n_harmonics=30, power=2.0, decay_s=0.8)),
        "pluck": lambda m: cut(plucked_string(m, duration_s=dur)),
        "stretched": lambda m: cut(additive_tone(m, duration_s=dur, n_harmonics=40, stretch=2e-4, decay_s=0.6)),
        "no_f0": lambda m: cut(additive_tone(m, duration_s=dur, n_harmonics=40, first=2, power=0.7, decay_s=1.0)),
    }


def note_bank(keys: list[int], names: list[str], n: int) -> torch.Tensor:
    """Waves ``[n_timbres, n_keys, n]``."""
    makers = timbres(n)
    return torch.stack([torch.stack([torch.from_numpy(makers[t](k)) for k in keys]) for t in names])


def note_vectors(cfg: MelConfig, waves: torch.Tensor) -> torch.Tensor:
    """``[N, n]`` waves -> ``[N, n_mels]``: log-mel averaged over the sounding frames (within 30 dB of
    the loudest), with its smooth envelope removed (a moving average over n_mels/16 bands), so that
    what is compared is the harmonic pattern, not the timbre's spectral tilt. Centred, unit norm."""
    with torch.no_grad():
        mel = LogMel(cfg)(waves).double()  # [N, M, F]
    level = torch.logsumexp(mel, dim=1)  # [N, F] log of the frame's summed mel magnitude
    sounding = (level >= level.max(dim=1, keepdim=True).values - np.log(10 ** 1.5)).double()
    vec = (mel * sounding[:, None]).sum(dim=2) / sounding.sum(dim=1, keepdim=True)
    w = max(3, cfg.n_mels // 16) | 1
    smooth = torch.nn.functional.avg_pool1d(
        torch.nn.functional.pad(vec[:, None], (w // 2, w // 2), mode="replicate"), w, 1)[:, 0]
    vec = vec - smooth
    vec = vec - vec.mean(dim=1, keepdim=True)
    return vec / vec.norm(dim=1, keepdim=True).clamp_min(1e-12)


def separability(cfg: MelConfig, waves: torch.Tensor, keys: list[int]) -> tuple[list[float], float]:
    """Leave-one-timbre-out nearest-neighbour key accuracy per band, and overall."""
    n_t, n_k, _ = waves.shape
    vec = note_vectors(cfg, waves.reshape(n_t * n_k, -1))
    sim = vec @ vec.T  # [T*K, T*K] cosine similarity
    timbre = torch.arange(n_t).repeat_interleave(n_k)
    key = torch.tensor(keys).repeat(n_t)
    sim[timbre[:, None] == timbre[None, :]] = -2.0  # only other timbres are templates
    correct = (key[sim.argmax(dim=1)] == key).float()
    per_band = []
    for lo, hi in BANDS:
        sel = (key >= lo) & (key <= hi)
        per_band.append(float(correct[sel].mean()) if sel.any() else float("nan"))
    return per_band, float(correct.mean())


def inversion(cfg: MelConfig, n_iter: int = 32) -> list[float]:
    """Spectral convergence of Griffin-Lim on [tone 33, tone 60, tone 84, pluck 33, pluck 60, pluck 84]."""
    n = cfg.num_samples
    dur = n / cfg.sample_rate + 0.01
    waves = [additive_tone(k, duration_s=dur, decay_s=1.0)[:n] for k in (33, 60, 84)]
    waves += [plucked_string(k, duration_s=dur)[:n] for k in (33, 60, 84)]
    x = torch.from_numpy(np.stack(waves))
    with torch.no_grad():
        rebuilt = GriffinLim(cfg, n_iter=n_iter)(LogMel(cfg)(x))
    return [spectral_convergence(x[i: i + 1], rebuilt[i: i + 1], cfg) for i in range(x.shape[0])]


def griffin_lim_seconds(cfg: MelConfig, n_notes: int = 88, repeats: int = 1) -> tuple[float, float]:
    """(process CPU s, wall s) of Griffin-Lim (32 iterations) for ``n_notes`` real notes, median."""
    n = cfg.num_samples
    waves = torch.from_numpy(np.stack([additive_tone(k, duration_s=n / 16000 + 0.01, decay_s=1.0)[:n]
                                       for k in range(21, 21 + n_notes)]))
    mel = LogMel(cfg)(waves)
    inverter = GriffinLim(cfg, n_iter=32)
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = _cpu(), time.perf_counter()
        inverter(mel)
        cpu.append(_cpu() - c0)
        wall.append(time.perf_counter() - w0)
    return float(np.median(cpu)), float(np.median(wall))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def empty_filters(cfg: MelConfig) -> int:
    return int((LogMel(cfg).fb.sum(dim=0) == 0).sum())


def label(cfg: MelConfig) -> str:
    win = "" if cfg.win_length == cfg.n_fft else f"/w{cfg.win_length}"
    return f"{cfg.n_fft}{win} × {cfg.n_mels} {cfg.mel_scale} f_min {cfg.f_min:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 timbres, every 3rd key, no timing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="At least one mel filterbank")
    keys = list(ALL_KEYS[::3] if args.quick else ALL_KEYS)
    names = ["saw", "pluck", "soft"] if args.quick else list(timbres(16).keys())
    waves = note_bank(keys, names, BASE.num_samples)
    print(f"timbres: {', '.join(names)}; keys {keys[0]}..{keys[-1]} ({len(keys)}); threads {args.threads}\n")
    print("| grid (n_fft × n_mels scale f_min) | " + " | ".join(f"{lo}–{hi}" for lo, hi in BANDS)
          + " | all | SC tone 33/60/84 | SC pluck 33/60/84 | empty filters |")
    print("|---" * (len(BANDS) + 5) + "|")
    for cfg in candidates():
        bands, total = separability(cfg, waves, keys)
        sc = inversion(cfg)
        print(f"| {label(cfg)} | " + " | ".join(f"{b:.2f}" for b in bands) + f" | {total:.2f} | "
              + "/".join(f"{s:.2f}" for s in sc[:3]) + " | " + "/".join(f"{s:.2f}" for s in sc[3:])
              + f" | {empty_filters(cfg)} |", flush=True)
    if not args.quick:
        print("\nGriffin-Lim (32 iterations) for 88 notes (keys 21..108), process CPU s / wall s:")
        for n_fft, n_mels in ((1024, 128), (1024, 256), (2048, 128), (2048, 256)):
            cfg = dataclasses.replace(BASE, n_fft=n_fft, win_length=n_fft, n_mels=n_mels)
            cpu, wall = griffin_lim_seconds(cfg)
            print(f"  n_fft {n_fft} × {n_mels} mels: {cpu:.1f} / {wall:.1f}", flush=True)


if __name__ == "__main__":
    main()
