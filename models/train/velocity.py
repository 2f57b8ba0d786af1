"""Fit how real notes change with velocity: a spectral tilt and an attack time along one curve.

No network. The notes are (preset, key) pairs rendered at several velocities (``bench/velocity_timbre.py``
renders SoundFont presets with fluidsynth). The model, continuous and monotone over 1..127:

- a velocity curve ``c(v)``, strictly rising, linear between its knots (the fitted velocities) and
  continued below the first with the first segment's slope;
- the tilt from a note at ``ref`` to one at ``v``: ``(c(v) - c(ref)) * basis``, a natural-log gain per
  mel bin (``basis [n_mels]``, RMS 1, so ``c`` is in RMS log gain): every bin moves one way only as
  velocity rises, and any two velocities get different spectra;
- the attack from ``ref`` to ``v``: ``exp(attack_log_slope * (c(ref) - c(v)))`` times as long
  (``attack_log_slope >= 0``: softer never attacks faster).

The tilt is the rank-one part of the real notes' mean log-mel gains (SVD; the curve made monotone by
pool-adjacent-violators). Generated notes do not answer a tilt one to one (G and the vocoder stand
between the mel and the wave), so ``calibrate_curve`` rescales each knot until the generated mean
centroid follows the real one, and ``fit_attack`` sets the slope from what the real attacks do beyond
what the tilt alone does to the generated ones. A per-velocity table (the previous model) holds still
wherever its fitting notes do (FluidR3 GM's below velocity 64); the curve keeps every layer apart.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from models.evaluation.fidelity import peak_normalised
from models.signal.mel import LogMel, MelConfig

MIN_ATTACK_S = 0.002        # attacks shorter than this count as this (a ratio of two clicks is noise)
MAX_ATTACK_LOG_RATIO = float(np.log(2.0))   # one pair moves the mean by at most a factor of 2
MIN_STEP = 1e-3             # the curve rises at least this much per velocity unit (layers stay apart)


def curve_at(velocity: float | np.ndarray, knots: np.ndarray, values: np.ndarray) -> float | np.ndarray:
    """``c(velocity)`` for ``velocity`` clipped to 1..127: linear between ``knots`` (ascending), the
    first segment's slope below them, the last value above them."""
    v = np.clip(np.asarray(velocity, dtype=np.float64), 1.0, 127.0)
    slope = (values[1] - values[0]) / (knots[1] - knots[0])
    out = np.where(v < knots[0], values[0] + slope * (v - knots[0]), np.interp(v, knots, values))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class VelocityFit:
    """The fitted model (see the module docstring) and what it was fitted to."""

    velocities: np.ndarray       # [V] the knots
    curve: np.ndarray            # [V] c at the knots
    basis: np.ndarray            # [n_mels] natural-log gain per unit of c, RMS 1
    attack_log_slope: float
    tilt_residual: float         # squared error of the rank-one model over the squared table
    info: dict                   # per-velocity means the fit saw (real and generated)

    def tilt(self, velocity: float, reference: float) -> np.ndarray:
        """Log gain per mel bin ``[n_mels]`` from a note at ``reference`` to one at ``velocity``."""
        return self.step(velocity, reference) * self.basis

    def step(self, velocity: float, reference: float) -> float:
        return float(curve_at(velocity, self.velocities, self.curve) - curve_at(reference, self.velocities, self.curve))

    def attack_ratio(self, velocity: float, reference: float) -> float:
        """How many times longer the attack at ``velocity`` is than at ``reference``."""
        return float(np.exp(-self.attack_log_slope * self.step(velocity, reference)))


def mel_gains(waves: np.ndarray, mel_cfg: MelConfig, ref: int) -> np.ndarray:
    """Per pair, the natural-log gain per mel bin of each velocity's note over the reference note
    ``[N, V, n_mels]`` from notes ``[N, V, T]``: log of the time-averaged mel magnitude of the
    peak-normalised notes (a tilt, not a level)."""
    log_mel = LogMel(mel_cfg)
    out = []
    with torch.inference_mode():
        for note in waves:                                            # [V, T]
            x = torch.from_numpy(np.stack([peak_normalised(w) for w in note]))
            gains = log_mel(x).exp().mean(-1).clamp_min(mel_cfg.log_floor).log()   # [V, n_mels]
            out.append((gains - gains[ref: ref + 1]).numpy())
    return np.stack(out)


