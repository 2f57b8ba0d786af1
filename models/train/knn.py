"""k-nearest-neighbour index over L2-normalised features, for instance conditioning (IC-GAN).

``build_neighbours`` works on any device and in row chunks, so an N x N similarity matrix never
exists at once (100k x 100k would be 40 GB); ``NeighbourSampler`` draws a random neighbour per index.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def build_neighbours(features: torch.Tensor, k: int = 50, chunk: int = 4096) -> torch.Tensor:
    """Cosine k-NN of every row of ``features [N, d]``, itself excluded -> indices ``[N, k]`` (long).

    Neighbours are sorted by decreasing similarity; computed on ``features.device`` in fp32.
    """
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N-1] = [1, {n - 1}], got {k}")
    x = F.normalize(features.float(), dim=1)
    out = torch.empty(n, k, dtype=torch.long, device=features.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sim = x[start:stop] @ x.t()  # [chunk, N]
        rows = torch.arange(stop - start, device=features.device)
        sim[rows, rows + start] = float("-inf")  # exclude self
        out[start:stop] = sim.topk(k, dim=1).indices
    return out


class NeighbourSampler:
    """Random neighbour of each index, from a ``[N, k]`` neighbour table (kept on its device)."""

    def __init__(self, neighbours: torch.Tensor) -> None:
        if neighbours.dim() != 2 or neighbours.shape[1] < 1:
            raise ValueError(f"neighbours must be [N, k >= 1], got {tuple(neighbours.shape)}")
        self.neighbours = neighbours.long()

    @property
    def k(self) -> int:
        return int(self.neighbours.shape[1])

    def sample(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``index [B]`` (long) -> one uniformly drawn neighbour per entry ``[B]``, on the table's device."""
        index = index.to(self.neighbours.device).long()
        pick = torch.randint(0, self.k, index.shape, generator=generator,
                             device=self.neighbours.device if generator is None else generator.device)
        return self.neighbours[index, pick.to(self.neighbours.device)]
