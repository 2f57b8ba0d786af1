"""Small stand-ins for f, G and H with the contract's call signatures, for the engine's tests.

The fake G really is pitched: it draws a decaying harmonic series at the key's f0 into the mel grid,
with harmonic amplitudes from h through one "modulated" weight [C_out, C_in] that H's offsets
multiply by (1 + delta). So inversion, loudness, loops and caching are exercised on real tones.
The classes are named like the product's so that models/checkpoint.load accepts their files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchaudio

from engine.networks import NetworkClasses
from models.checkpoint import save
from models.signal.mel import MelConfig

# ~1 s clips on a coarse grid: fast on CPU, long enough for loops.
TEST_MEL = MelConfig(n_fft=512, win_length=512, hop_length=128, n_mels=48, n_frames=128)


@dataclass(frozen=True)
class FeatureExtractorConfig:
    n_mels: int = TEST_MEL.n_mels
    h_dim: int = 8


class FeatureExtractor(torch.nn.Module):
    """f(log_mel [B, M, F]) -> h [B, h_dim]: a projection of the time-averaged spectrum."""

    Config = FeatureExtractorConfig

    def __init__(self, cfg: FeatureExtractorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = torch.nn.Linear(cfg.n_mels, cfg.h_dim)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(log_mel.mean(-1) / 10))


@dataclass(frozen=True)
class GeneratorConfig:
    mel: MelConfig = field(default_factory=lambda: TEST_MEL)
    h_dim: int = 8
    z_dim: int = 4
    n_harmonics: int = 6
    decay_s: float = 0.6


class Generator(torch.nn.Module):
    """G(h, z, midi, deltas) -> log-mel [B, M, F]: a decaying harmonic tone at each key's pitch."""

    Config = GeneratorConfig

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.harmonics = torch.nn.Parameter(0.5 * torch.randn(cfg.n_harmonics, cfg.h_dim))
        self.noise = torch.nn.Linear(cfg.z_dim, cfg.n_harmonics)
        m = cfg.mel
        fb = torchaudio.functional.melscale_fbanks(m.n_freqs, m.f_min, m.f_max, m.n_mels, m.sample_rate,
                                                   norm=None, mel_scale=m.mel_scale)
        self.register_buffer("fb", fb, persistent=False)  # [n_freqs, n_mels]

    def modulated_layers(self) -> dict[str, tuple[int, int]]:
        return {"harmonics": (self.cfg.n_harmonics, self.cfg.h_dim)}

    def forward(self, h: torch.Tensor, z: torch.Tensor, midi: torch.Tensor,
                deltas: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        c, m = self.cfg, self.cfg.mel
        weight = self.harmonics[None]                                        # [1, C_out, C_in]
        if deltas is not None and "harmonics" in deltas:
            weight = weight * (1 + deltas["harmonics"])                      # [B, C_out, C_in]
        amps = torch.nn.functional.softplus(torch.einsum("boi,bi->bo", weight, h) + self.noise(z))
        k = torch.arange(1, c.n_harmonics + 1, device=h.device)
        freqs = 440.0 * 2 ** ((midi.float()[:, None] - 69) / 12) * k        # [B, K]
        audible = (freqs < 0.45 * m.sample_rate).float()
        pos = (freqs / m.sample_rate * m.n_fft).clamp(max=m.n_freqs - 2)
        low, frac = pos.floor().long(), (pos - pos.floor())[..., None]
        rows = self.fb[low] * (1 - frac) + self.fb[low + 1] * frac          # [B, K, M]
        # A sine of amplitude a peaks at a * sum(window) / 2 in the STFT magnitude.
        scale = m.win_length / 4
        mel = torch.einsum("bk,bkm->bm", amps * audible / k * scale * 0.2, rows)   # [B, M]
        t = torch.arange(m.n_frames, device=h.device) * m.hop_length / m.sample_rate
        env = torch.exp(-t / c.decay_s) * (1 - torch.exp(-t / 0.01))        # [F]
        return torch.log((mel[:, :, None] * env).clamp_min(m.log_floor))


@dataclass(frozen=True)
class HyperNetworkConfig:
    h_dim: int = 8
    n_out: int = 6
    n_in: int = 8
    n_passes: int = 1


class HyperNetwork(torch.nn.Module):
    """H(h, h_init) -> {"harmonics": [B, C_out, C_in]}."""

    Config = HyperNetworkConfig

    def __init__(self, cfg: HyperNetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mlp = torch.nn.Sequential(torch.nn.Linear(2 * cfg.h_dim, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, cfg.n_out * cfg.n_in))

    def forward(self, h: torch.Tensor, h_init: torch.Tensor) -> dict[str, torch.Tensor]:
        out = 0.3 * torch.tanh(self.mlp(torch.cat([h, h_init], dim=1)))
        return {"harmonics": out.view(-1, self.cfg.n_out, self.cfg.n_in)}


FAKE_CLASSES = NetworkClasses(FeatureExtractor, Generator, HyperNetwork)


def write_fake_weights(folder: Path, seed: int = 0, hyper: bool = True, mel: MelConfig = TEST_MEL) -> Path:
    """Save random-init fake f, G (and H) as a weights folder; returns ``folder``."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"mel": mel.to_json()}
    save(folder / "features.safetensors", FeatureExtractor(FeatureExtractorConfig(n_mels=mel.n_mels)), meta)
    save(folder / "generator.safetensors", Generator(GeneratorConfig(mel=mel)), meta)
    if hyper:
        save(folder / "hyper.safetensors", HyperNetwork(HyperNetworkConfig()), meta)
    return folder


@dataclass(frozen=True)
class VocoderConfig:
    mel: MelConfig = field(default_factory=lambda: TEST_MEL)


class Vocoder(torch.nn.Module):
    """A stand-in neural inverter: log-mel [B, M, F] -> wave [B, num_samples] (a gain on Griffin-Lim)."""

    Config = VocoderConfig

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.gain = torch.nn.Parameter(torch.ones(()))
        from models.signal.mel import GriffinLim
        self.inner = GriffinLim(cfg.mel, n_iter=2)
        self.calls = 0

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.gain * self.inner(log_mel)


FAKE_CLASSES_WITH_VOCODER = NetworkClasses(FeatureExtractor, Generator, HyperNetwork, Vocoder)
