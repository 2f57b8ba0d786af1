"""D — projection discriminator D(x, p, h) on [log-mel, pitch map of p], and the R1 penalty.

phi = residual down-sampling blocks -> minibatch std -> conv -> fc;
out = psi(phi) + <embed(p), phi> + <W h, phi>  (Miyato & Koyama 2018; GANStrument).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.layers import LRELU_GAIN, EqualConv2d, EqualLinear, normalize_h, normalize_log_mel
from models.signal.mel import SHIPPED_MEL, TINY_MEL, MelConfig
from models.nets.pitch_template import N_PITCH_CHANNELS, PitchMap
from models.units import LOWEST_KEY, N_KEYS


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of D."""

    mel: MelConfig = field(default_factory=lambda: SHIPPED_MEL)
    h_dim: int = 256
    base_min: int = 4             # smaller side of the last feature map
    channel_base: int = 4096      # channels at a level whose longer side is r: min(channel_max, channel_base // r)
    channel_max: int = 256
    channel_min: int = 8          # floor for fine levels of large grids (e.g. 512 x 512)
    mbstd_group: int = 4          # 0 disables the minibatch-std feature
    template_rolloff: float = 1.0

    @property
    def n_levels(self) -> int:
        return int(math.log2(min(self.mel.n_mels, self.mel.n_frames) // self.base_min)) + 1

    def channels(self, level: int) -> int:
        """Channels at ``level`` (0 = the final 4-ish map, n_levels - 1 = the input grid), by the longer side."""
        longer = max(self.mel.n_mels, self.mel.n_frames) // 2 ** (self.n_levels - 1 - level)
        return max(self.channel_min, min(self.channel_max, self.channel_base // longer))

    @classmethod
    def shipped(cls, mel: MelConfig = SHIPPED_MEL) -> "DiscriminatorConfig":
        return cls(mel=mel)

    @classmethod
    def tiny(cls, mel: MelConfig = TINY_MEL) -> "DiscriminatorConfig":
        return cls(mel=mel, h_dim=16, channel_base=128, channel_max=16, mbstd_group=2)


class DownBlock(nn.Module):
    """Residual block: two 3x3 convs and 2x average pooling, with a 1x1 pooled skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch)
        self.conv1 = EqualConv2d(in_ch, out_ch)
        self.skip = EqualConv2d(in_ch, out_ch, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv0(x), 0.2) * LRELU_GAIN
        y = F.avg_pool2d(F.leaky_relu(self.conv1(y), 0.2) * LRELU_GAIN, 2)
        skip = self.skip(F.avg_pool2d(x, 2))
        return (y + skip) * math.sqrt(0.5)


def minibatch_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append the std over groups of samples as one extra channel (StyleGAN2)."""
    B, C, H, W = x.shape
    g = max(d for d in range(1, min(group, B) + 1) if B % d == 0)
    y = x.float().reshape(g, -1, C, H, W)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # [B/g, C, H, W]
    y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, H, W).to(x.dtype)  # [B, 1, H, W]
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """D(log_mel [B, M, F] natural-log units, midi [B] long, h [B, h_dim]) -> logits ``[B]``."""

    Config = DiscriminatorConfig

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        m = cfg.mel
        div = 2 ** (cfg.n_levels - 1)
        if m.n_mels % div or m.n_frames % div:
            raise ValueError(f"mel grid {m.n_mels}x{m.n_frames} is not divisible by {div}")
        self.cfg = cfg
        self.pitch_map = PitchMap(m, cfg.template_rolloff)
        top = cfg.n_levels - 1
        self.from_mel = EqualConv2d(1 + N_PITCH_CHANNELS, cfg.channels(top), kernel_size=1)
        self.blocks = nn.Sequential(*(DownBlock(cfg.channels(i), cfg.channels(i - 1))
                                      for i in range(top, 0, -1)))
        c = cfg.channels(0)
        bh, bw = m.n_mels // div, m.n_frames // div
        self.conv = EqualConv2d(c + (1 if cfg.mbstd_group else 0), c)
        self.fc = EqualLinear(c * bh * bw, c, activation=True)
        self.psi = EqualLinear(c, 1)
        self.embed_key = nn.Embedding(N_KEYS, c)
        nn.init.normal_(self.embed_key.weight, std=1.0 / math.sqrt(c))
        self.proj_h = EqualLinear(cfg.h_dim, c, bias=False)

    def features(self, log_mel: torch.Tensor, midi: torch.Tensor) -> torch.Tensor:
        """phi ``[B, C]``."""
        x = normalize_log_mel(log_mel, self.cfg.mel)[:, None]  # [B, 1, M, F]
        pitch = self.pitch_map(midi).to(x.dtype)[..., None].expand(-1, -1, -1, x.shape[-1])  # [B, 2, M, F]
        x = F.leaky_relu(self.from_mel(torch.cat([x, pitch], dim=1)), 0.2) * LRELU_GAIN
        x = self.blocks(x)
        if self.cfg.mbstd_group:
            x = minibatch_std(x, self.cfg.mbstd_group)
        x = F.leaky_relu(self.conv(x), 0.2) * LRELU_GAIN
        return self.fc(x.flatten(1))

    def forward(self, log_mel: torch.Tensor, midi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        phi = self.features(log_mel, midi)
        key = self.embed_key(midi.long() - LOWEST_KEY).to(phi.dtype)
        hp = self.proj_h(normalize_h(h)).to(phi.dtype)
        return self.psi(phi)[:, 0] + (key * phi).sum(1) + (hp * phi).sum(1) / math.sqrt(phi.shape[1])


def r1_penalty(D: nn.Module, x: torch.Tensor, midi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """R1 = mean over the batch of ||dD(x)/dx||^2 at real ``x`` (scalar; differentiable in D's params).

    The caller weights it (StyleGAN2: gamma / 2 * R1, often every 16 steps). ``x`` is not modified.
    """
    x = x.detach().requires_grad_(True)
    out = D(x, midi, h)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()
