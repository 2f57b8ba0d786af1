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


VariantKey = tuple[int, int, int]   # (MIDI note, velocity layer, round robin)
MAX_ROUND_ROBINS = 8
MAX_VELOCITY_LAYERS = 5


@dataclass(frozen=True)
class Variations:
    """How many samples each key has: ``velocity_layers`` x ``round_robins`` (see engine/variations.py).

    Velocity layers split 1..127 into equal ranges, softest first. The layer holding
    ``reference_velocity`` (the level the loaded sound is taken to be played at) is the *main* layer:
    its round robin 0 is the plain render (z = 0, the sound's own h). Round robin ``i > 0`` moves h by
    ``rr_h_scale`` times a seeded direction and, if ``rr_z_scale`` > 0, sets G's noise input to a
    seeded z (G normalises z, so any non-zero scale is a whole new z: measured by
    ``bench/variations.py`` as further apart than neighbouring keys, hence off by default; h x 0.1
    stays well below them, docs/playing.md). Another layer tilts G's mel by the learnt velocity
    spectral tilt (``velocity_tilt`` scales it), lengthens its attack by the learnt ratio
    (``velocity_attack`` scales its logarithm) and can move h along the learnt velocity offsets
    (``velocity_strength``; off by default: ``bench/velocity_timbre.py`` found it follows the real
    notes worse than the tilt, engine/variations.py).
    """

    round_robins: int = 3
    velocity_layers: int = 3
    rr_z_scale: float = 0.0
    rr_h_scale: float = 0.1
    velocity_strength: float = 0.0
    velocity_tilt: float = 1.0
    velocity_attack: float = 1.0
    reference_velocity: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        from models.errors import UserError

        if not 1 <= self.round_robins <= MAX_ROUND_ROBINS:
            raise UserError(f"round robins: give 1 to {MAX_ROUND_ROBINS}, got {self.round_robins}")
        if not 1 <= self.velocity_layers <= MAX_VELOCITY_LAYERS:
            raise UserError(f"velocity layers: give 1 to {MAX_VELOCITY_LAYERS}, got {self.velocity_layers}")
        if not 1 <= self.reference_velocity <= 127:
            raise UserError(f"reference velocity: give 1 to 127, got {self.reference_velocity}")

    @property
    def count(self) -> int:
        """Samples per key."""
        return self.round_robins * self.velocity_layers

    def layer_range(self, layer: int) -> tuple[int, int]:
        """Velocities ``(lo, hi)`` (inclusive, within 1..127) that play ``layer``."""
        n = self.velocity_layers
        lo = 1 + (127 * layer) // n
        hi = (127 * (layer + 1)) // n
        return lo, hi

    def layer_of(self, velocity: int) -> int:
        """The layer a note-on ``velocity`` (0..127; 0 counts as 1) plays."""
        v = min(max(int(velocity), 1), 127)
        return next(layer for layer in range(self.velocity_layers) if v <= self.layer_range(layer)[1])

    def layer_blend(self, velocity: int) -> tuple[int, int, float]:
        """``(lower, upper, share)``: a velocity cross-fade plays ``lower`` at ``1 - share`` and ``upper``
        at ``share``, linear in velocity between the layers' render velocities (``layer_velocity``);
        below the softest or above the loudest, that layer alone (``share`` 0)."""
        v = min(max(int(velocity), 1), 127)
        at = [self.layer_velocity(layer) for layer in range(self.velocity_layers)]
        for layer in range(self.velocity_layers - 1):
            if at[layer] <= v < at[layer + 1]:
                return layer, layer + 1, (v - at[layer]) / (at[layer + 1] - at[layer])
        return (0, 0, 0.0) if v < at[0] else (self.velocity_layers - 1, self.velocity_layers - 1, 0.0)

    @property
    def main_layer(self) -> int:
        return self.layer_of(self.reference_velocity)

    def layer_velocity(self, layer: int) -> int:
        """The velocity a layer is rendered at: the reference in the main layer, else the range's middle."""
        if layer == self.main_layer:
            return self.reference_velocity
        lo, hi = self.layer_range(layer)
        return (lo + hi + 1) // 2

    def passes(self) -> list[tuple[int, int]]:
        """Every ``(layer, round robin)`` but the main one, in render order: the other layers' first
        round robins (nearest the main layer first), then the further round robins layer by layer."""
        main = self.main_layer
        layers = sorted(range(self.velocity_layers), key=lambda l: (abs(l - main), l))  # noqa: E741
        return [(l, r) for r in range(self.round_robins) for l in layers if (l, r) != (main, 0)]  # noqa: E741


PLAIN = Variations(round_robins=1, velocity_layers=1)   # one sample per key: the plain render
