"""Pitch of a one-shot: which MIDI key a dropped sound was played at.

A McLeod-style normalised square-difference function (NSDF, a normalised autocorrelation that is
not biased towards short lags) over windows at and after the attack; the clearest wins. The first strong key
maximum gives the period (the usual guard against octave-down errors), a harmonic-sum check on
the spectrum guards against octave-up errors, and the peak at a multiple of the period refines it
(short periods at high keys are only a few samples long). numpy only, any sample rate.

The root is the lowest periodicity that is heard: where the partials only twice the period explains
hold 5 % (-13 dB) of the energy on the others (an organ's 16' stop, a weak fundamental), the
sound is rooted an octave below the key it was played on, as a key must play it to sound the same.

A second opinion reads the period of the amplitude envelope in short frames (median over the
voiced ones). Jitter decorrelates a low voice's successive periods, so the waveform's clearest
early peak becomes the first formant's ringing (a bass "ah" read as A5), while the envelope still
repeats at the glottal rate. It overrules only a weakly periodic waveform, where it is clearer and
its harmonics hold spectral energy the waveform's key does not explain (not a mere subharmonic).

The confidence is the clarity (NSDF peak) of the answer: raised where the two opinions agree,
lowered where the envelope's rival is credible but not adopted, and where the partials of the
octave below or above came close to the threshold that would have chosen it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.signal.audio import Audio, active_frames
from models.units import clamp_key, hz_to_midi, midi_to_hz


_OCTAVE_RATIO = 0.05  # energy on partials only twice the period explains, against the rest: -13 dB


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
    envelope_hz: float = 1000.0  # envelope band: glottal pulse shapes, not formant carriers
    frame_s: float = 0.09  # envelope frames: 2.4 periods of the lowest key
    frame_hop_s: float = 0.03
    frame_floor_db: float = -25.0  # frames this far below the loudest are not analysed
    voiced_clarity: float = 0.5  # a frame whose envelope clarity reaches this is voiced
    min_depth: float = 0.1  # ... and whose envelope varies by this much (RMS over mean)
    weak_clarity: float = 0.7  # below this whole-window clarity the envelope may overrule
    comb_share: float = 0.15  # spectral energy share only the envelope's period explains (3x _OCTAVE_RATIO)


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
    best, segment = None, x
    for skip_s in (cfg.skip_attack_s, 0.0, 4 * cfg.skip_attack_s):
        window = _analysis_segment(x, rate, cfg, skip_s)
        found = _estimate_segment(window, rate, cfg)
        if found is not None and (best is None or found[1] > best[1] + 0.02):
            best, segment = found, window
    if best is None:
        return _unvoiced(cfg)
    period, clarity, octave_ratio = best
    track = _envelope_track(x, rate, cfg)
    midi, confidence = _second_opinion(hz_to_midi(rate / period), clarity, track, segment, rate, cfg)
    if midi is None:  # the waveform's period stands; how close were the octaves below and above?
        hz = rate / period
        above = _between_ratio(segment, rate, 2 * hz) if 2 * hz < rate / 2 else None
        confidence *= min(_octave_margin(octave_ratio), _octave_margin(above))
    else:
        hz = midi_to_hz(midi)
    return PitchEstimate(midi=hz_to_midi(hz), confidence=float(np.clip(confidence, 0.0, 1.0)), hz=float(hz))


def sounding_part(wave: np.ndarray, rate: int, floor_db: float = -40.0, frame_s: float = 0.01) -> np.ndarray:
    """``wave`` from its first to its last ``frame_s`` frame within ``floor_db`` of the loudest frame."""
    hop = max(1, int(frame_s * rate))
    active = np.flatnonzero(active_frames(wave, hop, floor_db))
    if active.size == 0:
        return wave[:0]
    return wave[active[0] * hop: (active[-1] + 1) * hop]


def note_pitch(wave: np.ndarray, rate: int, min_s: float = 0.02) -> float | None:
    """Pitch (fractional MIDI) of one rendered note, read on its sounding part so a short note counts as
    fairly as a held one; None when under ``min_s`` sounds or no pitch is heard."""
    part = sounding_part(wave, rate)
    if part.size < int(min_s * rate):
        return None
    est = estimate_pitch(Audio(np.ascontiguousarray(part, dtype=np.float32), rate))
    return float(est.midi) if est.confidence > 0 else None


def _estimate_segment(segment: np.ndarray, rate: int,
                      cfg: PitchConfig) -> tuple[float, float, float | None] | None:
    """(period in samples, clarity, octave ratio of ``_fix_octave_up`` or None) of one analysis
    window, or None if it has no periodicity."""
    min_lag = rate / midi_to_hz(cfg.midi_max)
    max_lag = int(math.ceil(rate / midi_to_hz(cfg.midi_min))) + 1
    if segment.size < 3 * max(4, int(min_lag)) or np.sqrt(np.mean(segment ** 2)) < cfg.silence_rms:
        return None
    nsdf = _Nsdf(segment, min(max_lag, segment.size // 2))
    maxima = _key_maxima(nsdf, min_lag)
    if not maxima:
        return None
    period, clarity = _first_strong(maxima, cfg.peak_threshold)
    period, octave_ratio = _fix_octave_up(segment, rate, period, maxima, nsdf.values.size)
    period = _refine_period(nsdf.values, period, int(cfg.refine_lag_s * rate))
    return period, clarity, octave_ratio


def _first_strong(maxima: list[tuple[float, float]], threshold: float) -> tuple[float, float]:
    """The first key maximum >= ``threshold`` x the highest (McLeod & Wyvill: against octave-down)."""
    values = np.array([v for _, v in maxima])
    return maxima[int(np.argmax(values >= threshold * values.max()))]


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


def _fix_octave_up(x: np.ndarray, rate: int, period: float, maxima: list[tuple[float, float]], n_lags: int,
                   n_partials: int = 10, ratio: float = _OCTAVE_RATIO) -> tuple[float, float | None]:
    """Prefer twice the period when the spectrum has clear partials between the chosen harmonics.

    An NSDF picks half the true period when even partials dominate (a weak fundamental); then the
    odd partials of the true fundamental sit halfway between the chosen "harmonics". Above
    ``ratio`` of the energy of the first ``n_partials`` partials (-13 dB) they are heard. Returns
    the period and that energy ratio (None where the NSDF does not support twice the period).
    """
    doubled = 2.0 * period
    if doubled >= n_lags - 1:
        return period, None
    near = [v for lag, v in maxima if abs(lag - doubled) <= max(1.0, 0.1 * period)]
    if not near or max(near) < 0.5:
        return period, None
    found = _between_ratio(x, rate, rate / period, n_partials)
    return (doubled if found > ratio else period), found


def _between_ratio(x: np.ndarray, rate: int, f0: float, n_partials: int = 10) -> float:
    """Energy of the spectral peaks halfway between the first ``n_partials`` partials of ``f0``
    against that on them (peaks count 10 dB above the noise floor, the median bin)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    bin_hz = rate / x.size
    k_max = max(1, min(n_partials, int((rate / 2 - f0 / 2) // f0)))
    floor = 3.0 * float(np.median(spec[: int((k_max + 1) * f0 / bin_hz) + 1]))
    between = _harmonic_energy(spec, bin_hz, f0 * (np.arange(k_max) + 0.5), floor)
    on = _harmonic_energy(spec, bin_hz, f0 * np.arange(1, k_max + 1), floor)
    return between / max(on, 1e-20)


def _octave_margin(octave_ratio: float | None, ratio: float = _OCTAVE_RATIO) -> float:
    """Confidence factor from how close an octave decision's energy ratio came to its threshold:
    0.5 on it, rising to 1 half a decade (5 dB) away on either side."""
    if octave_ratio is None or octave_ratio <= 0:
        return 1.0
    return 0.5 + min(0.5, abs(math.log10(octave_ratio / ratio)))


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


@dataclass(frozen=True)
class _Track:
    """Frame-wise periods of the amplitude envelope: median key of the voiced frames, median clarity
    of the sounding ones, and the fraction of those that are voiced."""

    midi: float
    clarity: float
    voiced: float


def _envelope(x: np.ndarray, rate: int, cutoff_hz: float,
              band_hz: float = 4000.0) -> tuple[np.ndarray, float]:
    """(Hilbert magnitude of ``x`` below ``band_hz``, low-passed at ``cutoff_hz``; its rate, 4 x cutoff).

    The magnitude follows each glottal pulse's ringing, not the formant's carrier, so a jitter of a
    fraction of a millisecond barely moves it, while it decorrelates the waveform itself.
    """
    size = 1 << int(math.ceil(math.log2(max(2, x.size))))
    spec = np.fft.rfft(x, size)
    bins = min(spec.size, int(band_hz * size / rate) + 1)
    # The analytic signal (positive frequencies doubled) of the band, sampled at 2 x band_hz: its
    # magnitude has no partials above band_hz, so nothing aliases below the cutoff.
    n_band = max(bins, int(2 * band_hz * size / rate))
    analytic = np.zeros(n_band, complex)
    analytic[:bins] = 2.0 * spec[:bins]
    analytic[0] = spec[0]
    band_rate = rate * n_band / size
    magnitude = np.abs(np.fft.ifft(analytic))[: max(2, int(round(x.size * n_band / size)))]
    n_out = max(2, int(round(magnitude.size * 4.0 * cutoff_hz / band_rate)))
    low = np.fft.rfft(magnitude)[: n_out // 2 + 1]
    freqs = np.arange(low.size) * band_rate / magnitude.size
    # A raised-cosine edge: a brick wall would ring at the cutoff, a period of 4 envelope samples.
    low *= 0.5 + 0.5 * np.cos(np.pi * np.clip((freqs - 0.75 * cutoff_hz) / (0.25 * cutoff_hz), 0.0, 1.0))
    return np.fft.irfft(low, n_out), band_rate * n_out / magnitude.size


def _envelope_track(x: np.ndarray, rate: int, cfg: PitchConfig) -> _Track | None:
    """Periods of the envelope in short frames (jitter matters less over a few periods than over
    the whole window), each by the NSDF's first strong key maximum; None if nothing sounds."""
    env, env_rate = _envelope(x, rate, cfg.envelope_hz)
    length, hop = int(cfg.frame_s * env_rate), max(1, int(cfg.frame_hop_s * env_rate))
    if env.size < length or length < 8:
        return None
    frames = env[np.arange(0, env.size - length + 1, hop)[:, None] + np.arange(length)]  # [frames, length]
    level = frames.mean(axis=1)
    if level.max() <= 0:
        return None
    sounding = level >= level.max() * 10.0 ** (cfg.frame_floor_db / 20)
    frames, level = frames[sounding], level[sounding]
    t = np.linspace(-1.0, 1.0, length)
    # The envelope's own rise and decay would read as a long period: remove each frame's straight line.
    frames = frames - frames.mean(axis=1, keepdims=True) - np.outer(frames @ t / (t @ t), t)
    # A steady tone's envelope is flat; its leftover ripple, however periodic, is not heard.
    depth = frames.std(axis=1) / level
    min_lag = env_rate / (0.5 * cfg.envelope_hz)
    max_lag = int(math.ceil(env_rate / midi_to_hz(cfg.midi_min))) + 1
    picks = [_frame_period(frame, min_lag, max_lag, cfg.peak_threshold) if d >= cfg.min_depth else (0.0, 0.0)
             for frame, d in zip(frames, depth)]
    clarity = np.array([c for _, c in picks])
    voiced = clarity >= cfg.voiced_clarity
    if not voiced.any():
        return _Track(float("nan"), float(np.median(clarity)), 0.0)
    midi = [hz_to_midi(env_rate / lag) for (lag, _), v in zip(picks, voiced) if v]
    return _Track(float(np.median(midi)), float(np.median(clarity)), float(voiced.mean()))


def _frame_period(frame: np.ndarray, min_lag: float, max_lag: int, threshold: float) -> tuple[float, float]:
    """(period, clarity) of one frame; clarity 0 where it has no key maximum."""
    maxima = _key_maxima(_Nsdf(frame, min(max_lag, frame.size // 2)), min_lag, fine_below=0.0)
    return _first_strong(maxima, threshold) if maxima else (0.0, 0.0)


def _second_opinion(midi: float, clarity: float, track: _Track | None, segment: np.ndarray, rate: int,
                    cfg: PitchConfig) -> tuple[float | None, float]:
    """(the envelope's key where it overrules the waveform's ``midi``, else None; the confidence).

    Where jitter decorrelates a low voice's periods, the waveform's clearest early peak is the first
    formant's ringing. The envelope's key wins when the waveform is weakly periodic, the envelope is
    clearer, and its harmonics hold spectral peaks that the waveform's key does not explain (else it
    is a subharmonic: roughness, a bell's beating). A rival it does not adopt lowers the confidence.
    """
    if track is None or track.voiced < 0.5:
        return None, clarity
    if abs(track.midi - midi) <= 1.0:
        return None, max(clarity, track.clarity)
    if track.midi > midi:
        return None, clarity  # odd-partial waves (square, clarinet) have a half-period envelope
    share = _comb_share(segment, rate, midi_to_hz(track.midi), midi_to_hz(midi))
    if share < cfg.comb_share:
        return None, clarity
    if clarity < cfg.weak_clarity and track.clarity > clarity:
        return track.midi, track.clarity * track.voiced
    return None, clarity * (1.0 - 0.5 * track.clarity * track.voiced)


def _comb_share(x: np.ndarray, rate: int, low_hz: float, high_hz: float, top_hz: float = 5000.0,
                n_teeth: int = 20) -> float:
    """Share of the spectral peak energy on the first ``n_teeth`` harmonics of ``low_hz`` that are
    not near a harmonic of ``high_hz``, of that plus the energy on the harmonics of ``high_hz``
    (both up to ``top_hz``): near 0 when ``low_hz`` is a mere subharmonic, near 1 when ``high_hz``
    explains little. (A denser comb would catch any partial within its tolerance.)"""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    bin_hz = rate / x.size
    top = min(top_hz, 0.45 * rate)
    if low_hz >= top:
        return 0.0
    # Partials must stand 10 dB above the noise floor (the median bin) to count.
    floor = 3.0 * float(np.median(spec[: int(top / bin_hz) + 1]))
    low = low_hz * np.arange(1, min(n_teeth, int(top / low_hz)) + 1)
    high = high_hz * np.arange(1, max(1, int(top / high_hz)) + 1)
    near = np.abs(low[:, None] - high[None, :]).min(axis=1) < np.maximum(0.03 * low, 2 * bin_hz)
    own = _harmonic_energy(spec, bin_hz, low[~near], floor)
    return own / max(own + _harmonic_energy(spec, bin_hz, high, floor), 1e-20)
