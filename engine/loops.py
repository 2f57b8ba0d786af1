"""Sustain loops: a period-aligned region in a key's decay, placed at near-zero crossings, cross-faded.

The cross-fade is baked into the samples so that both ways of leaving the loop's last sample are
continuous: jumping back to ``loop_start`` (held note) and playing straight on (released note, or a
player that ignores loops). Before the loop's end the samples blend into the samples that precede
``loop_start``; after it they blend from the continuation of ``loop_start`` back into the original tail.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.signal.audio import Audio


@dataclass(frozen=True)
class LoopConfig:
    """Where and how long a loop is; lengths in seconds are converted at the key's sample rate."""

    target_s: float = 0.25      # loop length to aim for, rounded to whole periods of f0
    crossfade_s: float = 0.04   # seam cross-fade (never more than the loop itself)
    place_db: float = -20.0     # the loop ends where the envelope has fallen this far below its peak ...
    place_min: float = 0.3      # ... but not before this fraction of the sample (attacks change fast) ...
    place_max: float = 0.6      # ... nor after this one
    attack_s: float = 0.06      # the loop starts at least this long after the envelope's peak
    tail_s: float = 0.05        # kept clear at the end for the fade-out
    search: float = 0.6         # loop lengths tried: target ± this many (nominal) periods
    max_flatten_db: float = 12.0  # the most level change across a loop that is flattened out


