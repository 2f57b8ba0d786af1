"""kNN index: matches brute force, excludes self, chunking is invisible; the sampler draws neighbours."""
from __future__ import annotations

import pytest
import torch

from models.train.knn import NeighbourSampler, build_neighbours

torch.set_num_threads(1)


def brute_force(features: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.nn.functional.normalize(features.double(), dim=1)
    sim = x @ x.t()
    sim.fill_diagonal_(float("-inf"))
    return sim.topk(k, dim=1).indices


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_matches_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(150, 12, generator=g) * torch.rand(150, 1, generator=g) * 5  # norms vary
    nbrs = build_neighbours(features, k=5, chunk=chunk)
    assert nbrs.shape == (150, 5) and nbrs.dtype == torch.long
    assert torch.equal(nbrs, brute_force(features, 5))
    assert not (nbrs == torch.arange(150)[:, None]).any()


def test_self_excluded_even_for_duplicates():
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    nbrs = build_neighbours(features, k=1, chunk=2)
    assert nbrs[:, 0].tolist() == [1, 0, 3, 2]


def test_k_out_of_range_raises():
    with pytest.raises(ValueError):
        build_neighbours(torch.randn(5, 3), k=5)
    with pytest.raises(ValueError):
        build_neighbours(torch.randn(5, 3), k=0)


def test_sampler_draws_uniformly_among_neighbours():
    nbrs = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    sampler = NeighbourSampler(nbrs)
    g = torch.Generator().manual_seed(0)
    index = torch.zeros(3000, dtype=torch.long)
    drawn = sampler.sample(index, generator=g)
    assert set(drawn.tolist()) == {1, 2, 3}
    counts = torch.bincount(drawn, minlength=4)[1:].float()
    assert (counts / 3000 - 1 / 3).abs().max() < 0.05
    idx = torch.tensor([3, 2, 1, 0])
    drawn = sampler.sample(idx, generator=torch.Generator().manual_seed(1))
    assert all(int(d) in nbrs[i].tolist() for i, d in zip(idx.tolist(), drawn))
    again = sampler.sample(idx, generator=torch.Generator().manual_seed(1))
    assert torch.equal(drawn, again)
