"""Slower attacks for softer velocity layers: a fade-in over the start of the note.

The attack is ``models.evaluation.note_shape.attack_time_s`` (10 -> 90 % rise of the RMS envelope).
The note starts where its envelope first reaches ``ONSET`` of its peak (-40 dB; anything quieter
before it is muted). ``slow_attack`` multiplies the ``L`` seconds from there by ``sin^2(pi t / 2L)``,
finds ``L`` by bisection so that the attack becomes ``ratio`` times the note's own, then restores the
note's peak; the length and everything after the fade stay as they were. G's 128 ms mel window smears
any per-frame gain over about that long, so the shaping happens on the wave.
"""
from __future__ import annotations

import numpy as np

from models.evaluation.fidelity import FRAME_S
from models.evaluation.note_shape import ENVELOPE_HOP_S, attack_time_s, envelope_attack_s, rms_envelope
from models.train.velocity import MIN_ATTACK_S

MAX_FADE_S = 0.5
ONSET = 0.01               # of the envelope's peak: where the note starts
ITERATIONS = 12            # bisection steps: MAX_FADE_S / 2**12, about 0.1 ms


def slow_attack(wave: np.ndarray, rate: int, ratio: float, max_fade_s: float = MAX_FADE_S) -> np.ndarray:
    """``wave [T]`` with an attack ``ratio`` times as long, as a new float32 array of the same length and
    peak (``ratio <= 1``, or a silent wave: ``wave`` itself). An attack the longest fade cannot reach
    gets that fade."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if ratio <= 1.0 or peak <= 0.0:
        return wave
    target = ratio * max(attack_time_s(wave, rate), MIN_ATTACK_S)
    full = rms_envelope(wave, rate)
    start = int(np.argmax(full >= ONSET * full.max())) * int(round(ENVELOPE_HOP_S * rate)) if full.size else 0
    lo, hi = 0, min(int(max_fade_s * rate), wave.size - start)
    for _ in range(ITERATIONS):
        mid = (lo + hi + 1) // 2
        if _attack_with_fade(wave, rate, start, mid, full) < target:
            lo = mid
        else:
            hi = mid
    out = _faded(wave, start, hi)
    faded_peak = float(np.max(np.abs(out)))
    return (out * (peak / faded_peak)).astype(np.float32) if faded_peak > 0 else out


def _faded(wave: np.ndarray, start: int, length: int) -> np.ndarray:
    """A float32 copy muted before ``start`` and faded in over the ``length`` samples from there."""
    out = wave.astype(np.float32, copy=True)
    out[:start] = 0.0
    if length > 0:
        out[start: start + length] *= np.sin(0.5 * np.pi * np.arange(length) / length) ** 2
    return out


def _attack_with_fade(wave: np.ndarray, rate: int, start: int, length: int, full: np.ndarray) -> float:
    """The attack of ``_faded(wave, start, length)``; only the envelope's head is recomputed (``full``:
    the unfaded envelope, which the fade leaves as it is past its end)."""
    window = int(round(FRAME_S * rate))
    head = rms_envelope(_faded(wave[: start + length + 2 * window], start, length), rate)
    env = np.concatenate([head, full[head.size:]]) if head.size < full.size else head
    return envelope_attack_s(env, ENVELOPE_HOP_S)