def envelope(samples: np.ndarray, frame: int) -> np.ndarray:
    """RMS per non-overlapping frame of ``frame`` samples ``[T // frame]``."""
    n = len(samples) // frame
    if n == 0:
        return np.sqrt(np.mean(np.square(samples, dtype=np.float64), keepdims=True))
    return np.sqrt(np.mean(np.square(samples[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))


def _nearest_rising_zero(x: np.ndarray, target: int, radius: int, lo: int, hi: int) -> int:
    """Index ``i`` in ``[lo, hi]`` near ``target`` with ``x[i-1] < 0 <= x[i]`` and the smallest step; else ``target``."""
    a, b = max(lo, target - radius, 1), min(hi, target + radius)
    if b <= a:
        return min(max(target, lo), hi)
    seg = np.arange(a, b + 1)
    rising = seg[(x[seg - 1] < 0) & (x[seg] >= 0)]
    if len(rising) == 0:
        return int(seg[np.argmin(np.abs(x[seg]))])
    cost = np.abs(x[rising]) + np.abs(x[rising - 1]) + 1e-6 * np.abs(rising - target)
    return int(rising[np.argmin(cost)])


def _best_length(x: np.ndarray, end: int, lengths: np.ndarray, before: int, after: int) -> int:
    """The loop length whose start neighbourhood best matches the end's (normalised cross-correlation).

    Compared: ``x[end - before: end + after]`` against the same span around each candidate start,
    i.e. exactly the samples the cross-fades blend. The candidates' windows overlap, so the dot
    products come from one FFT correlation and the windows' norms from running sums (a low key has
    thousands of candidates of thousands of samples each).
    """
    span = before + after
    ref = x[end - before: end + after].astype(np.float64)
    ref = ref - ref.mean()
    starts = end - lengths
    lo, hi = int(starts.min()) - before, int(starts.max()) + after
    seg = x[lo:hi].astype(np.float64)
    # dot[j] = sum_i seg[j + i] * ref[i]; ref is zero-mean, so a window's own mean drops out of it
    n_fft = 1 << int(np.ceil(np.log2(len(seg) + span)))
    dot = np.fft.irfft(np.fft.rfft(seg, n_fft) * np.conj(np.fft.rfft(ref, n_fft)), n_fft)[: len(seg) - span + 1]
    csum = np.concatenate(([0.0], np.cumsum(seg)))
    csq = np.concatenate(([0.0], np.cumsum(seg * seg)))
    j = starts - before - lo
    win_sum = csum[j + span] - csum[j]
    win_energy = np.maximum(csq[j + span] - csq[j] - win_sum * win_sum / span, 0.0)
    denom = np.sqrt(win_energy) * np.linalg.norm(ref) + 1e-12
    score = dot[j] / denom
    # Among equals, prefer a start whose own sample sits near the end's (the smallest blend).
    score -= 0.1 * np.abs(x[starts] - x[end]) / (np.abs(ref).max() + 1e-12)
    return int(lengths[int(np.argmax(score))])


def _fitted_sizes(n: int, sample_rate: int, period: float, cfg: LoopConfig) -> tuple[int, int, int]:
    """(tail, cross-fade, loop length) in samples for a sample of ``n``: the configured ones, the loop
    rounded to whole periods, all shrunk together when start-fade, loop, after-fade and tail do not fit."""
    tail = int(cfg.tail_s * sample_rate)
    fade = int(cfg.crossfade_s * sample_rate)
    length = max(1, round(cfg.target_s / (period / sample_rate))) * period
    budget = n - 2
    if tail + 2 * fade + length > budget:
        scale = budget / (tail + 2 * fade + length)
        tail, fade, length = int(tail * scale), int(fade * scale), length * scale
    length_int = max(2, int(round(length)))
    return tail, max(1, min(fade, length_int)), length_int


def _loop_end(x: np.ndarray, sample_rate: int, period: float, tail: int, fade: int, length: int,
              cfg: LoopConfig) -> int:
    """Where the loop ends: where the envelope has fallen ``cfg.place_db`` below its peak (within
    ``place_min .. place_max`` of the sample, after the attack, clear of the tail), moved to a nearby
    rising zero crossing."""
    n = len(x)
    frame = max(1, int(0.01 * sample_rate))
    env = envelope(x, frame)
    peak = int(np.argmax(env))
    below = np.nonzero(env[peak:] < env[peak] * 10 ** (cfg.place_db / 20))[0]
    end = min(n * cfg.place_max, max(n * cfg.place_min, (peak + below[0]) * frame if len(below) else n))
    earliest = (peak + 1) * frame + int(cfg.attack_s * sample_rate) + length + fade
    latest = n - tail - fade - 1
    end = int(min(max(end, earliest), latest))
    end = max(end, fade + length + 1)
    radius = max(2, int(math.ceil(period)))
    return _nearest_rising_zero(x, end, radius, fade + length + 1, n - fade - 1)


def find_loop(audio: Audio, f0_hz: float, cfg: LoopConfig = LoopConfig()) -> tuple[int, int]:
    """Loop ``(start, end)`` (end exclusive) in mono ``audio [T]``: whole periods of ``f0_hz``, in the decay.

    Always returns a valid region (``crossfade <= start < end``, room for the cross-fade after ``end``)
    for any ``T`` of at least a few dozen samples, even for silence or noise.
    """
    x, sample_rate = audio.samples, audio.sample_rate
    n = len(x)
    period = sample_rate / max(f0_hz, 1.0)
    tail, fade, length_int = _fitted_sizes(n, sample_rate, period, cfg)
    end = _loop_end(x, sample_rate, period, tail, fade, length_int, cfg)
    spread = max(1, int(math.ceil(cfg.search * period)))
    lengths = np.arange(length_int - spread, length_int + spread + 1)
    lengths = lengths[(lengths >= max(2, fade)) & (end - lengths >= fade)]
    # Compare the spans the cross-fades blend: the fade before each point and a period after it.
    before = fade
    after = min(int(math.ceil(period)), n - end)
    if len(lengths):
        lengths = lengths[end - lengths - before >= 0]
    best = _best_length(x, end, lengths, before, after) if len(lengths) and after >= 1 else length_int
    start = max(fade, end - best)
    return int(start), int(end)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two equally long signals (0 if either is silent)."""
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 1e-12 else 0.0


def _fade_gains(fade: int, r: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(gain of the incoming signal, gain of the outgoing one), keeping power for correlation ``r``.

    Solves ``g_in^2 + g_out^2 + 2 r g_in g_out = 1`` along a sin^2 shape: linear (equal-gain) for
    identical signals (r = 1), equal-power for unrelated ones (r = 0), so the seam neither dips nor bumps.
    """
    r = min(max(r, 0.0), 1.0)
    u = (np.arange(fade, dtype=np.float64) + offset) / fade
    p = np.sin(0.5 * np.pi * u) ** 2
    q = 1 - p
    k = 1 / np.sqrt(p * p + q * q + 2 * r * p * q)
    return k * p, k * q


def crossfade_loop(samples: np.ndarray, start: int, end: int, crossfade: int) -> np.ndarray:
    """A copy of ``samples`` with the loop ``[start, end)`` cross-faded so both exits are continuous.

    Requires ``crossfade <= start``, ``crossfade <= end - start`` and ``end + crossfade <= T``
    (:func:`find_loop` guarantees this for its own cross-fade); longer fades are shortened to fit.
    """
    x = np.asarray(samples, dtype=np.float32)
    y = x.copy()
    fade = int(min(crossfade, start, end - start, len(x) - end))
    if fade <= 0:
        return y
    before, after = x[start - fade: start], x[start: start + fade]
    # Into the seam: reaches the pre-start samples exactly at the loop's last sample.
    g_in, g_out = _fade_gains(fade, correlation(x[end - fade: end], before), offset=1.0)
    y[end - fade: end] = g_out * x[end - fade: end] + g_in * before
    # Straight on past the end: starts exactly at the start's continuation, returns to the tail.
    g_in, g_out = _fade_gains(fade, correlation(x[end: end + fade], after), offset=0.0)
    y[end: end + fade] = g_out * after + g_in * x[end: end + fade]
    return y


def flatten_decay(samples: np.ndarray, start: int, end: int, window: int, max_db: float = 12.0) -> np.ndarray:
    """A copy whose level no longer falls (or rises) across ``[start, end)``.

    The level around ``end`` is brought up to the level around ``start`` by a gain that grows
    geometrically from 1 at ``start`` to ``r`` at ``end`` and stays ``r`` after it: a held note
    sustains steadily instead of pulsing by the decay of each pass, and the tail still follows on
    without a step. ``r`` is limited to ``max_db``.
    """
    x = np.asarray(samples, dtype=np.float32)
    w = max(1, window)
    level_start = np.sqrt(np.mean(np.square(x[max(0, start - w): start + w], dtype=np.float64)))
    level_end = np.sqrt(np.mean(np.square(x[max(0, end - w): end + w], dtype=np.float64)))
    if level_start <= 1e-9 or level_end <= 1e-9:
        return x.copy()
    limit = 10 ** (max_db / 20)
    ratio = float(np.clip(level_start / level_end, 1 / limit, limit))
    gain = np.ones(len(x), np.float64)
    gain[start:end] = ratio ** (np.arange(end - start) / (end - start))
    gain[end:] = ratio
    return (x * gain).astype(np.float32)


def make_loop(audio: Audio, f0_hz: float, cfg: LoopConfig = LoopConfig()) -> tuple[Audio, int, int]:
    """Find, level and bake a loop in mono ``audio``: -> (new audio, loop_start, loop_end exclusive)."""
    start, end = find_loop(audio, f0_hz, cfg)
    fade = int(cfg.crossfade_s * audio.sample_rate)
    flat = flatten_decay(audio.samples, start, end, fade, cfg.max_flatten_db)
    return Audio(crossfade_loop(flat, start, end, fade), audio.sample_rate), start, end


def seam_jump(samples: np.ndarray, start: int, end: int) -> tuple[float, float]:
    """(discontinuity at the loop seam, typical value inside the loop), in sample units, to measure clicks.

    Uses second differences, which are small wherever a signal is smooth: at the seam a looping
    voice plays ``x[end - 2], x[end - 1], x[start]``, so the seam value is
    ``|x[start] - 2 x[end - 1] + x[end - 2]|``; the typical value is the 99th percentile of
    ``|x[i + 1] - 2 x[i] + x[i - 1]|`` inside the loop.
    """
    x = np.asarray(samples, dtype=np.float64)
    seam = abs(x[start] - 2 * x[end - 1] + x[end - 2])
    inside = x[start:end]
    typical = float(np.percentile(np.abs(np.diff(inside, 2)), 99)) if len(inside) > 3 else 0.0
    return float(seam), typical
