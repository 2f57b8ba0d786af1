"""Two plain descriptors of a note's dynamics: brightness (spectral centroid) and attack time.

Louder strikes of real instruments are brighter and start faster; these are what velocity layers
are checked by (``bench/velocity_timbre.py``). Level-free: waves are peak-normalised first.
"""
from __future__ import annotations

import numpy as np

from models.evaluation.fidelity import FRAME_S, peak_normalised
from models.signal.audio import active_frames


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


ENVELOPE_HOP_S = 0.001       # attack envelopes: 10 ms RMS windows every 1 ms


def attack_time_s(wave: np.ndarray, rate: int, lo: float = 0.1, hi: float = 0.9, window_s: float = FRAME_S,
                  hop_s: float = ENVELOPE_HOP_S) -> float:
    """Seconds from the RMS envelope (``window_s`` windows every ``hop_s``) first reaching ``lo`` of its
    peak to first reaching ``hi``, each crossing placed between envelope points by linear interpolation
    (10 ms non-overlapping frames alone quantise attacks to 10 ms)."""
    return envelope_attack_s(rms_envelope(wave, rate, window_s, hop_s), hop_s, lo, hi)


def envelope_attack_s(env: np.ndarray, hop_s: float, lo: float = 0.1, hi: float = 0.9) -> float:
    """``attack_time_s`` of an RMS envelope ``[n]`` sampled every ``hop_s`` (0 for a silent one)."""
    if env.size == 0 or env.max() <= 0:
        return 0.0
    env = env / env.max()
    return max(0.0, _crossing(env, hi) - _crossing(env, lo)) * hop_s


def rms_envelope(wave: np.ndarray, rate: int, window_s: float = FRAME_S, hop_s: float = ENVELOPE_HOP_S) -> np.ndarray:
    """RMS of ``window_s`` windows starting every ``hop_s`` ``[n]`` (none past the end)."""
    window, hop = max(1, int(round(window_s * rate))), max(1, int(round(hop_s * rate)))
    if wave.size < window:
        return np.zeros(0)
    power = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, wave.size - window + 1, hop)
    return np.sqrt(np.maximum(power[starts + window] - power[starts], 0.0) / window)


def _crossing(env: np.ndarray, level: float) -> float:
    """Fractional index where ``env`` (peak 1) first reaches ``level``."""
    i = int(np.argmax(env >= level))
    if i == 0:
        return 0.0
    return i - 1 + float((level - env[i - 1]) / max(env[i] - env[i - 1], 1e-12))
