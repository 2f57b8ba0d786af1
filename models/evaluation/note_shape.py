"""Two plain descriptors of a note's dynamics: brightness (spectral centroid) and attack time.

Louder strikes of real instruments are brighter and start faster; these are what velocity layers
are checked by (``bench/velocity_timbre.py``). Level-free: waves are peak-normalised first.
"""
from __future__ import annotations

import numpy as np

from models.evaluation.fidelity import FRAME_S, active_frames, frame_rms, peak_normalised


def spectral_centroid_hz(wave: np.ndarray, rate: int, n_fft: int = 1024, hop: int = 256) -> float:
    """Power-weighted mean frequency over the sounding frames (within 40 dB of the loudest), in Hz."""
    x = peak_normalised(wave).astype(np.float64)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                      # [F, n_fft / 2 + 1]
    loud = active_frames(np.pad(x, (0, hop)), hop)[: len(power)]
    loud = np.pad(loud, (0, len(power) - len(loud)))
    power = power[loud] if loud.any() else power
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    total = power.sum()
    return float((power @ freqs).sum() / total) if total > 0 else 0.0


def attack_time_s(wave: np.ndarray, rate: int, lo: float = 0.1, hi: float = 0.9) -> float:
    """Seconds from the 10 ms RMS envelope first reaching ``lo`` of its peak to first reaching ``hi``."""
    hop = max(1, int(FRAME_S * rate))
    env = frame_rms(wave, hop)
    if env.size == 0 or env.max() <= 0:
        return 0.0
    env = env / env.max()
    start = int(np.argmax(env >= lo))
    end = int(np.argmax(env >= hi))
    return max(0, end - start) * hop / rate