def monotone(values: np.ndarray, velocities: np.ndarray, ref: int) -> np.ndarray:
    """``values`` made non-decreasing (pool adjacent violators), then rising by at least ``MIN_STEP``
    per velocity unit, and shifted to 0 at ``ref``."""
    blocks = [[float(x), 1] for x in values]                          # [mean, size]
    i = 0
    while i < len(blocks) - 1:
        if blocks[i][0] > blocks[i + 1][0]:
            (a, n), (b, m) = blocks[i], blocks.pop(i + 1)
            blocks[i] = [(a * n + b * m) / (n + m), n + m]
            i = max(i - 1, 0)
        else:
            i += 1
    out = np.concatenate([[mean] * size for mean, size in blocks])
    for j in range(1, len(out)):
        out[j] = max(out[j], out[j - 1] + MIN_STEP * (velocities[j] - velocities[j - 1]))
    return out - out[ref]


def fit_tilt(table: np.ndarray, velocities: np.ndarray, ref: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(curve [V], basis [n_mels], relative residual)``: the rank-one part of the mean gains ``table
    [V, n_mels]`` (``table[ref]`` is 0), its curve monotone, rising with velocity."""
    _, _, vt = np.linalg.svd(table, full_matrices=False)
    basis = vt[0] / np.sqrt(np.mean(vt[0] ** 2))                     # RMS 1
    coeff = table @ basis / float(basis @ basis)                      # [V]
    if coeff[0] > coeff[-1]:                                          # the softest note lies lowest on the curve
        basis, coeff = -basis, -coeff
    curve = monotone(coeff, velocities, ref)
    err = float(((table - curve[:, None] * basis[None]) ** 2).mean())
    return curve, basis.astype(np.float32), err / max(float((table ** 2).mean()), 1e-12)


def calibrate_curve(curve: np.ndarray, velocities: np.ndarray, ref: int, real_log_ratio: np.ndarray,
                    generated_log_ratio: np.ndarray) -> np.ndarray:
    """Each knot of ``curve`` scaled by real over generated mean log centroid ratio ``[V]`` (the
    generated notes rendered with ``curve``), where both move the same way by more than 0.2 %;
    then made monotone again."""
    scale = np.ones_like(curve)
    ok = (np.sign(real_log_ratio) == np.sign(generated_log_ratio)) & (np.abs(generated_log_ratio) > 0.002)
    scale[ok] = real_log_ratio[ok] / generated_log_ratio[ok]
    return monotone(curve * scale, velocities, ref)


def attack_log_ratios(attack_s: np.ndarray, ref: int) -> np.ndarray:
    """``log(attack(v) / attack(ref))`` per pair and velocity ``[N, V]`` from attack times ``[N, V]``,
    both floored at ``MIN_ATTACK_S`` and the ratio clipped to a factor of 2 either way."""
    a = np.maximum(attack_s, MIN_ATTACK_S)
    return np.clip(np.log(a / a[:, ref: ref + 1]), -MAX_ATTACK_LOG_RATIO, MAX_ATTACK_LOG_RATIO)


def fit_attack(real: np.ndarray, generated: np.ndarray | None, velocities: np.ndarray, ref: int,
               curve: np.ndarray) -> float:
    """``attack_log_slope >= 0``: least squares (through 0) of the real mean log attack ratio ``[V]``
    minus the generated one without any shaping (None: 0) against ``c(ref) - c(v)``. A fade-in can
    slow an attack, not speed it up: a negative slope gives 0."""
    gap = real - (0.0 if generated is None else generated)
    d = curve[ref] - curve
    return max(float(d @ gap / max(float(d @ d), 1e-12)), 0.0)


def fit_velocity(waves: np.ndarray, attack_s: np.ndarray, velocities: np.ndarray, ref: int,
                 mel_cfg: MelConfig) -> VelocityFit:
    """The model from real notes ``waves [N, V, T]`` and their attack times ``[N, V]`` (seconds), before
    any calibration against generated notes."""
    curve, basis, residual = fit_tilt(mel_gains(waves, mel_cfg, ref).mean(0), velocities, ref)
    real_attack = attack_log_ratios(attack_s, ref).mean(0)
    slope = fit_attack(real_attack, None, velocities, ref, curve)
    info = {"real_attack_log_ratio": real_attack.round(4).tolist(), "uncalibrated_curve": curve.round(4).tolist()}
    return VelocityFit(np.asarray(velocities, np.float64), curve, basis, slope, residual, info)


def calibrated(fit: VelocityFit, ref: int, real_centroid: np.ndarray, generated_centroid: np.ndarray) -> VelocityFit:
    """``fit`` with its curve calibrated (``calibrate_curve``) from mean log centroid ratios ``[V]``."""
    curve = calibrate_curve(fit.curve, fit.velocities, ref, real_centroid, generated_centroid)
    info = dict(fit.info, real_log_centroid=real_centroid.round(4).tolist(),
                generated_log_centroid=generated_centroid.round(4).tolist())
    return replace(fit, curve=curve, info=info)
