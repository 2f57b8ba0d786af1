"""Audio as it travels through the product: samples with their rate attached."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Audio:
    """float32 samples in [-1, 1], mono ``[T]`` or multichannel ``[C, T]``, with their rate in Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.float32:
            raise TypeError(f"Audio samples must be float32, got {self.samples.dtype}")
        if self.samples.ndim not in (1, 2):
            raise ValueError(f"Audio samples must be [T] or [C, T], got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[-1])

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def is_mono(self) -> bool:
        return self.samples.ndim == 1

    def require_rate(self, sample_rate: int) -> None:
        """Raise if this audio is not at ``sample_rate`` (resampling happens only at named points)."""
        if self.sample_rate != sample_rate:
            raise ValueError(f"expected audio at {sample_rate} Hz, got {self.sample_rate} Hz")
