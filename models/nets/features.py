"""f — the pitch-invariant feature extractor, with its training heads.

f(log_mel) -> h: a CNN, then statistics over time (mean and std: envelope and decay are timbre) at a
coarse frequency resolution, then a linear layer. Training (stage S1): instrument cross-entropy on
``instrument_logits(h)``, while an adversarial pitch head tries to read pitch from h and f is pushed
to hide it: either the head's prediction is made uniform (``pitch_logits_fixed_head``, the
confusion objective) or its gradient is reversed (``pitch_logits(h, scale)``, GRL).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.nets.layers import ConvEncoder, grad_reverse, normalize_h
from models.signal.mel import SHIPPED_MEL, TINY_MEL, MelConfig
from models.units import N_KEYS


@dataclass(frozen=True)
class FeatureConfig:
    """Architecture of f and its heads."""

    mel: MelConfig = field(default_factory=lambda: SHIPPED_MEL)
    h_dim: int = 256
    channels: tuple[int, ...] = (24, 48, 96, 128, 192)
    n_instruments: int = 256      # classes of the instrument head (training instruments)
    pitch_hidden: int = 256       # the adversarial pitch head is an MLP (a stronger adversary than linear); 0: linear
    normalize_h: bool = True      # h has RMS 1 (L2 norm sqrt(h_dim))

    @property
    def pools(self) -> tuple[tuple[int, int], ...]:
        return tuple((2, 2) for _ in self.channels)

    @property
    def out_shape(self) -> tuple[int, int]:
        """(freq, time) size of the last feature map (stem halves, each stage halves)."""
        div = 2 ** (len(self.channels) + 1)
        return self.mel.n_mels // div, self.mel.n_frames // div

    @classmethod
    def shipped(cls, mel: MelConfig = SHIPPED_MEL, n_instruments: int = 256) -> "FeatureConfig":
        return cls(mel=mel, n_instruments=n_instruments)

    @classmethod
    def tiny(cls, mel: MelConfig = TINY_MEL, n_instruments: int = 8) -> "FeatureConfig":
        return cls(mel=mel, h_dim=16, channels=(8, 16), n_instruments=n_instruments, pitch_hidden=16)


class FeatureExtractor(nn.Module):
    """f(log_mel [B, n_mels, n_frames], natural-log units) -> h ``[B, h_dim]``."""

    Config = FeatureConfig

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__()
        n_freq, n_time = cfg.out_shape
        if n_freq < 1 or n_time < 1:
            raise ValueError(f"{len(cfg.channels)} stages are too many for a {cfg.mel.n_mels}x"
                             f"{cfg.mel.n_frames} grid")
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg.mel, cfg.channels, cfg.pools)
        self.proj = nn.Linear(2 * cfg.channels[-1] * n_freq, cfg.h_dim)
        self.instrument_head = nn.Linear(cfg.h_dim, cfg.n_instruments)
        if cfg.pitch_hidden > 0:
            self.pitch_head = nn.Sequential(nn.Linear(cfg.h_dim, cfg.pitch_hidden), nn.LeakyReLU(0.2),
                                            nn.Linear(cfg.pitch_hidden, N_KEYS))
        else:
            self.pitch_head = nn.Sequential(nn.Linear(cfg.h_dim, N_KEYS))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = self.encoder(log_mel)  # [B, C, M', F']
        std = (x.var(dim=3, correction=0) + 1e-5).sqrt()
        stats = torch.cat([x.mean(dim=3), std], dim=1)  # [B, 2C, M']
        h = self.proj(stats.flatten(1))
        return normalize_h(h) if self.cfg.normalize_h else h

    def instrument_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Instrument classes ``[B, n_instruments]``."""
        return self.instrument_head(h)

    def pitch_logits(self, h: torch.Tensor, reverse_scale: float = 1.0) -> torch.Tensor:
        """88 keys ``[B, 88]`` (index = midi - 21) through gradient reversal with ``reverse_scale``.

        The head itself learns to classify pitch; f receives ``-reverse_scale`` times its gradient.
        """
        return self.pitch_head(grad_reverse(h, reverse_scale))

    def pitch_logits_fixed_head(self, h: torch.Tensor) -> torch.Tensor:
        """88 keys ``[B, 88]`` through the pitch head with its parameters held fixed.

        The gradient reaches h (and f) only: f's confusion loss must not train the head.
        """
        params = {name: p.detach() for name, p in self.pitch_head.named_parameters()}
        return torch.func.functional_call(self.pitch_head, params, (h,))

    @torch.no_grad()
    def reset_pitch_head(self, generator: torch.Generator | None = None) -> None:
        """Re-draw the pitch head's weights (PyTorch's default Linear init), the same on every rank
        for the same ``generator`` state."""
        for layer in self.pitch_head:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=5 ** 0.5, generator=generator)
                bound = layer.in_features ** -0.5
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
