"""Timbre mixes of several sounds: the weights alpha_1..alpha_n over h (summing to 1), and the
bilinear weights of a four-corner morph pad (as NSynth Super's).

Plain Python: the engine blends conditionings by a :class:`Mix`; the app's pad and the CLI only
produce one.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.errors import UserError

if TYPE_CHECKING:
    from engine.instrument import Sample

CORNERS = ("A", "B", "C", "D")   # the pad's corners: top-left, top-right, bottom-left, bottom-right
CORNER_XY = {"A": (0.0, 0.0), "B": (1.0, 0.0), "C": (0.0, 1.0), "D": (1.0, 1.0)}
WEIGHT_TOLERANCE = 1e-6          # how far from 1 a mix's weights may add up


@dataclass(frozen=True)
class Mix:
    """Sounds and their weights ``alpha_i`` (each in [0, 1], together 1): h = sum alpha_i h_i."""

    sounds: tuple[Any, ...]      # engine Samples (anything with content_hash, root_note and name)
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.sounds or len(self.sounds) != len(self.weights):
            raise UserError(f"a mix needs one weight per sound: {len(self.sounds)} sounds, "
                            f"{len(self.weights)} weights")
        bad = [w for w in self.weights if not (math.isfinite(w) and 0.0 <= w <= 1.0)]
        if bad:
            raise UserError(f"mix weights must lie within [0, 1], got {bad[0]}")
        if abs(math.fsum(self.weights) - 1.0) > WEIGHT_TOLERANCE:
            raise UserError(f"mix weights must add up to 1, got {math.fsum(self.weights):.6g}")

    @classmethod
    def of(cls, sounds: Sequence[Any], weights: Sequence[float]) -> "Mix":
        return cls(tuple(sounds), tuple(float(w) for w in weights))

    @property
    def name(self) -> str:
        """'a' for one sound, 'a + b + c' for several."""
        return " + ".join(s.name for s in self.sounds)

    @property
    def root_note(self) -> int:
        """The weighted root, rounded: where the mix's own key sits."""
        return int(round(sum(w * s.root_note for s, w in zip(self.sounds, self.weights))))

    def sounding(self) -> "Mix":
        """The same mix without the sounds of weight 0 (at a corner: the corner's sound alone)."""
        kept = [(s, w) for s, w in zip(self.sounds, self.weights) if w > 0.0]
        return Mix.of([s for s, _ in kept], [w for _, w in kept])


def as_mix(sample_a: "Sample | Mix", sample_b: "Sample | None" = None, alpha: float = 0.0) -> Mix:
    """The engine's two-sound call ``(a, b, alpha)`` (or one sound, or a Mix) as a :class:`Mix`."""
    if isinstance(sample_a, Mix):
        if sample_b is not None:
            raise UserError("give either a Mix or two sounds, not both")
        return sample_a
    if not 0.0 <= float(alpha) <= 1.0:   # also refuses nan
        raise UserError(f"alpha must be within [0, 1], got {alpha}")
    if sample_b is None:
        return Mix((sample_a,), (1.0,))
    alpha = float(alpha)
    return Mix((sample_a, sample_b), (1.0 - alpha, alpha))


def bilinear_weights(x: float, y: float) -> tuple[float, float, float, float]:
    """The four corners' weights ``(A, B, C, D)`` at pad position ``(x, y)`` in [0, 1]^2.

    A sits at (0, 0) (top-left), B at (1, 0), C at (0, 1), D at (1, 1); the weights add up to 1 and
    a corner gives its sound alone.
    """
    x, y = min(max(float(x), 0.0), 1.0), min(max(float(y), 0.0), 1.0)
    return (1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y


def pad_weights(x: float, y: float, filled: Sequence[str]) -> dict[str, float]:
    """Weights of the ``filled`` corners (some of ``CORNERS``) at ``(x, y)``; together 1.

    An empty corner's share is spread evenly over the filled ones: towards an empty corner the
    sound tends to an even blend of the others, never to silence or a jump.
    """
    filled = [c for c in CORNERS if c in set(filled)]
    if not filled:
        raise UserError("the pad needs at least one sound")
    corner = dict(zip(CORNERS, bilinear_weights(x, y)))
    spare = sum(w for c, w in corner.items() if c not in filled) / len(filled)
    weights = {c: corner[c] + spare for c in filled}
    total = math.fsum(weights.values())
    return {c: w / total for c, w in weights.items()}


def slot_weights(filled: Sequence[str], alpha: float, pad: tuple[float, float]) -> dict[str, float]:
    """Each filled slot's weight as the sampler mixes them: one sound alone; two by the A <-> B
    slider's ``alpha`` (the second one's share); three or four by the pad position ``(x, y)``."""
    filled = [c for c in CORNERS if c in set(filled)]
    if len(filled) == 1:
        return {filled[0]: 1.0}
    if len(filled) == 2:
        alpha = min(max(float(alpha), 0.0), 1.0)
        return {filled[0]: 1.0 - alpha, filled[1]: alpha}
    return pad_weights(pad[0], pad[1], filled)


def pad_from_alpha(first: str, second: str, alpha: float) -> tuple[float, float]:
    """The pad position between corners ``first`` and ``second`` at the second one's share ``alpha``
    (on an edge of the pad its bilinear weights are exactly ``1 - alpha`` and ``alpha``)."""
    (x0, y0), (x1, y1) = CORNER_XY[first], CORNER_XY[second]
    return (1 - alpha) * x0 + alpha * x1, (1 - alpha) * y0 + alpha * y1
