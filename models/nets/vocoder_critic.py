"""Adversarial critics of the vocoder (training only): HiFi-GAN's multi-period discriminator and
UnivNet's multi-resolution spectrogram discriminator (the pair Vocos trains with), slimmed, with
hinge losses and feature matching.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.signal.mel import SHIPPED_MEL, TINY_MEL, MelConfig
from models.signal.stft import stft_magnitude


@dataclass(frozen=True)
class VocoderCriticConfig:
    """Multi-period (HiFi-GAN) and multi-resolution (UnivNet, as in Vocos) discriminators, slimmed."""

    mel: MelConfig = SHIPPED_MEL
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    period_channels: tuple[int, ...] = (16, 64, 128, 128)
    resolutions: tuple[tuple[int, int], ...] = field(default=((256, 64), (512, 128), (1024, 256)))
    resolution_channels: int = 32

    @classmethod
    def tiny(cls, mel: MelConfig = TINY_MEL) -> "VocoderCriticConfig":
        return cls(mel=mel, periods=(2, 3), period_channels=(8, 16), resolutions=((128, 32), (256, 64)),
                   resolution_channels=8)


def _run_stack(x: torch.Tensor, convs: nn.ModuleList, out: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack, then the output conv -> (logits flattened ``[B, *]``, every feature map)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = out(x)
    feats.append(x)
    return x.flatten(1), feats


class PeriodCritic(nn.Module):
    """HiFi-GAN's sub-discriminator: the wave folded to ``[B, 1, T / p, p]``, 2-D convs along time."""

    def __init__(self, period: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.period = period
        chans = (1,) + tuple(channels)
        self.convs = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0)))
            for a, b in zip(chans[:-1], chans[1:]))
        self.out = nn.utils.parametrizations.weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        B, T = wave.shape
        pad = (-T) % self.period
        x = F.pad(wave, (0, pad), mode="reflect" if pad < T else "constant")
        x = x.reshape(B, 1, (T + pad) // self.period, self.period)
        return _run_stack(x, self.convs, self.out)


class ResolutionCritic(nn.Module):
    """UnivNet's sub-discriminator on one linear magnitude spectrogram ``[B, 1, freqs, frames]``."""

    def __init__(self, n_fft: int, hop_length: int, channels: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        wn = nn.utils.parametrizations.weight_norm
        self.convs = nn.ModuleList([
            wn(nn.Conv2d(1, channels, (7, 5), padding=(3, 2))),
            wn(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            wn(nn.Conv2d(channels, channels, (5, 3), (2, 1), padding=(2, 1))),
            wn(nn.Conv2d(channels, channels, (3, 3), (2, 1), padding=(1, 1))),
            wn(nn.Conv2d(channels, channels, 3, padding=1)),
        ])
        self.out = wn(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # Compressed magnitude keeps quiet partials visible to the critic.
        x = stft_magnitude(wave, self.n_fft, self.hop_length).pow(0.3)[:, None]  # [B, 1, freqs, frames]
        return _run_stack(x, self.convs, self.out)


class VocoderCritic(nn.Module):
    """All sub-discriminators: wave ``[B, T]`` -> (list of logits ``[B, *]``, list of feature-map lists)."""

    Config = VocoderCriticConfig

    def __init__(self, cfg: VocoderCriticConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.critics = nn.ModuleList(
            [PeriodCritic(p, cfg.period_channels) for p in cfg.periods]
            + [ResolutionCritic(n, h, cfg.resolution_channels) for n, h in cfg.resolutions])

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, feats = [], []
        for critic in self.critics:
            lg, ft = critic(wave)
            logits.append(lg)
            feats.append(ft)
        return logits, feats


def hinge_critic_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Sum over critics of mean(relu(1 - D(real))) + mean(relu(1 + D(fake))) (Vocos, MelGAN)."""
    return sum(F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean() for r, f in zip(real, fake))


def hinge_generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - f.float()).mean() for f in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between critic feature maps of real and generated waves, summed over critics."""
    total = torch.zeros((), device=fake[0][0].device)
    for fr, ff in zip(real, fake):
        total = total + sum((a.detach().float() - b.float()).abs().mean() for a, b in zip(fr, ff)) / len(ff)
    return total
