"""Pitch of a one-shot: which MIDI key a dropped sound was played at.

A McLeod-style normalised square-difference function (NSDF, a normalised autocorrelation that is
not biased towards short lags) over windows at and after the attack; the clearest wins. The first strong key
maximum gives the period (the usual guard against octave-down errors), a harmonic-sum check on
the spectrum guards against octave-up errors, and the peak at a multiple of the period refines it
(short periods at high keys are only a few samples long). numpy only, any sample rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.signal.audio import Audio
from models.units import clamp_key, hz_to_midi, midi_to_hz


@dataclass(frozen=True)
class PitchConfig:
    """Search range and analysis settings of ``estimate_pitch``."""

    midi_min: float = 20.5  # half a semitone below A0 (MIDI 21)
    midi_max: float = 108.5  # half a semitone above C8 (MIDI 108)
    window_s: float = 0.5  # analysis window after the attack
    skip_attack_s: float = 0.03  # skipped after the loudest moment: noisy pick/hammer transients
    peak_threshold: float = 0.85  # first key maximum >= this x the highest one (McLeod & Wyvill)
    refine_lag_s: float = 0.012  # refine the period at its multiples up to this lag
    silence_rms: float = 1e-4  # below this RMS (full scale 1.0) there is nothing to estimate
    fallback_midi: float = 60.0  # reported (with confidence 0) when there is no pitch


@dataclass(frozen=True)
class PitchEstimate:
    """Estimated pitch: fractional MIDI note, its frequency in Hz, and a confidence in [0, 1].

    With confidence 0 (silence, no periodicity) ``midi`` is ``PitchConfig.fallback_midi``.
    """

    midi: float
    confidence: float
    hz: float

    @property
    def midi_note(self) -> int:
        """Nearest MIDI key, clamped to the piano's range (``models.units``)."""
        return clamp_key(self.midi)


def estimate_pitch(audio: Audio, cfg: PitchConfig = PitchConfig()) -> PitchEstimate:
    """Estimate the pitch of a (mono or multichannel) one-shot at any sample rate.

    Windows start at the loudest moment, after the attack skip and later still; the clearest wins
    (a noisy attack blurs the first, a fast-decaying high pluck may be gone by the later ones).
    """
    rate = audio.sample_rate
    x = audio.samples.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    best: tuple[float, float] | None = None
    for skip_s in (cfg.skip_attack_s, 0.0, 4 * cfg.skip_attack_s):
        segment = _analysis_segment(x, rate, cfg, skip_s)
        found = _estimate_segment(segment, rate, cfg)
        if found is not None and (best is None or found[1] > best[1] + 0.02):
            best = found
    if best is None:
        return _unvoiced(cfg)
    period, clarity = best
    hz = rate / period
    return PitchEstimate(midi=hz_to_midi(hz), confidence=float(np.clip(clarity, 0.0, 1.0)), hz=float(hz))


