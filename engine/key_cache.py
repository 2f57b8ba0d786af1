"""What the voice mixer plays: one rendered sample per MIDI key, stored at the output device's rate."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KeySample:
    """A rendered key: mono float32 samples at ``sample_rate`` with a sustain loop.

    ``loop_start``/``loop_end`` are sample indices (end exclusive) of a click-free loop region in the
    decay, used while the key is held; ``root_note`` is the MIDI note the samples sound at (a key not
    yet rendered may temporarily play a neighbour's sample, resampled by the semitone ratio).
    """

    samples: np.ndarray
    sample_rate: int
    root_note: int
    loop_start: int
    loop_end: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.float32 or self.samples.ndim != 1:
            raise ValueError("KeySample samples must be mono float32 [T]")
        if not 0 <= self.loop_start < self.loop_end <= len(self.samples):
            raise ValueError(f"loop [{self.loop_start}, {self.loop_end}) outside the sample of {len(self.samples)}")


def nearest_key(keys: Mapping[int, KeySample], midi_note: int) -> KeySample | None:
    """The rendered key closest to ``midi_note`` (ties: the lower key), or None if none is rendered.

    A voice plays it at the ratio ``2 ** ((midi_note - found.root_note) / 12)`` until the key's own
    render lands.
    """
    if not keys:
        return None
    best = min(keys, key=lambda k: (abs(k - midi_note), k))
    return keys[best]
