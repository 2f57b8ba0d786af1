"""H, the pitch-invariant hypernetwork (HyperGANStrument §3.1): (h, h_init) -> per-layer weight offsets.

H never sees a mel: it reads two f-features, the input's ``h`` and ``h_init = f(G(h, 0, p))``, maps
them through a two-layer MLP to a code, and predicts for each chosen modulated conv of G an offset
``delta_l`` of shape ``[B, C_out, C_in]``; G then uses ``w * (1 + delta_l)`` (broadcast over the
kernel, before modulation/demodulation, as in HyperStyle).

Each offset is low-rank, ``delta_l = A_l(e_l) @ B_l(e_l)^T`` with ``A_l: [C_out, r]`` and
``B_l: [C_in, r]``, where ``e_l`` is a per-layer embedding of the code (the Refinement Block). With
``shared_heads`` the maps from ``e_l`` to (A, B) are shared by all layers of equal shape (the Shared
Refinement Block), which keeps H a few MiB whatever G's depth. ``A``'s head starts at zero and ``B``
carries a learned random base (as in LoRA), so H starts as the identity (delta = 0) yet gradients
reach every head from the first step.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

Deltas = dict[str, torch.Tensor]


@dataclass(frozen=True)
class HyperConfig:
    """Architecture of H; ``layers``/``shapes`` name G's modulated convs that receive offsets.

    ``shapes[i]`` is ``(C_out, C_in)`` of ``layers[i]``, so H rebuilds from this config alone.
    """

    h_dim: int = 256
    layers: tuple[str, ...] = ()
    shapes: tuple[tuple[int, int], ...] = ()
    hidden_dim: int = 512
    code_dim: int = 512
    embed_dim: int = 128
    rank: int = 4
    shared_heads: bool = True
    n_passes: int = 1
    init_std: float = 0.0

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.shapes):
            raise ValueError(f"{len(self.layers)} layers but {len(self.shapes)} shapes")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError("layer names must be unique")
        if self.rank < 1 or self.n_passes < 1:
            raise ValueError("rank and n_passes must be >= 1")
        # JSON round trips turn the inner tuples into lists; keep the config hashable and comparable.
        object.__setattr__(self, "shapes", tuple((int(o), int(i)) for o, i in self.shapes))

    @property
    def head_shapes(self) -> tuple[tuple[int, int], ...]:
        """Distinct layer shapes, in first-seen order (one shared head each)."""
        return tuple(dict.fromkeys(self.shapes))

    @classmethod
    def for_layers(cls, modulated_layers: Mapping[str, tuple[int, int]], h_dim: int, skip_coarse: int = 2,
                   **kwargs) -> "HyperConfig":
        """Config for the layers chosen by :func:`select_layers` from ``G.modulated_layers()``."""
        names = select_layers(modulated_layers, skip_coarse)
        return cls(h_dim=h_dim, layers=names, shapes=tuple(tuple(modulated_layers[n]) for n in names), **kwargs)

    @classmethod
    def shipped(cls, modulated_layers: Mapping[str, tuple[int, int]], h_dim: int,
                skip_coarse: int = 2) -> "HyperConfig":
        return cls.for_layers(modulated_layers, h_dim, skip_coarse)

    @classmethod
    def tiny(cls, modulated_layers: Mapping[str, tuple[int, int]], h_dim: int, skip_coarse: int = 0) -> "HyperConfig":
        return cls.for_layers(modulated_layers, h_dim, skip_coarse, hidden_dim=32, code_dim=32, embed_dim=16, rank=2)


def select_layers(modulated_layers: Mapping[str, tuple[int, int]], skip_coarse: int = 2) -> tuple[str, ...]:
    """Names of the layers that get offsets: all but the first ``skip_coarse`` and the to-mel outputs.

    ``modulated_layers`` is ``G.modulated_layers()`` (coarse to fine). Like HyperStyle (which skips
    to-RGB and the coarsest layers), single-output-channel convs (the to-mel skips) get none.
    """
    convs = [name for name, (c_out, _) in modulated_layers.items() if c_out > 1]
    return tuple(convs[skip_coarse:])


class _LowRankHead(nn.Module):
    """Layer embedding ``[B, E]`` -> offset ``[B, C_out, C_in]`` of rank ``r``."""

    def __init__(self, embed_dim: int, c_out: int, c_in: int, rank: int, init_std: float) -> None:
        super().__init__()
        self.c_out, self.c_in, self.rank = c_out, c_in, rank
        self.to_a = nn.Linear(embed_dim, c_out * rank)
        self.to_b = nn.Linear(embed_dim, c_in * rank)
        # A starts at (near) zero so delta = 0; B's random base keeps A's gradient non-zero at start.
        nn.init.normal_(self.to_a.weight, std=init_std)
        nn.init.zeros_(self.to_a.bias)
        nn.init.normal_(self.to_b.weight, std=embed_dim ** -0.5)
        nn.init.zeros_(self.to_b.bias)
        self.base_b = nn.Parameter(torch.randn(c_in * rank) / rank ** 0.5)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        a = self.to_a(e).view(-1, self.c_out, self.rank)  # [B, C_out, r]
        b = (self.to_b(e) + self.base_b).view(-1, self.c_in, self.rank)  # [B, C_in, r]
        return torch.bmm(a, b.transpose(1, 2))  # [B, C_out, C_in]


class HyperNetwork(nn.Module):
    """H(h [B, h_dim], h_init [B, h_dim]) -> {layer name: delta [B, C_out, C_in]}."""

    Config = HyperConfig

    def __init__(self, cfg: HyperConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mlp = nn.Sequential(
            nn.Linear(2 * cfg.h_dim, cfg.hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(cfg.hidden_dim, cfg.code_dim), nn.LeakyReLU(0.2),
        )
        # Refinement Blocks: one embedding of the code per layer.
        self.embed = nn.ModuleList(nn.Linear(cfg.code_dim, cfg.embed_dim) for _ in cfg.layers)
        if cfg.shared_heads:
            self.heads = nn.ModuleList(_LowRankHead(cfg.embed_dim, o, i, cfg.rank, cfg.init_std)
                                       for o, i in cfg.head_shapes)
            index = {shape: k for k, shape in enumerate(cfg.head_shapes)}
            self._head_of = [index[s] for s in cfg.shapes]
        else:
            self.heads = nn.ModuleList(_LowRankHead(cfg.embed_dim, o, i, cfg.rank, cfg.init_std)
                                       for o, i in cfg.shapes)
            self._head_of = list(range(len(cfg.shapes)))

    def forward(self, h: torch.Tensor, h_init: torch.Tensor) -> Deltas:
        code = self.mlp(torch.cat([h, h_init], dim=1))  # [B, code_dim]
        deltas: Deltas = {}
        for name, embed, k in zip(self.cfg.layers, self.embed, self._head_of):
            e = nn.functional.leaky_relu(embed(code), 0.2)  # [B, embed_dim]
            deltas[name] = self.heads[k](e)
        return deltas


def add_deltas(a: Deltas | None, b: Deltas) -> Deltas:
    """Sum two offset dicts layer by layer (iterative refinement accumulates offsets)."""
    if a is None:
        return dict(b)
    return {k: a[k] + b[k] if k in a else b[k] for k in {**a, **b}}


def zero_z(G: nn.Module, batch: int, device: torch.device) -> torch.Tensor:
    """The fixed z = 0 used in hypernetwork training and inference, ``[B, z_dim]``."""
    return torch.zeros(batch, G.cfg.z_dim, device=device)


def refine(G: nn.Module, f: nn.Module, H: HyperNetwork, h: torch.Tensor, midi_ref: torch.Tensor,
           n_passes: int | None = None) -> Deltas:
    """Offsets for timbre ``h [B, h_dim]``: x_init = G(h, 0, midi_ref); h_init = f(x_init); H(h, h_init).

    ``midi_ref [B]`` (long) is the pitch of the initial reconstruction (the input's own pitch).
    With ``n_passes > 1`` (HyperStyle's iterative refinement) each pass renders with the offsets so
    far, feeds f of that render back as ``h_init`` and adds H's output to the offsets.
    """
    n_passes = H.cfg.n_passes if n_passes is None else n_passes
    z = zero_z(G, h.shape[0], h.device)
    deltas: Deltas | None = None
    for _ in range(n_passes):
        x_cur = G(h, z, midi_ref, deltas)  # [B, n_mels, n_frames]
        deltas = add_deltas(deltas, H(h, f(x_cur)))
    assert deltas is not None
    return deltas