def _estimate_segment(segment: np.ndarray, rate: int, cfg: PitchConfig) -> tuple[float, float] | None:
    """(period in samples, clarity) of one analysis window, or None if it has no periodicity."""
    min_lag = rate / midi_to_hz(cfg.midi_max)
    max_lag = int(math.ceil(rate / midi_to_hz(cfg.midi_min))) + 1
    if segment.size < 3 * max(4, int(min_lag)) or np.sqrt(np.mean(segment ** 2)) < cfg.silence_rms:
        return None
    nsdf = _Nsdf(segment, min(max_lag, segment.size // 2))
    maxima = _key_maxima(nsdf, min_lag)
    if not maxima:
        return None
    values = np.array([v for _, v in maxima])
    first = int(np.argmax(values >= cfg.peak_threshold * values.max()))
    period, clarity = maxima[first]
    period = _fix_octave_up(segment, rate, period, maxima, nsdf.values.size)
    period = _refine_period(nsdf.values, period, int(cfg.refine_lag_s * rate))
    return period, clarity


def _unvoiced(cfg: PitchConfig) -> PitchEstimate:
    return PitchEstimate(midi=cfg.fallback_midi, confidence=0.0, hz=midi_to_hz(cfg.fallback_midi))


def _analysis_segment(x: np.ndarray, rate: int, cfg: PitchConfig, skip_s: float) -> np.ndarray:
    """The window from ``skip_s`` after the loudest moment, long enough for the lowest key."""
    hop = max(1, rate // 100)
    n_frames = x.size // hop
    if n_frames == 0:
        return x - x.mean() if x.size else x
    rms = np.sqrt(np.mean(x[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1))
    start = int(np.argmax(rms)) * hop + int(skip_s * rate)
    length = int(cfg.window_s * rate)
    max_lag = rate / midi_to_hz(cfg.midi_min)
    needed = min(x.size, max(int(4 * max_lag), length // 2))
    start = max(0, min(start, x.size - needed))
    return _high_pass(x[start: start + length], rate, 0.5 * midi_to_hz(cfg.midi_min))


def _high_pass(x: np.ndarray, rate: int, cutoff_hz: float) -> np.ndarray:
    """Remove DC and rumble below ``cutoff_hz`` (a raised-cosine edge, in the frequency domain)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
    gain = np.clip(freqs / cutoff_hz, 0.0, 1.0)
    spec *= 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spec, x.size)


class _Nsdf:
    """n(τ) = 2 Σ x_j x_{j+τ} / Σ (x_j² + x_{j+τ}²): on integer lags 0..max_lag via one FFT, and on
    fractional lags by band-limited interpolation (periods of a few samples fall between lags)."""

    def __init__(self, x: np.ndarray, max_lag: int) -> None:
        self.n = x.size
        self.size = 1 << int(math.ceil(math.log2(2 * self.n)))
        spec = np.fft.rfft(x, self.size)
        self.power = spec.real ** 2 + spec.imag ** 2
        self.power[1:-1] *= 2.0  # one-sided spectrum: count the mirrored half once
        self.cum = np.concatenate([[0.0], np.cumsum(x * x)])  # cum[k] = Σ x[:k]
        acf = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, self.size)[: max_lag + 1]
        self.values = 2.0 * acf / self._energy(np.arange(max_lag + 1, dtype=np.float64))

    def _energy(self, lags: np.ndarray) -> np.ndarray:
        idx = np.arange(self.n + 1, dtype=np.float64)
        head = np.interp(self.n - lags, idx, self.cum)
        tail = self.cum[self.n] - np.interp(lags, idx, self.cum)
        return np.maximum(head + tail, 1e-20)

    def at(self, lags: np.ndarray) -> np.ndarray:
        """NSDF at fractional ``lags`` (band-limited interpolation of the autocorrelation)."""
        k = np.arange(self.power.size)
        acf = np.cos(np.outer(lags, 2 * np.pi * k / self.size)) @ self.power / self.size
        return 2.0 * acf / self._energy(lags)

    def fine_peak(self, lag: float) -> tuple[float, float]:
        """(lag, value) of the maximum near ``lag``: quarter-lag samples, then a parabola."""
        grid = lag + np.array([-0.5, -0.25, 0.0, 0.25, 0.5])
        values = self.at(grid)
        j = int(np.clip(np.argmax(values), 1, 3))
        peak, value = _parabolic(values, j)
        return float(grid[0] + 0.25 * peak), value


def _key_maxima(nsdf_fn: _Nsdf, min_lag: float, fine_below: float = 24.0) -> list[tuple[float, float]]:
    """(lag, value) of the highest point of each positive lobe after the first zero crossing.

    Lobes shorter than ``fine_below`` lags are re-measured between lags: a parabola through three
    samples of a period of 4 samples underestimates the peak by up to 20 %.
    """
    nsdf = nsdf_fn.values
    negative = np.flatnonzero(nsdf <= 0)
    if negative.size == 0:
        return []
    pos = nsdf > 0
    pos[: negative[0]] = False
    edges = np.diff(pos.astype(np.int8))
    starts = list(np.flatnonzero(edges == 1) + 1)
    ends = list(np.flatnonzero(edges == -1) + 1)
    if len(ends) < len(starts):
        ends.append(nsdf.size)  # the last lobe runs to max_lag: keep it only if it peaks inside
    out = []
    for a, b in zip(starts, ends):
        i = a + int(np.argmax(nsdf[a:b]))
        if i >= nsdf.size - 1:
            continue
        lag, value = _parabolic(nsdf, i)
        if lag < fine_below and value > 0.3:
            lag, value = nsdf_fn.fine_peak(lag)
        if lag >= min_lag - 0.5:
            out.append((lag, value))
    return out


def _parabolic(y: np.ndarray, i: int) -> tuple[float, float]:
    """Vertex of the parabola through y[i-1], y[i], y[i+1]."""
    if i <= 0 or i >= y.size - 1:
        return float(i), float(y[i])
    a, b, c = y[i - 1], y[i], y[i + 1]
    denom = a - 2 * b + c
    if denom >= 0:
        return float(i), float(b)
    shift = 0.5 * (a - c) / denom
    return i + shift, float(b - 0.25 * (a - c) * shift)


def _fix_octave_up(x: np.ndarray, rate: int, period: float, maxima: list[tuple[float, float]],
                   n_lags: int, n_partials: int = 10, ratio: float = 0.05) -> float:
    """Prefer twice the period when the spectrum has clear partials between the chosen harmonics.

    An NSDF picks half the true period when even partials dominate (a weak fundamental); then the
    odd partials of the true fundamental sit halfway between the chosen "harmonics". Above
    ``ratio`` of the energy of the first ``n_partials`` partials (-13 dB) they are heard.
    """
    doubled = 2.0 * period
    if doubled >= n_lags - 1:
        return period
    near = [v for lag, v in maxima if abs(lag - doubled) <= max(1.0, 0.1 * period)]
    if not near or max(near) < 0.5:
        return period
    f0 = rate / period
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    bin_hz = rate / x.size
    k_max = max(1, min(n_partials, int((rate / 2 - f0 / 2) // f0)))
    # Partials must stand 10 dB above the noise floor (the median bin) to count.
    floor = 3.0 * float(np.median(spec[: int((k_max + 1) * f0 / bin_hz) + 1]))
    between = _harmonic_energy(spec, bin_hz, f0 * (np.arange(k_max) + 0.5), floor)
    on = _harmonic_energy(spec, bin_hz, f0 * np.arange(1, k_max + 1), floor)
    return doubled if between > ratio * on else period


def _harmonic_energy(spec: np.ndarray, bin_hz: float, freqs: np.ndarray, floor: float) -> float:
    """Σ of the squared spectral peak height above ``floor`` (±1.5 %, at least ±2 bins) at each frequency."""
    total = 0.0
    for f in freqs:
        half = max(2, int(0.015 * f / bin_hz))
        i = int(round(f / bin_hz))
        lo, hi = max(0, i - half), min(spec.size, i + half + 1)
        if lo < hi:
            total += max(0.0, float(spec[lo:hi].max()) - floor) ** 2
    return total


def _refine_period(nsdf: np.ndarray, period: float, refine_lag: int) -> float:
    """Re-measure the period at the NSDF peaks near 2, 4, 8 ... periods, while they stay strong."""
    if not (math.isfinite(period) and period >= 1.0):
        return period
    base = nsdf[int(round(period))] if period < nsdf.size else 0.0
    n = 2
    # The period stays >= 1 sample (a refined lag of a near-zero peak could shrink it towards 0,
    # and the loop bound n * period would then never be reached).
    while n <= 64 and period >= 1.0 and n * period <= min(refine_lag, nsdf.size - 2):
        guess = n * period
        half = max(1.0, period / 4)
        lo, hi = int(math.floor(guess - half)), int(math.ceil(guess + half)) + 1
        i = lo + int(np.argmax(nsdf[lo:hi]))
        if i <= 0 or i >= nsdf.size - 1 or nsdf[i] < 0.5 * base:
            break
        lag, _ = _parabolic(nsdf, i)
        period = lag / n
        n *= 2
    return period
