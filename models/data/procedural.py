"""Seeded synthetic instruments, so that the feature extractor meets timbres beyond General MIDI.

One vectorised engine (numpy, no per-sample loops) covers additive, subtractive (a time-varying
filter evaluated at each partial's frequency), plucked/hammered strings (stiff-string partials with
frequency-dependent decay), bells and bars (inharmonic modes), noise excitation (FFT-shaped noise),
detuned ensembles and two-operator FM. A *recipe* draws a ``Timbre`` from a seed; the family comes
from the recipe. Velocity changes brightness and attack, since loudness is normalised away.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from models.data.render import NoteTiming
from models.units import midi_to_hz

MAX_PARTIALS = 96
NYQUIST_GUARD = 0.45  # partials above this fraction of the sample rate are dropped (no aliasing)

# Tuned bells and bars (glockenspiel-, vibraphone-like): inharmonic partials over a strong fundamental.
BELL_RATIOS = (1.0, 2.0, 2.92, 4.16, 5.43, 6.8, 8.3)
BAR_RATIOS = (1.0, 3.99, 9.9, 17.2)
MEMBRANE_RATIOS = (1.0, 1.59, 2.14, 2.30, 2.65, 2.92, 3.16, 3.50, 3.60, 4.06)


@dataclass(frozen=True)
class Timbre:
    """Everything that makes one procedural instrument sound like itself."""

    recipe: str
    family: str
    ratios: tuple[float, ...] = ()            # inharmonic partial ratios; empty = harmonic series
    stiffness: float = 0.0                     # f_k = k f0 sqrt(1 + B k^2)
    tilt: float = 1.0                          # partial k has amplitude k^-tilt
    even_gain: float = 1.0                     # even harmonics scaled (clarinet-like < 1)
    jitter: float = 0.0                        # per-partial random gain spread (dB / 20)
    formants: tuple[tuple[float, float, float], ...] = ()  # (Hz, bandwidth Hz, gain) peaks
    attack_s: float = 0.005
    decay_s: float = 1.0                       # percussive: time constant of the fundamental
    sustain: float = 1.0                       # sustained instruments: level after decay
    release_s: float = 0.2
    percussive: bool = False
    decay_slope: float = 0.0                   # partial k decays (1 + slope (k-1)) times faster
    cutoff_hz: float = 20000.0                 # filter after its envelope settles
    cutoff_peak_hz: float = 20000.0            # filter at note-on
    cutoff_env_s: float = 0.2
    resonance: float = 0.0                     # extra gain of a peak at the cutoff
    cutoff_lfo_hz: float = 0.0                 # cutoff swept by an LFO (filter-sweep synths)
    cutoff_lfo_octaves: float = 0.0
    velocity_brightness: float = 0.5
    vibrato_hz: float = 0.0
    vibrato_cents: float = 0.0
    voices: int = 1
    detune_cents: float = 0.0
    chorus_hz: float = 0.0                     # each voice's detune wobbles at about this rate (chorus)
    chorus_cents: float = 0.0
    fm_ratio: float = 0.0                      # 0 = no FM; else modulator frequency / f0
    fm_index: float = 0.0
    fm_index_decay_s: float = 0.0              # 0 = index constant
    fm_index_floor: float = 0.15               # share of the index left after its decay
    noise_level: float = 0.0                   # noise RMS relative to the tone's RMS
    noise_decay_s: float = 0.0                 # 0 = noise follows the tone's envelope, else a burst
    noise_cutoff_hz: float = 4000.0
    noise_harmonic: bool = False               # noise concentrated around the harmonics (breath)
    seed: int = 0
    gains: tuple[float, ...] = field(default=(), repr=False)  # per-partial fixed gains (from jitter)


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _partials(tb: Timbre, f0: float, sample_rate: int) -> np.ndarray:
    """Partial frequencies in Hz below the Nyquist guard, ``[K]``."""
    if tb.ratios:
        freqs = f0 * np.asarray(tb.ratios)
    else:
        k = np.arange(1, MAX_PARTIALS + 1)
        freqs = f0 * k * np.sqrt(1.0 + tb.stiffness * k ** 2)
    return freqs[freqs < NYQUIST_GUARD * sample_rate]


def _spectral_gain(tb: Timbre, freqs: np.ndarray, f0: float) -> np.ndarray:
    k = np.arange(1, len(freqs) + 1)
    gain = k ** -tb.tilt
    if not tb.ratios:
        gain = np.where(k % 2 == 0, gain * tb.even_gain, gain)
    if tb.gains:
        gain = gain * np.asarray(tb.gains[:len(freqs)])
    for hz, bw, g in tb.formants:
        gain = gain * (1.0 + g * np.exp(-0.5 * ((freqs - hz) / bw) ** 2))
    return gain


def _filter(freqs: np.ndarray, cutoff: np.ndarray, resonance: float) -> np.ndarray:
    """Two-pole low-pass magnitude with a resonant bump: partials ``[K, 1]`` x cutoff ``[T]``."""
    ratio = freqs[:, None] / cutoff[None, :]
    mag = 1.0 / np.sqrt(1.0 + ratio ** 4)
    if resonance:
        mag = mag * (1.0 + resonance * np.exp(-0.5 * (np.log2(ratio) / 0.15) ** 2))
    return mag


def _envelope(tb: Timbre, t: np.ndarray, hold_s: float, attack_s: float) -> np.ndarray:
    """Amplitude envelope ``[T]``: attack, decay to sustain (sustained instruments), release."""
    env = np.clip(t / max(attack_s, 1e-4), 0.0, 1.0)
    if not tb.percussive:
        env = env * (tb.sustain + (1.0 - tb.sustain) * np.exp(-np.maximum(t - attack_s, 0) / tb.decay_s))
    release = np.exp(-np.maximum(t - hold_s, 0.0) / max(tb.release_s, 1e-3))
    return env * release


def _additive(tb: Timbre, f0: float, bright: float, t: np.ndarray, rng: np.random.Generator,
              sample_rate: int) -> np.ndarray:
    freqs = _partials(tb, f0, sample_rate)
    if len(freqs) == 0:
        return np.zeros_like(t)
    amp = _spectral_gain(tb, freqs, f0)[:, None]                       # [K, 1]
    cutoff = (tb.cutoff_hz + (tb.cutoff_peak_hz - tb.cutoff_hz) * np.exp(-t / tb.cutoff_env_s)) * bright
    if tb.cutoff_lfo_octaves:
        cutoff = cutoff * 2.0 ** (tb.cutoff_lfo_octaves * np.sin(2 * np.pi * tb.cutoff_lfo_hz * t
                                                                 + rng.uniform(0, 2 * np.pi)))
    amp = amp * _filter(freqs, np.maximum(cutoff, 20.0), tb.resonance)  # [K, T]
    if tb.percussive:
        key_track = (f0 / 261.6) ** -0.4  # high notes ring shorter, as on real strings and bars
        k = np.arange(len(freqs))[:, None]
        tau = tb.decay_s * key_track / (1.0 + tb.decay_slope * k)
        amp = amp * np.exp(-t[None, :] / tau)
    wobble = tb.vibrato_cents / 1200 * np.log(2) * np.sin(2 * np.pi * tb.vibrato_hz * t) \
        * np.clip(t / 0.3, 0, 1)  # vibrato fades in over 0.3 s
    # Phase of a partial = 2 pi f_k (t + integral of the vibrato): one cumulative sum for all partials.
    warped_t = np.cumsum(1.0 + wobble) / sample_rate if tb.vibrato_cents else t
    amp = amp.astype(np.float32)
    out = np.zeros_like(t)
    for v in range(tb.voices):
        detune = 2 ** ((tb.detune_cents * (v - (tb.voices - 1) / 2)) / 1200) if tb.voices > 1 else 1.0
        offsets = rng.uniform(0, 2 * np.pi, (len(freqs), 1))
        voice_t = warped_t
        if tb.chorus_cents:
            rate = tb.chorus_hz * rng.uniform(0.7, 1.3)
            wobble_v = tb.chorus_cents / 1200 * np.log(2) * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
            voice_t = warped_t + np.cumsum(wobble_v) / sample_rate
        phase = (2 * np.pi * freqs[:, None] * detune) * voice_t[None, :] + offsets  # [K, T]
        out += np.einsum("kt,kt->t", amp, np.sin(phase.astype(np.float32)))
    return out


def _fm(tb: Timbre, f0: float, bright: float, t: np.ndarray, rng: np.random.Generator,
        sample_rate: int) -> np.ndarray:
    fm = f0 * tb.fm_ratio
    # Carson's rule: keep the sidebands under the Nyquist guard so high keys do not alias.
    max_index = max((NYQUIST_GUARD * sample_rate - f0) / fm - 1.0, 0.0)
    index = min(tb.fm_index * bright, max_index)
    if tb.fm_index_decay_s:
        index_t = index * (tb.fm_index_floor + (1 - tb.fm_index_floor) * np.exp(-t / tb.fm_index_decay_s))
    else:
        index_t = np.full_like(t, index)
    carrier = 2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)
    wave = np.sin(carrier + index_t * np.sin(2 * np.pi * fm * t))
    if tb.percussive:
        wave = wave * np.exp(-t / (tb.decay_s * (f0 / 261.6) ** -0.4))
    return wave


def _noise(tb: Timbre, f0: float, n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = 1.0 / np.sqrt(1.0 + (freqs / tb.noise_cutoff_hz) ** 4)
    if tb.noise_harmonic:
        frac = freqs / f0
        shape = shape * np.exp(-0.5 * ((frac - np.round(frac)) / 0.06) ** 2) * (frac > 0.5)
    noise = np.fft.irfft(spec * shape, n)
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def render_note(tb, midi: int, velocity: int, timing: NoteTiming) -> np.ndarray:
    """One note of a ``Timbre`` or ``voice.VoiceTimbre`` -> float32 ``[timing.num_samples]``, peak 1
    (deterministic from timbre, key, velocity)."""
    sr, n = timing.sample_rate, timing.num_samples
    rng = np.random.default_rng(_seed(tb.seed, midi, velocity))
    if not isinstance(tb, Timbre):
        from models.data.voice import render_voice  # voice.py builds on this module

        return render_voice(tb, midi, velocity, timing, rng)
    t = np.arange(n) / sr
    f0 = midi_to_hz(midi)
    vel = velocity / 127.0
    bright = 2.0 ** (tb.velocity_brightness * 2 * (vel - 0.75))  # +-1 octave of cutoff at full setting
    attack_s = tb.attack_s * (1.6 - 0.8 * vel)
    hold_s = timing.hold_samples / sr
    tone = _fm(tb, f0, bright, t, rng, sr) if tb.fm_ratio else _additive(tb, f0, bright, t, rng, sr)
    env = _envelope(tb, t, hold_s, attack_s)
    wave = tone * env
    if tb.noise_level:
        rms = np.sqrt(np.mean(wave ** 2)) + 1e-12
        if tb.noise_decay_s:
            noise_env = np.exp(-t / tb.noise_decay_s) * np.clip(t / 0.001, 0, 1)
        else:
            noise_env = env
        wave = wave + tb.noise_level * rms * _noise(tb, f0, n, rng, sr) * noise_env
    peak = np.abs(wave).max()
    return (wave / peak if peak > 0 else wave).astype(np.float32)
