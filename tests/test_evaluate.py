"""Metric math (models/metrics.py) and the `hypergan eval` plumbing (models/evaluate.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models import metrics


def _gauss(n: int, d: int, mean: float, std: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(n, d, generator=gen, dtype=torch.float64)


def test_fid_of_identical_sets_is_zero():
    x = _gauss(500, 6, 0.0, 1.0, 0)
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form():
    # Diagonal Gaussians: ||mu1 - mu2||^2 + sum (s1 - s2)^2 over dimensions.
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 1.0])
    expected = (mu1 - mu2).square().sum() + (s1 - s2).square().sum()
    value = metrics.frechet_distance(mu1, torch.diag(s1 ** 2), mu2, torch.diag(s2 ** 2))
    assert value == pytest.approx(float(expected), rel=1e-9)


def test_frechet_distance_with_correlated_covariances():
    # Same covariance, any shape: only the means count.
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    sigma = a @ a.T + 0.1 * torch.eye(4, dtype=torch.float64)
    mu = torch.randn(4, generator=gen, dtype=torch.float64)
    assert metrics.frechet_distance(mu, sigma, mu + 2, sigma) == pytest.approx(16.0, rel=1e-7)


def test_fid_of_shifted_gaussian_samples():
    d, shift, std2 = 4, 1.5, 2.0
    a = _gauss(20000, d, 0.0, 1.0, 1)
    b = _gauss(20000, d, shift, std2, 2)
    expected = d * shift ** 2 + d * (std2 - 1.0) ** 2
    assert metrics.fid(a, b) == pytest.approx(expected, rel=0.05)


def test_feature_mse_and_pitch_accuracy():
    a = torch.zeros(3, 2)
    assert metrics.feature_mse(a, a + 2) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        metrics.feature_mse(a, torch.zeros(2, 2))
    logits = torch.full((4, 88), -1.0)
    logits[0, 0] = logits[1, 87] = logits[2, 39] = logits[3, 40] = 5.0  # MIDI 21, 108, 60, 61
    assert metrics.pitch_accuracy(logits, torch.tensor([21, 108, 60, 60])) == pytest.approx(0.75)


def test_identification_uses_cosine_nearest_neighbour():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([7, 9])
    queries = torch.tensor([[10.0, 1.0], [0.1, 3.0], [1.0, 0.9]])
    assert metrics.nearest_labels(queries, gallery, labels).tolist() == [7, 9, 7]
    assert metrics.identification_accuracy(queries, torch.tensor([7, 9, 9]), gallery, labels) == pytest.approx(2 / 3)


def test_bootstrap_spread():
    values = np.array([0.0, 1.0] * 50)
    full, spread = metrics.bootstrap(lambda idx: float(values[idx].mean()), len(values), n_resamples=50)
    assert full == pytest.approx(0.5)
    assert 0.02 < spread < 0.09  # the standard error is 0.05
    assert metrics.mean_std([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))
