"""The mixer's output stage: master volume ramp, block peak limiter, soft clip guard, level meter.

Runs on the audio thread, on buffers allocated here once; like the rest of the callback it
allocates no arrays, takes no lock and never raises.
"""
from __future__ import annotations

import math

import numpy as np


class MasterBus:
    """``process(mix)`` applies volume and limiting to the mono bus ``mix [N]`` in place."""

    def __init__(self, block_size: int, block_s: float, threshold: float, ceiling: float, release_s: float) -> None:
        n = block_size
        self.threshold = threshold
        self._volume = self._volume_prev = 0.5
        self._limiter_gain = 1.0
        self._limiter_release = 1.0 - math.exp(-block_s / release_s)
        self._meter_hold = 0.0
        self._ramp01 = (np.arange(n, dtype=np.float64) / n).astype(np.float32)
        self._gain, self._lin, self._excess = (np.zeros(n, np.float32) for _ in range(3))
        room = ceiling - threshold
        self._knee, self._neg_knee = np.float32(threshold), np.float32(-threshold)
        self._knee_room, self._knee_inv = np.float32(room), np.float32(1.0 / room)

    def set_volume(self, gain: float) -> None:
        """Master gain (linear, 0..2), ramped over one block by ``process``."""
        self._volume = float(min(max(gain, 0.0), 2.0))

    def read_peak(self) -> float:
        """Highest output peak since the previous call (for a level meter), then reset."""
        peak = self._meter_hold
        self._meter_hold = 0.0   # a peak landing between these two lines is lost: harmless for a meter
        return peak

    def silent_block(self) -> None:
        """A block of silence went out: the volume ramp is done and the next note starts unattenuated."""
        self._volume_prev = self._volume
        self._limiter_gain = 1.0

    def process(self, mix: np.ndarray) -> None:
        """Master volume ramp, block peak limiter, then a soft clip guard below the ceiling."""
        gain, lin, ex = self._gain, self._lin, self._excess
        vol, prev = self._volume, self._volume_prev
        np.multiply(self._ramp01, vol - prev, out=gain)
        np.add(gain, prev, out=gain)
        np.multiply(mix, gain, out=mix)
        self._volume_prev = vol
        np.abs(mix, out=lin)
        peak = lin.item(lin.argmax())
        thr = self.threshold
        target = thr / peak if peak > thr else 1.0
        g0 = self._limiter_gain
        if target < g0:
            # Attack: the whole block is known, so its peak lands exactly on the threshold (a gain
            # step at the block edge instead of an overshoot).
            g0 = g1 = target
        else:  # release: ramp up, never above what this block's peak allows
            g1 = g0 + (target - g0) * self._limiter_release
        self._limiter_gain = g1
        np.multiply(self._ramp01, g1 - g0, out=gain)
        np.add(gain, g0, out=gain)
        np.multiply(mix, gain, out=mix)
        # Guard: identity up to the knee; any excess is squashed by tanh below the ceiling.
        np.minimum(mix, self._knee, out=lin)
        np.maximum(lin, self._neg_knee, out=lin)
        np.subtract(mix, lin, out=ex)
        np.multiply(ex, self._knee_inv, out=ex)
        np.tanh(ex, out=ex)
        np.multiply(ex, self._knee_room, out=ex)
        np.add(lin, ex, out=mix)
        np.abs(mix, out=lin)
        peak = lin.item(lin.argmax())
        if peak > self._meter_hold:
            self._meter_hold = peak
