"""Shared fixtures: synthesised sounds (seeded), never files from the network."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from models.signal.audio import Audio  # noqa: E402
from models.signal.tones import harmonic_tone, plucked_string  # noqa: E402


@pytest.fixture
def one_torch_thread():
    """Torch on one intra-op thread for the test (timing-sensitive CPU paths), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
