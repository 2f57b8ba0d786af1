"""Evaluation classifiers, trained apart from f on the training split (paper Table 1).

PitchClassifier: 88 keys. Pitch is a pattern along the mel axis that holds over time, so the net
keeps full frequency resolution: 2-D convs that pool only time, a mean over time, dilated 1-D convs
along frequency, then a dense layer that sees where on the axis the pattern sits. It does not use
G's harmonic template (an evaluator independent of G; adding template scores measured no gain).
Any number of frames works (time is averaged), so training may use random crops.
InstrumentClassifier: a 2-D CNN (as f, without gradient reversal); its penultimate features define
the reconstruction feature-MSE and the FID.
Both: ``logits(x)`` and ``features(x)`` (penultimate) on natural-log mels ``[B, n_mels, n_frames]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.layers import ConvEncoder, ConvStage, normalize_log_mel
from models.signal.mel import SHIPPED_MEL, TINY_MEL, MelConfig
from models.units import N_KEYS


@dataclass(frozen=True)
class PitchClassifierConfig:
    mel: MelConfig = field(default_factory=lambda: SHIPPED_MEL)
    time_pool: int = 4                     # average frames first: pitch is slow, frames are many
    channels: tuple[int, ...] = (16, 32, 64)  # 2-D stages, each halves time only
    freq_channels: int = 64
    freq_dilations: tuple[int, ...] = (1, 2, 4, 8)
    squeeze_channels: int = 16             # channels per mel bin before the dense layer
    feature_dim: int = 256
    dropout: float = 0.1

    @classmethod
    def shipped(cls, mel: MelConfig = SHIPPED_MEL) -> "PitchClassifierConfig":
        return cls(mel=mel)

    @classmethod
    def tiny(cls, mel: MelConfig = TINY_MEL) -> "PitchClassifierConfig":
        return cls(mel=mel, time_pool=2, channels=(4, 8), freq_channels=8, freq_dilations=(1, 2),
                   squeeze_channels=2, feature_dim=16)


class FreqResBlock(nn.Module):
    """Dilated 1-D conv along the mel axis with a residual connection."""

    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(ch, ch, 5, padding=2 * dilation, dilation=dilation)
        self.norm = nn.GroupNorm(min(8, ch), ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.leaky_relu(self.norm(self.conv(x)), 0.2)


class PitchClassifier(nn.Module):
    """log-mel ``[B, M, F]`` -> 88 key logits (index = midi - 21)."""

    Config = PitchClassifierConfig

    def __init__(self, cfg: PitchClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stages, prev = [], 1
        for ch in cfg.channels:
            stages.append(ConvStage(prev, ch, pool=(1, 2)))
            prev = ch
        self.stages = nn.Sequential(*stages)
        self.to_freq = nn.Conv1d(prev, cfg.freq_channels, 1)
        self.freq = nn.Sequential(*(FreqResBlock(cfg.freq_channels, d) for d in cfg.freq_dilations))
        self.squeeze = nn.Conv1d(cfg.freq_channels, cfg.squeeze_channels, 1)
        self.dense = nn.Linear(cfg.squeeze_channels * cfg.mel.n_mels, cfg.feature_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, N_KEYS)

    def features(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, feature_dim]``."""
        x = normalize_log_mel(log_mel, self.cfg.mel)[:, None]  # [B, 1, M, F]
        if self.cfg.time_pool > 1:
            x = F.avg_pool2d(x, (1, self.cfg.time_pool), ceil_mode=True)
        x = self.stages(x).mean(dim=3)  # [B, C, M]
        x = self.freq(F.leaky_relu(self.to_freq(x), 0.2))
        x = F.leaky_relu(self.squeeze(x), 0.2).flatten(1)  # [B, S * M]
        return F.leaky_relu(self.dense(x), 0.2)

    def logits(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(log_mel)))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.logits(log_mel)


@dataclass(frozen=True)
class InstrumentClassifierConfig:
    mel: MelConfig = field(default_factory=lambda: SHIPPED_MEL)
    n_instruments: int = 256
    channels: tuple[int, ...] = (32, 64, 128, 192, 256)
    feature_dim: int = 256
    dropout: float = 0.2

    @property
    def out_freq(self) -> int:
        return self.mel.n_mels // 2 ** (len(self.channels) + 1)

    @classmethod
    def shipped(cls, mel: MelConfig = SHIPPED_MEL, n_instruments: int = 256) -> "InstrumentClassifierConfig":
        return cls(mel=mel, n_instruments=n_instruments)

    @classmethod
    def tiny(cls, mel: MelConfig = TINY_MEL, n_instruments: int = 8) -> "InstrumentClassifierConfig":
        return cls(mel=mel, n_instruments=n_instruments, channels=(8, 16), feature_dim=16)


class InstrumentClassifier(nn.Module):
    """log-mel ``[B, M, F]`` -> instrument logits ``[B, n_instruments]``."""

    Config = InstrumentClassifierConfig

    def __init__(self, cfg: InstrumentClassifierConfig) -> None:
        super().__init__()
        if cfg.out_freq < 1 or cfg.mel.n_frames // 2 ** (len(cfg.channels) + 1) < 1:
            raise ValueError("InstrumentClassifier: too many stages for the mel grid")
        self.cfg = cfg
        self.encoder = ConvEncoder(cfg.mel, cfg.channels, tuple((2, 2) for _ in cfg.channels))
        self.dense = nn.Linear(2 * cfg.channels[-1] * cfg.out_freq, cfg.feature_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.n_instruments)

    def features(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[B, feature_dim]`` (for feature-MSE and FID)."""
        x = self.encoder(log_mel)  # [B, C, M', F']
        std = (x.var(dim=3, correction=0) + 1e-5).sqrt()
        x = torch.cat([x.mean(dim=3), std], dim=1)  # [B, 2C, M']
        return F.leaky_relu(self.dense(x.flatten(1)), 0.2)

    def logits(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(log_mel)))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.logits(log_mel)
