"""Shared fixtures: synthesised sounds (seeded), never files from the network."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from models.audio import Audio  # noqa: E402


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def harmonic_tone(midi: float, sample_rate: int = 16000, duration_s: float = 1.0, n_harmonics: int = 12,
                  decay_s: float | None = None, seed: int = 0) -> np.ndarray:
    """A sum of harmonics (1/k amplitudes, seeded phases) with an optional exponential decay."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    f0 = midi_to_hz(midi)
    wave = np.zeros_like(t)
    for k in range(1, n_harmonics + 1):
        if k * f0 >= sample_rate / 2:
            break
        wave += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    if decay_s is not None:
        wave *= np.exp(-t / decay_s)
    attack = min(len(t), int(0.005 * sample_rate))
    wave[:attack] *= np.linspace(0, 1, attack)
    return (0.8 * wave / np.abs(wave).max()).astype(np.float32)


def plucked_string(midi: float, sample_rate: int = 16000, duration_s: float = 1.0, seed: int = 0) -> np.ndarray:
    """Karplus-Strong pluck: a noise burst through a damped delay line (fractional delay by interpolation)."""
    rng = np.random.default_rng(seed)
    period = sample_rate / midi_to_hz(midi)
    n = int(duration_s * sample_rate)
    delay = int(period)
    frac = period - delay
    buf = rng.uniform(-1, 1, delay + 2)
    out = np.zeros(n)
    out[: delay + 2] = buf
    for i in range(delay + 2, n):
        # Averaging two neighbours low-passes the loop: each pass dulls the string, as in a real pluck.
        current = (1 - frac) * out[i - delay] + frac * out[i - delay - 1]
        previous = (1 - frac) * out[i - delay - 1] + frac * out[i - delay - 2]
        out[i] = 0.996 * 0.5 * (current + previous)
    return (0.8 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture
def sine_a4() -> Audio:
    return Audio(harmonic_tone(69, n_harmonics=1), 16000)


@pytest.fixture
def tone_c4() -> Audio:
    return Audio(harmonic_tone(60, decay_s=0.8), 16000)


@pytest.fixture
def pluck_e2() -> Audio:
    return Audio(plucked_string(40), 16000)


@pytest.fixture
def silence() -> Audio:
    return Audio(np.zeros(16000, np.float32), 16000)


@pytest.fixture
def clipped() -> Audio:
    wave = np.clip(harmonic_tone(57) * 4, -1, 1).astype(np.float32)
    return Audio(wave, 16000)
