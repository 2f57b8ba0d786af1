"""Synthetic test tones (seeded): harmonic and additive tones, a Karplus-Strong pluck, a noisy pluck.

Used by the tests and the benchmarks; nothing here is read from a file or the network.
"""
from __future__ import annotations

import numpy as np

from models.units import midi_to_hz


def harmonic_tone(midi: float, sample_rate: int = 16000, duration_s: float = 1.0, n_harmonics: int = 12,
                  decay_s: float | None = None, seed: int = 0) -> np.ndarray:
    """A sum of harmonics (1/k amplitudes, seeded phases) with an optional exponential decay."""
    return additive_tone(midi, sample_rate, duration_s, n_harmonics=n_harmonics, decay_s=decay_s, seed=seed)


def additive_tone(midi: float, sample_rate: int = 16000, duration_s: float = 1.0, n_harmonics: int = 12,
                  first: int = 1, step: int = 1, power: float = 1.0, stretch: float = 0.0,
                  decay_s: float | None = None, seed: int = 0) -> np.ndarray:
    """Partials k = first, first+step, ... (amplitude 1/k**power, seeded phases) below Nyquist.

    ``stretch`` is the inharmonicity B of a stiff string: partial k sits at k·f0·sqrt(1 + B·k²).
    Sawtooth: n_harmonics large; square: step 2; missing fundamental: first 2.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    f0 = midi_to_hz(midi)
    wave = np.zeros_like(t)
    for k in range(first, first + step * n_harmonics, step):
        f = k * f0 * np.sqrt(1.0 + stretch * k * k)
        if f >= sample_rate / 2:
            break
        wave += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / k ** power
    if decay_s is not None:
        wave *= np.exp(-t / decay_s)
    attack = min(len(t), int(0.005 * sample_rate))
    wave[:attack] *= np.linspace(0, 1, attack)
    return (0.8 * wave / max(np.abs(wave).max(), 1e-12)).astype(np.float32)


def plucked_string(midi: float, sample_rate: int = 16000, duration_s: float = 1.0, seed: int = 0,
                   damping: float = 0.996) -> np.ndarray:
    """Karplus-Strong pluck: a noise burst through a damped delay line (fractional delay by interpolation).

    The two-point average in the loop delays by half a sample, so the delay line is half a sample
    shorter than the period.
    """
    rng = np.random.default_rng(seed)
    period = sample_rate / midi_to_hz(midi) - 0.5
    n = int(duration_s * sample_rate)
    delay = int(period)
    frac = period - delay
    out = np.zeros(n + delay)
    burst = rng.uniform(-1, 1, delay + 2)
    out[: delay + 2] = burst - burst.mean()  # DC would ring on in the loop long after the note
    # Sample i depends only on samples >= delay older, so compute the loop `delay` samples at a time.
    for start in range(delay + 2, n, delay):
        i = np.arange(start, min(start + delay, n))
        current = (1 - frac) * out[i - delay] + frac * out[i - delay - 1]
        previous = (1 - frac) * out[i - delay - 1] + frac * out[i - delay - 2]
        # Averaging two neighbours low-passes the loop: each pass dulls the string, as in a real pluck.
        out[i] = damping * 0.5 * (current + previous)
    out = out[:n]
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


def noisy_pluck(midi: float, sample_rate: int = 16000, duration_s: float = 1.0, seed: int = 0) -> np.ndarray:
    """A decaying harmonic tone under a loud 20 ms noise burst (a pick or hammer attack)."""
    rng = np.random.default_rng(seed)
    wave = additive_tone(midi, sample_rate, duration_s, n_harmonics=20, power=1.5, decay_s=0.4, seed=seed)
    burst = int(0.02 * sample_rate)
    wave[:burst] += (1.5 * rng.standard_normal(burst) * np.linspace(1, 0, burst)).astype(np.float32)
    return (0.8 * wave / np.abs(wave).max()).astype(np.float32)
