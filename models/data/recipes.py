"""Recipes: seeded draws of ``Timbre`` parameters, one per kind of instrument, each with its family."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.data.procedural import BAR_RATIOS, BELL_RATIOS, MAX_PARTIALS, MEMBRANE_RATIOS, Timbre, _seed


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


@dataclass(frozen=True)
class Recipe:
    name: str
    family: str
    draw: Callable[[np.random.Generator], dict]
    pitched: bool = True


RECIPES: tuple[Recipe, ...] = (
    Recipe("organ", "organ", organ), Recipe("flute", "flute", flute), Recipe("reed", "reed", reed),
    Recipe("brass", "brass", brass), Recipe("bowed", "string", bowed), Recipe("pluck", "guitar", pluck),
    Recipe("bass", "bass", bass), Recipe("epiano", "keyboard", epiano), Recipe("hammer", "keyboard", hammer),
    Recipe("bell", "mallet", bell), Recipe("bar", "mallet", bar), Recipe("lead", "synth_lead", lead),
    Recipe("pad", "synth_pad", pad), Recipe("vocal", "vocal", vocal), Recipe("fm_lead", "synth_lead", fm_lead),
    Recipe("noise_fx", "fx", noise_fx), Recipe("membrane", "percussive", membrane, pitched=False),
)


def make_timbre(index: int, seed: int) -> Timbre:
    """Procedural instrument number ``index`` of a build seeded with ``seed`` (recipes in turn)."""
    recipe = RECIPES[index % len(RECIPES)]
    s = _seed("procedural", seed, index)
    rng = np.random.default_rng(s)
    params = recipe.draw(rng)
    jitter = params.pop("jitter", 0.0)
    gains = params.pop("gains", None)
    if gains is None and jitter:
        gains = tuple(10 ** (rng.normal(0, jitter, MAX_PARTIALS) / 20 * 6))  # +-6 dB per unit of jitter
    return Timbre(recipe=recipe.name, family=recipe.family, seed=s, gains=tuple(gains or ()), **params)


def timbre_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Timbre)}
