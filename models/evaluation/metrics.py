"""Evaluation metrics (the paper's Table 1): FID, feature MSE, pitch accuracy, timbre identification.

All functions take torch tensors of classifier features / logits and return Python floats, so they
are indifferent to the networks that produced them. Spreads come from :func:`bootstrap`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from models.units import LOWEST_KEY



def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[d]`` and unbiased covariance ``[d, d]`` of ``features [N, d]``, in float64."""
    x = features.detach().to("cpu", torch.float64)
    if x.shape[0] < 2:
        raise ValueError("need at least 2 samples for a covariance")
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    Tr((S1 S2)^(1/2)) is computed as the trace of (S1^(1/2) S2 S1^(1/2))^(1/2), which has the same
    eigenvalues and is symmetric, so no general (complex) matrix square root is needed.
    """
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    sigma1, sigma2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    root1 = _sqrt_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * cross
    return float(value.clamp_min(0))


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets ``[N, d]``, ``[M, d]``."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def feature_mse(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Mean squared difference of paired features ``[N, d]`` (reconstruction fidelity)."""
    if features_a.shape != features_b.shape:
        raise ValueError(f"paired features differ in shape: {tuple(features_a.shape)} vs {tuple(features_b.shape)}")
    return float((features_a.double() - features_b.double()).square().mean())


def pitch_hits(logits: torch.Tensor, midi: torch.Tensor) -> torch.Tensor:
    """Bool ``[N]``: the 88-way pitch classifier's argmax (class 0 = MIDI 21) equals ``midi [N]``."""
    return (logits.argmax(dim=1) + LOWEST_KEY) == midi.to(logits.device).long()


def pitch_accuracy(logits: torch.Tensor, midi: torch.Tensor) -> float:
    """Exact-key accuracy of 88-way pitch ``logits [N, 88]`` against ``midi [N]``."""
    return float(pitch_hits(logits, midi).float().mean())


def nearest_labels(queries: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor) -> torch.Tensor:
    """Label ``[N]`` of the nearest gallery item (cosine similarity) for each query ``[N, d]``."""
    q = torch.nn.functional.normalize(queries.double(), dim=1)
    g = torch.nn.functional.normalize(gallery.double(), dim=1)
    return gallery_labels[(q @ g.T).argmax(dim=1).to(gallery_labels.device)]


def identification_accuracy(queries: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor,
                            gallery_labels: torch.Tensor) -> float:
    """Fraction of queries whose nearest gallery item (one-shot per instrument) has their label."""
    return float((nearest_labels(queries, gallery, gallery_labels) == query_labels.to(gallery_labels.device))
                 .float().mean())


def bootstrap(statistic: Callable[[np.ndarray], float], n_items: int, n_resamples: int = 10,
              seed: int = 0) -> tuple[float, float]:
    """(value on all items, std over bootstrap resamples) of ``statistic(indices)``.

    ``statistic`` receives an int array of item indices (drawn with replacement for resamples).
    """
    rng = np.random.default_rng(seed)
    full = statistic(np.arange(n_items))
    resampled = [statistic(rng.integers(0, n_items, n_items)) for _ in range(n_resamples)]
    return full, float(np.std(resampled, ddof=1)) if n_resamples > 1 else 0.0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
