"""Recipes: seeded draws of ``Timbre`` (or ``VoiceTimbre``) parameters, one per kind of instrument, each
with its family."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.data.procedural import BAR_RATIOS, BELL_RATIOS, MAX_PARTIALS, MEMBRANE_RATIOS, Timbre, _seed
from models.data.voice import VOICE_RANGE, VOICE_TYPES, VOWELS, VoiceTimbre, vowel_formants


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _log_u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _formants(rng: np.random.Generator, n: int, lo: float, hi: float, gain: tuple[float, float]):
    return tuple((_log_u(rng, lo, hi), _log_u(rng, 80, 600), _u(rng, *gain)) for _ in range(n))


def organ(rng):
    # Drawbars 8' 4' 2 2/3' 2' 1 3/5' 1 1/3' 1'; no 16' or 5 1/3': they put the waveform's period
    # (and the measured pitch) an octave below the key's label.
    drawbars = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
    keep = tuple(r for r in drawbars if r == 1.0 or rng.random() < 0.55)
    return dict(ratios=keep, tilt=_u(rng, 0.0, 0.8), attack_s=_u(rng, 0.005, 0.05), sustain=1.0,
                release_s=_u(rng, 0.03, 0.3), jitter=0.5, vibrato_hz=_u(rng, 5, 7) if rng.random() < 0.3 else 0.0,
                vibrato_cents=_u(rng, 5, 20), velocity_brightness=0.0)


def flute(rng):
    return dict(tilt=_u(rng, 1.8, 3.0), even_gain=_u(rng, 0.5, 1.0), attack_s=_u(rng, 0.03, 0.12),
                decay_s=0.3, sustain=_u(rng, 0.7, 1.0), release_s=_u(rng, 0.05, 0.25), vibrato_hz=_u(rng, 4.5, 6),
                vibrato_cents=_u(rng, 5, 25), noise_level=_u(rng, 0.05, 0.4), noise_harmonic=True,
                noise_cutoff_hz=_u(rng, 2000, 7000), jitter=0.3)


def reed(rng):
    return dict(tilt=_u(rng, 0.6, 1.3), even_gain=_u(rng, 0.05, 0.6), attack_s=_u(rng, 0.02, 0.08),
                decay_s=0.3, sustain=_u(rng, 0.6, 1.0), release_s=_u(rng, 0.05, 0.2),
                formants=_formants(rng, 2, 500, 3500, (1.0, 4.0)), cutoff_hz=_u(rng, 2000, 6000),
                cutoff_peak_hz=_u(rng, 3000, 8000), vibrato_hz=_u(rng, 4, 6), vibrato_cents=_u(rng, 0, 15),
                noise_level=_u(rng, 0.0, 0.15), noise_harmonic=True, jitter=0.4)


def brass(rng):
    return dict(tilt=_u(rng, 0.4, 1.0), attack_s=_u(rng, 0.03, 0.1), decay_s=_u(rng, 0.1, 0.4),
                sustain=_u(rng, 0.6, 0.9), release_s=_u(rng, 0.05, 0.2), cutoff_hz=_u(rng, 800, 2500),
                cutoff_peak_hz=_u(rng, 2500, 6000), cutoff_env_s=_u(rng, 0.05, 0.3),
                velocity_brightness=_u(rng, 0.5, 1.0), formants=_formants(rng, 1, 800, 2500, (0.5, 2.0)),
                vibrato_hz=_u(rng, 4.5, 6), vibrato_cents=_u(rng, 0, 12), jitter=0.3)


def bowed(rng):
    return dict(tilt=_u(rng, 0.8, 1.2), attack_s=_u(rng, 0.05, 0.25), decay_s=0.5, sustain=_u(rng, 0.8, 1.0),
                release_s=_u(rng, 0.1, 0.4), formants=_formants(rng, 4, 250, 4000, (0.5, 3.0)),
                cutoff_hz=_u(rng, 3000, 7000), cutoff_peak_hz=_u(rng, 3000, 7000),
                vibrato_hz=_u(rng, 4.5, 6.5), vibrato_cents=_u(rng, 8, 30), noise_level=_u(rng, 0.0, 0.1),
                noise_harmonic=True, jitter=0.6)


def pluck(rng):
    pos = _u(rng, 0.08, 0.3)  # pluck position: harmonics at multiples of 1/pos are weak
    gains = tuple(abs(np.sin(np.pi * k * pos)) + 0.02 for k in range(1, MAX_PARTIALS + 1))
    return dict(tilt=_u(rng, 0.8, 1.6), stiffness=_log_u(rng, 1e-6, 1e-4), percussive=True,
                decay_s=_log_u(rng, 0.4, 2.5), decay_slope=_u(rng, 0.05, 0.5), release_s=_u(rng, 0.05, 0.3),
                attack_s=0.002, gains=gains, noise_level=_u(rng, 0.0, 0.3), noise_decay_s=_u(rng, 0.005, 0.03),
                noise_cutoff_hz=_u(rng, 2000, 7000), formants=_formants(rng, 2, 100, 3000, (0.3, 2.0)))


def bass(rng):
    return dict(tilt=_u(rng, 1.0, 2.0), stiffness=_log_u(rng, 1e-6, 3e-5), percussive=rng.random() < 0.6,
                decay_s=_log_u(rng, 0.5, 2.0), decay_slope=_u(rng, 0.1, 0.6), sustain=_u(rng, 0.5, 0.9),
                release_s=_u(rng, 0.05, 0.2), attack_s=_u(rng, 0.002, 0.02), cutoff_hz=_u(rng, 300, 1500),
                cutoff_peak_hz=_u(rng, 1000, 5000), cutoff_env_s=_u(rng, 0.05, 0.3), resonance=_u(rng, 0, 2),
                velocity_brightness=_u(rng, 0.3, 1.0))


def epiano(rng):
    return dict(fm_ratio=float(rng.choice([1.0, 1.0, 2.0, 14.0])), fm_index=_u(rng, 0.5, 3.0),
                fm_index_decay_s=_u(rng, 0.05, 0.5), percussive=True, decay_s=_log_u(rng, 0.8, 3.0),
                attack_s=0.002, release_s=_u(rng, 0.1, 0.4), velocity_brightness=_u(rng, 0.5, 1.0),
                noise_level=_u(rng, 0.0, 0.1), noise_decay_s=0.01)


def hammer(rng):
    return dict(tilt=_u(rng, 1.0, 1.8), stiffness=_log_u(rng, 5e-5, 6e-4), percussive=True,
                decay_s=_log_u(rng, 1.0, 4.0), decay_slope=_u(rng, 0.05, 0.3), attack_s=0.002,
                release_s=_u(rng, 0.1, 0.4), voices=2, detune_cents=_u(rng, 0.5, 3.0),
                cutoff_hz=_u(rng, 1500, 5000), cutoff_peak_hz=_u(rng, 3000, 8000), cutoff_env_s=_u(rng, 0.1, 0.6),
                velocity_brightness=_u(rng, 0.6, 1.0), noise_level=_u(rng, 0.05, 0.4),
                noise_decay_s=_u(rng, 0.003, 0.02), noise_cutoff_hz=_u(rng, 1000, 4000))


def bell(rng):
    ratios = tuple(r * _u(rng, 0.97, 1.03) if r != 1.0 else 1.0 for r in BELL_RATIOS)
    return dict(ratios=ratios, tilt=_u(rng, 0.6, 1.2), percussive=True, decay_s=_log_u(rng, 1.5, 5.0),
                decay_slope=_u(rng, 0.05, 0.4), attack_s=0.001, release_s=_u(rng, 0.3, 1.0), jitter=0.8,
                noise_level=_u(rng, 0.0, 0.2), noise_decay_s=0.005)


def bar(rng):
    ratios = tuple(r * _u(rng, 0.98, 1.02) if r != 1.0 else 1.0 for r in BAR_RATIOS)
    return dict(ratios=ratios, tilt=_u(rng, 0.8, 2.0), percussive=True, decay_s=_log_u(rng, 0.3, 2.5),
                decay_slope=_u(rng, 0.3, 1.5), attack_s=0.001, release_s=_u(rng, 0.1, 0.5),
                noise_level=_u(rng, 0.0, 0.3), noise_decay_s=_u(rng, 0.002, 0.01))


def lead(rng):
    square = rng.random() < 0.5
    return dict(tilt=1.0, even_gain=0.0 if square else 1.0, attack_s=_u(rng, 0.003, 0.05),
                decay_s=_u(rng, 0.1, 0.6), sustain=_u(rng, 0.5, 1.0), release_s=_u(rng, 0.05, 0.3),
                cutoff_hz=_u(rng, 600, 4000), cutoff_peak_hz=_u(rng, 2000, 8000), cutoff_env_s=_u(rng, 0.05, 0.5),
                resonance=_u(rng, 0.0, 4.0), velocity_brightness=_u(rng, 0.3, 1.0),
                vibrato_hz=_u(rng, 4, 7) if rng.random() < 0.5 else 0.0, vibrato_cents=_u(rng, 5, 30))


def pad(rng):
    return dict(tilt=_u(rng, 0.9, 1.5), attack_s=_u(rng, 0.15, 0.6), decay_s=_u(rng, 0.5, 1.5),
                sustain=_u(rng, 0.6, 1.0), release_s=_u(rng, 0.2, 0.6), voices=3, detune_cents=_u(rng, 4, 18),
                cutoff_hz=_u(rng, 800, 4000), cutoff_peak_hz=_u(rng, 300, 3000), cutoff_env_s=_u(rng, 0.3, 1.5),
                resonance=_u(rng, 0.0, 1.5), velocity_brightness=_u(rng, 0.2, 0.6))


def vocal(rng):
    vowels = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))
    f1, f2, f3 = vowels[int(rng.integers(len(vowels)))]
    formants = tuple((f * _u(rng, 0.9, 1.15), _u(rng, 60, 150), _u(rng, 4, 12)) for f in (f1, f2, f3))
    return dict(tilt=_u(rng, 1.2, 2.0), formants=formants, attack_s=_u(rng, 0.05, 0.2), decay_s=0.4,
                sustain=_u(rng, 0.8, 1.0), release_s=_u(rng, 0.1, 0.3), vibrato_hz=_u(rng, 4.5, 6.5),
                vibrato_cents=_u(rng, 15, 45), noise_level=_u(rng, 0.02, 0.2), noise_harmonic=True,
                voices=int(rng.integers(1, 3)), detune_cents=_u(rng, 3, 10))


def fm_lead(rng):
    return dict(fm_ratio=float(rng.choice([0.5, 1.0, 2.0, 3.0])), fm_index=_u(rng, 1.0, 5.0),
                fm_index_decay_s=0.0 if rng.random() < 0.5 else _u(rng, 0.2, 1.0), attack_s=_u(rng, 0.005, 0.08),
                decay_s=_u(rng, 0.2, 0.8), sustain=_u(rng, 0.5, 1.0), release_s=_u(rng, 0.05, 0.3),
                velocity_brightness=_u(rng, 0.3, 1.0))


def noise_fx(rng):
    return dict(tilt=_u(rng, 0.5, 2.0), attack_s=_u(rng, 0.01, 0.4), decay_s=_u(rng, 0.3, 1.0),
                sustain=_u(rng, 0.3, 1.0), release_s=_u(rng, 0.1, 0.5), noise_level=_u(rng, 1.0, 4.0),
                noise_harmonic=True, noise_cutoff_hz=_u(rng, 1500, 7000), cutoff_hz=_u(rng, 500, 3000),
                cutoff_peak_hz=_u(rng, 3000, 8000), cutoff_env_s=_u(rng, 0.2, 1.0), resonance=_u(rng, 0, 3))


def membrane(rng):
    ratios = tuple(r * _u(rng, 0.97, 1.03) if r != 1.0 else 1.0 for r in MEMBRANE_RATIOS)
    return dict(ratios=ratios, tilt=_u(rng, 0.3, 1.2), percussive=True, decay_s=_log_u(rng, 0.08, 0.6),
                decay_slope=_u(rng, 0.2, 1.0), attack_s=0.001, release_s=_u(rng, 0.05, 0.2), jitter=0.6,
                noise_level=_u(rng, 0.2, 1.5), noise_decay_s=_u(rng, 0.01, 0.08), noise_cutoff_hz=_u(rng, 2000, 7000))


def sweep(rng):
    # A resonant low-pass swept by an LFO and an envelope that may rise or fall (filter-sweep synths).
    rising = rng.random() < 0.5
    lo, hi = _log_u(rng, 300, 1200), _log_u(rng, 2000, 7000)
    return dict(tilt=1.0, even_gain=0.0 if rng.random() < 0.4 else 1.0, attack_s=_u(rng, 0.005, 0.2),
                decay_s=_u(rng, 0.3, 1.0), sustain=_u(rng, 0.7, 1.0), release_s=_u(rng, 0.05, 0.4),
                cutoff_hz=hi if rising else lo, cutoff_peak_hz=lo if rising else hi, cutoff_env_s=_u(rng, 0.2, 1.2),
                cutoff_lfo_hz=_log_u(rng, 0.3, 6.0), cutoff_lfo_octaves=_u(rng, 0.3, 1.5), resonance=_u(rng, 1.0, 6.0),
                velocity_brightness=_u(rng, 0.2, 0.8), voices=int(rng.integers(1, 3)), detune_cents=_u(rng, 3, 12))


def chorus_pad(rng):
    return dict(tilt=_u(rng, 0.8, 1.6), even_gain=_u(rng, 0.3, 1.0), attack_s=_u(rng, 0.1, 0.5),
                decay_s=_u(rng, 0.5, 1.5), sustain=_u(rng, 0.6, 1.0), release_s=_u(rng, 0.2, 0.6),
                voices=int(rng.integers(3, 6)), detune_cents=_u(rng, 4, 15), chorus_hz=_u(rng, 0.3, 2.0),
                chorus_cents=_u(rng, 5, 20), vibrato_hz=_u(rng, 4, 6.5) if rng.random() < 0.5 else 0.0,
                vibrato_cents=_u(rng, 5, 25), cutoff_hz=_u(rng, 1000, 5000), cutoff_peak_hz=_u(rng, 500, 5000),
                cutoff_env_s=_u(rng, 0.3, 1.5), cutoff_lfo_hz=_u(rng, 0.1, 0.8), cutoff_lfo_octaves=_u(rng, 0.0, 0.6),
                formants=_formants(rng, 2, 400, 3000, (0.3, 2.0)), velocity_brightness=_u(rng, 0.2, 0.6))


def blip(rng):
    # Short pitched hits: a few partials, a fast exponential decay (still long enough to hear a pitch).
    return dict(tilt=_u(rng, 1.2, 3.0), even_gain=_u(rng, 0.0, 1.0), percussive=True, decay_s=_log_u(rng, 0.06, 0.3),
                decay_slope=_u(rng, 0.2, 1.5), attack_s=0.001, release_s=_u(rng, 0.02, 0.1),
                cutoff_hz=_u(rng, 1500, 6000), cutoff_peak_hz=_u(rng, 3000, 9000), cutoff_env_s=_u(rng, 0.01, 0.08),
                velocity_brightness=_u(rng, 0.3, 1.0))


def mallet_hit(rng):
    # Marimba / xylophone bars: tuned overtones (~4x and ~10x), short decays, a soft or hard mallet.
    ratios = (1.0, _u(rng, 3.9, 4.05), _u(rng, 9.2, 10.2)) if rng.random() < 0.6 else (1.0, 3.0, _u(rng, 5.9, 6.1))
    return dict(ratios=ratios, tilt=_u(rng, 1.0, 2.5), percussive=True, decay_s=_log_u(rng, 0.12, 0.8),
                decay_slope=_u(rng, 0.5, 3.0), attack_s=0.001, release_s=_u(rng, 0.05, 0.2),
                noise_level=_u(rng, 0.05, 0.5), noise_decay_s=_u(rng, 0.002, 0.01), noise_cutoff_hz=_u(rng, 1500, 6000))


def synth_pluck(rng):
    return dict(tilt=_u(rng, 0.7, 1.3), even_gain=_u(rng, 0.0, 1.0), percussive=True, decay_s=_log_u(rng, 0.15, 0.8),
                decay_slope=_u(rng, 0.3, 2.0), attack_s=0.001, release_s=_u(rng, 0.05, 0.2),
                cutoff_hz=_u(rng, 300, 1500), cutoff_peak_hz=_u(rng, 3000, 9000), cutoff_env_s=_u(rng, 0.02, 0.2),
                resonance=_u(rng, 0.0, 3.0), velocity_brightness=_u(rng, 0.5, 1.0), voices=int(rng.integers(1, 3)),
                detune_cents=_u(rng, 2, 10))


def fm_bell(rng):
    # Inharmonic FM (irrational ratio): metallic sidebands while the index is high, the fundamental after.
    # Ratios above 2 keep every sideband above the carrier (a sideband below it would be heard as the pitch).
    return dict(fm_ratio=float(rng.choice([2.76, 3.14, 4.24, 5.19, 6.28])) * _u(rng, 0.99, 1.01),
                fm_index=_u(rng, 1.0, 3.0), fm_index_decay_s=_u(rng, 0.02, 0.1), fm_index_floor=_u(rng, 0.0, 0.05),
                percussive=True,
                decay_s=_log_u(rng, 0.8, 4.0), attack_s=0.001, release_s=_u(rng, 0.3, 1.0),
                velocity_brightness=_u(rng, 0.4, 1.0))


def tubular(rng):
    # Free-free bar modes (tubular bells, chimes) over a strong fundamental.
    modes = (1.0, 2.756, 5.404, 8.933, 13.345)
    ratios = tuple(r * _u(rng, 0.985, 1.015) if r != 1.0 else 1.0 for r in modes)
    return dict(ratios=ratios, tilt=_u(rng, 2.5, 3.5), percussive=True, decay_s=_log_u(rng, 1.0, 4.0),
                decay_slope=_u(rng, 1.0, 3.0), attack_s=0.001, release_s=_u(rng, 0.3, 1.0), jitter=0.25,
                noise_level=_u(rng, 0.0, 0.2), noise_decay_s=0.004)


def metal(rng):
    # Plates, gongs, struck sheet metal: dense inharmonic modes with no clear pitch.
    ratios = (1.0, *sorted(_log_u(rng, 1.1, 12.0) for _ in range(int(rng.integers(10, 20)))))
    return dict(ratios=ratios, tilt=_u(rng, 0.0, 0.8), percussive=True, decay_s=_log_u(rng, 0.3, 3.0),
                decay_slope=_u(rng, 0.0, 0.4), attack_s=_u(rng, 0.001, 0.02), release_s=_u(rng, 0.2, 0.8), jitter=1.0,
                noise_level=_u(rng, 0.1, 0.8), noise_decay_s=_u(rng, 0.01, 0.1), noise_cutoff_hz=_u(rng, 3000, 7500))


def _vowel_path(rng, voice_type: str, n: int) -> tuple[tuple, tuple]:
    """``n`` different vowels of one voice type and the times (fractions of the hold) they are reached."""
    vowels = rng.choice(VOWELS, size=n, replace=False)
    times = (0.0,) if n == 1 else tuple(np.sort(rng.uniform(0.0, 1.0, n)) * _u(rng, 0.5, 1.0))
    return tuple(vowel_formants(voice_type, str(v)) for v in vowels), times


def _singer(rng) -> dict:
    """Glottis, perturbations and vibrato of one singer."""
    return dict(open_quotient=_u(rng, 0.45, 0.8), speed_quotient=_u(rng, 1.5, 4.0), breath=_log_u(rng, 0.01, 0.35),
                jitter=_u(rng, 0.001, 0.008), shimmer_db=_u(rng, 0.1, 0.8), vibrato_hz=_u(rng, 4.5, 6.5),
                vibrato_cents=_u(rng, 10, 40), vibrato_delay_s=_u(rng, 0.15, 0.5), formant_scale=_u(rng, 0.94, 1.06),
                attack_s=_u(rng, 0.03, 0.25), decay_s=0.4, sustain=_u(rng, 0.8, 1.0), release_s=_u(rng, 0.1, 0.4),
                velocity_brightness=_u(rng, 0.3, 0.8))


def voice_solo(rng):
    path, times = _vowel_path(rng, str(rng.choice(VOICE_TYPES)), 1)
    return dict(_singer(rng), path=path, path_times=times)


def voice_glide(rng):
    # Diphthongs and vowel glides: the formants move within the note.
    path, times = _vowel_path(rng, str(rng.choice(VOICE_TYPES)), int(rng.integers(2, 4)))
    return dict(_singer(rng), path=path, path_times=times)


def choir(rng):
    path, times = _vowel_path(rng, str(rng.choice(VOICE_TYPES)), int(rng.integers(1, 3)))
    return dict(_singer(rng), path=path, path_times=times, voices=int(rng.integers(3, 7)),
                detune_cents=_u(rng, 4, 18), voice_spread=_u(rng, 0.02, 0.06), vibrato_cents=_u(rng, 8, 35),
                breath=_log_u(rng, 0.05, 0.4), attack_s=_u(rng, 0.1, 0.4))


def _synth_formants(rng) -> tuple:
    """Three formant peaks a vowel does not constrain (Hz, dB, bandwidth)."""
    return ((_log_u(rng, 250, 1000), 0.0, _log_u(rng, 50, 200)), (_log_u(rng, 700, 2800), _u(rng, -12, 0), _log_u(rng, 60, 250)),
            (_log_u(rng, 2000, 4500), _u(rng, -20, -4), _log_u(rng, 80, 300)))


def formant_lead(rng):
    n = int(rng.integers(1, 4))
    wah = rng.random() < 0.6
    return dict(source=str(rng.choice(["saw", "pulse"])), pulse_width=_u(rng, 0.1, 0.5),
                path=tuple(_synth_formants(rng) for _ in range(n)), path_times=tuple(np.sort(rng.uniform(0, 1, n))),
                track_f0=False, shift_lfo_hz=_log_u(rng, 0.5, 6.0) if wah else 0.0, shift_lfo_octaves=_u(rng, 0.2, 1.0),
                breath=0.0, jitter=_u(rng, 0.0, 0.002), shimmer_db=0.0, vibrato_hz=_u(rng, 4, 7),
                vibrato_cents=_u(rng, 0, 25), vibrato_delay_s=_u(rng, 0.0, 0.3), voices=int(rng.integers(1, 3)),
                detune_cents=_u(rng, 3, 12), attack_s=_u(rng, 0.005, 0.1), decay_s=_u(rng, 0.2, 0.8),
                sustain=_u(rng, 0.6, 1.0), release_s=_u(rng, 0.05, 0.3), velocity_brightness=_u(rng, 0.3, 1.0))


def formant_pad(rng):
    # Detuned saws morphing between vowels of a voice type, with a slow formant drift.
    path, times = _vowel_path(rng, str(rng.choice(VOICE_TYPES)), int(rng.integers(2, 4)))
    return dict(source="saw", path=path, path_times=times, track_f0=False, shift_lfo_hz=_u(rng, 0.1, 0.7),
                shift_lfo_octaves=_u(rng, 0.0, 0.4), breath=_u(rng, 0.0, 0.1), jitter=0.0, shimmer_db=0.0,
                vibrato_hz=_u(rng, 4, 6), vibrato_cents=_u(rng, 0, 15), voices=int(rng.integers(3, 7)),
                detune_cents=_u(rng, 5, 15), voice_spread=0.0, attack_s=_u(rng, 0.2, 0.7), decay_s=_u(rng, 0.5, 1.5),
                sustain=_u(rng, 0.7, 1.0), release_s=_u(rng, 0.2, 0.6), velocity_brightness=_u(rng, 0.2, 0.6))


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    draw: Callable[[np.random.Generator], dict]
    pitched: bool = True
    weight: int = 1              # slots in the recipe cycle (timbres the fonts lack get more)
    voice: bool = False          # draws a voice.VoiceTimbre instead of a Timbre


RECIPES: tuple[Recipe, ...] = (
    Recipe("organ", "organ", organ), Recipe("flute", "flute", flute), Recipe("reed", "reed", reed),
    Recipe("brass", "brass", brass), Recipe("bowed", "string", bowed), Recipe("pluck", "guitar", pluck),
    Recipe("bass", "bass", bass), Recipe("epiano", "keyboard", epiano), Recipe("hammer", "keyboard", hammer),
    Recipe("bell", "mallet", bell), Recipe("bar", "mallet", bar), Recipe("lead", "synth_lead", lead),
    Recipe("pad", "synth_pad", pad), Recipe("vocal", "vocal", vocal), Recipe("fm_lead", "synth_lead", fm_lead),
    Recipe("noise_fx", "fx", noise_fx), Recipe("membrane", "percussive", membrane, pitched=False),
    Recipe("voice", "vocal", voice_solo, weight=3, voice=True),
    Recipe("voice_glide", "vocal", voice_glide, weight=3, voice=True),
    Recipe("choir", "vocal", choir, weight=3, voice=True),
    Recipe("formant_lead", "synth_lead", formant_lead, weight=2, voice=True),
    Recipe("formant_pad", "synth_pad", formant_pad, weight=2, voice=True),
    Recipe("sweep", "synth_lead", sweep, weight=2), Recipe("chorus_pad", "synth_pad", chorus_pad, weight=2),
    Recipe("blip", "synth_lead", blip, weight=2), Recipe("mallet_hit", "mallet", mallet_hit),
    Recipe("synth_pluck", "synth_lead", synth_pluck, weight=2), Recipe("fm_bell", "mallet", fm_bell, weight=2),
    Recipe("tubular", "mallet", tubular), Recipe("metal", "percussive", metal, pitched=False),
)
# Procedural instrument i plays recipe CYCLE[i % len(CYCLE)]: each recipe ``weight`` times per cycle,
# spread over the cycle so that a build of any size (or --limit-instruments) meets every recipe early.
CYCLE: tuple[Recipe, ...] = tuple(RECIPES[i] for _, i in sorted(
    ((k + 0.5) / r.weight, i) for i, r in enumerate(RECIPES) for k in range(r.weight)))


def recipe_of(index: int) -> Recipe:
    return CYCLE[index % len(CYCLE)]


def make_timbre(index: int, seed: int):
    """Procedural instrument number ``index`` of a build seeded with ``seed``: a ``Timbre``, or a
    ``voice.VoiceTimbre`` for the source-filter recipes."""
    return draw_timbre(recipe_of(index), index, seed)


def draw_timbre(recipe: Recipe, index: int, seed: int):
    """``recipe``'s draw number ``index`` of a build seeded with ``seed``."""
    s = _seed("procedural", seed, index)
    rng = np.random.default_rng(s)
    params = recipe.draw(rng)
    if recipe.voice:
        return VoiceTimbre(recipe=recipe.name, family=recipe.family, seed=s, **params)
    jitter = params.pop("jitter", 0.0)
    gains = params.pop("gains", None)
    if gains is None and jitter:
        gains = tuple(10 ** (rng.normal(0, jitter, MAX_PARTIALS) / 20 * 6))  # +-6 dB per unit of jitter
    return Timbre(recipe=recipe.name, family=recipe.family, seed=s, gains=tuple(gains or ()), **params)


def timbre_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Timbre)}
