"""The velocity model's fit (models/train/velocity.py) and the shipped asset it wrote."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.key_cache import Variations
from models.signal.mel import TINY_MEL
from models.signal.tones import harmonic_tone
from models.train.velocity import (attack_log_ratios, calibrate_curve, curve_at, fit_attack, fit_tilt, mel_gains,
                                   monotone)

VELOCITIES = np.array([12.0, 20.0, 30.0, 45.0, 64.0, 80.0, 100.0, 115.0, 127.0])
REF = 6


def test_the_curve_is_linear_between_knots_continued_below_and_held_above() -> None:
    knots, values = np.array([12.0, 64.0, 127.0]), np.array([-2.0, -1.0, 0.5])
    got = curve_at(np.array([1.0, 12.0, 38.0, 64.0, 127.0, 200.0]), knots, values)
    np.testing.assert_allclose(got, [-2.0 - 11 / 52, -2.0, -1.5, -1.0, 0.5, 0.5])
    c = curve_at(np.arange(-5.0, 140.0), knots, values)
    assert np.all(np.diff(c) >= 0)


def test_monotone_pools_violators_rises_strictly_and_is_zero_at_the_reference() -> None:
    got = monotone(np.array([-3.0, -2.0, -2.5, -1.0, 0.0, 0.0, 0.0]), np.arange(7.0) * 10, ref=4)
    assert np.all(np.diff(got) >= 1e-3 * 10 - 1e-12) and got[4] == 0.0
    np.testing.assert_allclose(got, [-3.0, -2.25, -2.24, -1.0, 0.0, 0.01, 0.02], atol=1e-9)  # pooled, then spread


def test_a_rank_one_table_gives_back_its_curve_and_basis() -> None:
    basis = np.linspace(1.5, -1.5, 24)
    curve = monotone(np.log(VELOCITIES / 100.0), VELOCITIES, REF)
    table = curve[:, None] * basis[None]
    got_curve, got_basis, residual = fit_tilt(table + 1e-4 * np.random.default_rng(0).standard_normal(table.shape),
                                              VELOCITIES, REF)
    scale = np.sqrt(np.mean(basis ** 2))
    assert residual < 1e-3 and got_basis[0] < 0 < got_basis[-1] or got_basis[0] > 0 > got_basis[-1]
    np.testing.assert_allclose(np.outer(got_curve, got_basis), table, atol=1e-3)
    np.testing.assert_allclose(np.abs(got_curve), np.abs(curve) * scale, atol=1e-3)


def test_a_step_table_still_gives_every_velocity_its_own_tilt() -> None:
    """FluidR3 GM's notes: alike up to 64, then a step; the curve keeps the soft velocities apart."""
    step = np.where(VELOCITIES <= 64, -1.0, np.where(VELOCITIES < 100, -0.5, 0.0))
    curve, basis, _ = fit_tilt(step[:, None] * np.linspace(0, 1, 16)[None], VELOCITIES, REF)
    tilts = [(curve_at(v, VELOCITIES, curve) - curve_at(100, VELOCITIES, curve)) * basis for v in (13, 22, 38, 64)]
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(tilts, tilts[1:]))


def test_calibration_scales_each_knot_by_real_over_generated() -> None:
    curve = monotone(VELOCITIES / 100.0 - 1.0, VELOCITIES, REF)
    real, generated = 0.5 * curve, curve.copy()                      # generated notes move twice as far
    np.testing.assert_allclose(calibrate_curve(curve, VELOCITIES, REF, real, generated), 0.5 * curve, atol=1e-9)
    opposite = calibrate_curve(curve, VELOCITIES, REF, -real, generated)   # disagreeing signs: left alone
    np.testing.assert_allclose(opposite, curve, atol=1e-9)


def test_attacks_give_a_slope_only_when_softer_is_slower_than_generated() -> None:
    curve = monotone(VELOCITIES / 100.0 - 1.0, VELOCITIES, REF)
    real = 0.3 * (curve[REF] - curve)
    assert fit_attack(real, None, VELOCITIES, REF, curve) == pytest.approx(0.3)
    assert fit_attack(real, real - 0.1 * (curve[REF] - curve), VELOCITIES, REF, curve) == pytest.approx(0.1)
    assert fit_attack(-real, None, VELOCITIES, REF, curve) == 0.0


def test_attack_ratios_are_floored_and_clipped() -> None:
    a = np.array([[0.0, 0.001, 0.002, 0.003, 1.0]])
    got = attack_log_ratios(a, 2)
    assert got[0, :3].tolist() == [0.0, 0.0, 0.0] and got[0, 3] == pytest.approx(np.log(1.5))
    assert got[0, 4] == pytest.approx(np.log(2))                                  # 500 times, clipped to 2


def test_mel_gains_are_level_free_and_zero_at_the_reference() -> None:
    tone = harmonic_tone(60, decay_s=0.8)[: TINY_MEL.num_samples]
    dull = harmonic_tone(60, n_harmonics=2, decay_s=0.8)[: TINY_MEL.num_samples]
    waves = np.stack([np.stack([0.1 * dull, 0.5 * tone, tone])])                 # [1 pair, 3 velocities, T]
    gains = mel_gains(waves, TINY_MEL, ref=2)
    assert gains.shape == (1, 3, TINY_MEL.n_mels) and np.allclose(gains[0, 1:], 0.0, atol=1e-4)
    assert gains[0, 0, -8:].mean() < -1.0                                         # the dull note lacks the highs


def test_the_shipped_velocity_timbre_keeps_every_layer_apart_and_softer_duller() -> None:
    from safetensors import safe_open

    from engine.instrument import default_weights_dir
    from engine.variations import VELOCITY_FILE, load_velocity_timbre

    path = default_weights_dir() / VELOCITY_FILE
    with safe_open(str(path), "pt") as fh:
        h_dim = fh.get_slice("offsets").get_shape()[1]
    velocity = load_velocity_timbre(path, h_dim)
    freqs = torch.linspace(0.0, 1.0, velocity.tilt_basis.shape[0])
    assert np.all(np.diff(velocity.curve) > 0) and velocity.meta["calibration_passes"] >= 1

    def centroid(v: float) -> float:
        gain = velocity.tilt(v, 100).exp()
        return float((gain * freqs).sum() / gain.sum())

    curve = [centroid(v) for v in range(1, 128)]
    assert all(b > a for a, b in zip(curve, curve[1:]))                        # brighter with every velocity step
    for n in range(2, 6):
        v = Variations(velocity_layers=n, round_robins=1)
        at = [v.layer_velocity(layer) for layer in range(n)]
        assert all(centroid(b) - centroid(a) > 1e-3 for a, b in zip(at, at[1:]))
    assert velocity.attack_ratio(1, 100) >= 1.0
