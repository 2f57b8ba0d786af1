"""G — the GANStrument generator: StyleGAN2 synthesis of a log-mel from (h, z, MIDI key).

Mapping (IC-GAN's StyleGAN2 variant): embed(h) and embed(p) each through a linear layer, concatenated
with the normalised z, then an MLP -> w. Synthesis: learned rectangular constant, modulated 3x3 convs
with demodulation, bilinear upsampling, noise, skip "to-mel" outputs per resolution.
Explicit pitch structure (see models/nets/pitch_template.py): every synthesis layer adds a learned 1x1
projection of the key's pitch map, pooled to the layer's height and broadcast over time.
Timbre path: h reaches every layer twice, through w (modulation) and as a per-channel bias.
Every modulated conv takes an optional offset Δ [B, C_out, C_in]: weight * (1 + Δ) (HyperStyle).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.layers import (LRELU_GAIN, EqualLinear, ModulatedConv, denormalize_log_mel, normalize_2nd_moment,
                           normalize_h)
from models.signal.mel import SHIPPED_MEL, TINY_MEL, MelConfig
from models.nets.pitch_template import N_PITCH_CHANNELS, PitchMap, log_f0_fourier
from models.units import LOWEST_KEY, N_KEYS

NOISE_MODES = ("random", "const", "none")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of G; the mel grid it synthesises is part of it."""

    mel: MelConfig = field(default_factory=lambda: SHIPPED_MEL)
    h_dim: int = 256
    z_dim: int = 128
    w_dim: int = 256
    embed_dim: int = 256          # h and pitch embeddings fed to the mapping MLP
    mapping_layers: int = 4
    mapping_lr_mult: float = 0.01
    pitch_fourier: int = 6        # Fourier features of log f0 added to the learned key embedding
    pitch_dim: int = 32           # channels of the shared pitch-map MLP before per-layer projections
    template_rolloff: float = 1.0
    base_min: int = 4             # the constant's smaller side
    channel_base: int = 3584      # channels at a level whose longer side is r: min(channel_max, channel_base // r)
    channel_max: int = 192
    channel_min: int = 8          # floor for fine levels of large grids (e.g. 512 x 512)
    noise_seed: int = 0           # seeds the "const" noise buffers (deterministic inference)
    h_bias_init: float = 0.3      # init std of the per-layer timbre bias (1 would double each layer's variance)
    out_gain: float = 0.2         # scales the summed to-mel skips: an untrained G starts near the data's range

    @property
    def n_levels(self) -> int:
        return int(math.log2(min(self.mel.n_mels, self.mel.n_frames) // self.base_min)) + 1

    @property
    def base_shape(self) -> tuple[int, int]:
        """(height, width) of the learned constant."""
        div = 2 ** (self.n_levels - 1)
        return self.mel.n_mels // div, self.mel.n_frames // div

    def level_shape(self, level: int) -> tuple[int, int]:
        bh, bw = self.base_shape
        return bh * 2 ** level, bw * 2 ** level

    def channels(self, level: int) -> int:
        # By the longer side, so a 128 x 256 grid costs half of 256 x 256, not twice.
        return max(self.channel_min, min(self.channel_max, self.channel_base // max(self.level_shape(level))))

    def modulated_layers(self) -> dict[str, tuple[int, int]]:
        """Every modulated conv, coarse to fine: name -> (C_out, C_in), without building G."""
        out: dict[str, tuple[int, int]] = {}
        for level in range(self.n_levels):
            height, ch = self.level_shape(level)[0], self.channels(level)
            if level > 0:
                out[f"b{height}_conv0"] = (ch, self.channels(level - 1))
            out[f"b{height}_conv1"] = (ch, ch)
            out[f"b{height}_tomel"] = (1, ch)
        return out

    @classmethod
    def shipped(cls, mel: MelConfig = SHIPPED_MEL) -> "GeneratorConfig":
        return cls(mel=mel)

    @classmethod
    def tiny(cls, mel: MelConfig = TINY_MEL) -> "GeneratorConfig":
        return cls(mel=mel, h_dim=16, z_dim=8, w_dim=16, embed_dim=16, mapping_layers=2, pitch_fourier=2,
                   pitch_dim=4, channel_base=128, channel_max=16)


class MappingNetwork(nn.Module):
    """(h, z, midi) -> w ``[B, w_dim]``."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_h = EqualLinear(cfg.h_dim, cfg.embed_dim)
        self.embed_key = nn.Embedding(N_KEYS, cfg.embed_dim)
        nn.init.normal_(self.embed_key.weight)
        self.embed_f0 = EqualLinear(2 * cfg.pitch_fourier, cfg.embed_dim)
        layers, dim = [], 2 * cfg.embed_dim + cfg.z_dim
        for _ in range(cfg.mapping_layers):
            layers.append(EqualLinear(dim, cfg.w_dim, lr_mult=cfg.mapping_lr_mult, activation=True))
            dim = cfg.w_dim
        self.mlp = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor, z: torch.Tensor, midi: torch.Tensor) -> torch.Tensor:
        key = self.embed_key(midi.long() - LOWEST_KEY) + self.embed_f0(log_f0_fourier(midi, self.cfg.pitch_fourier))
        x = torch.cat([normalize_2nd_moment(self.embed_h(h)), normalize_2nd_moment(key),
                       normalize_2nd_moment(z)], dim=1)
        return self.mlp(x)


class SynthesisLayer(nn.Module):
    """Modulated conv + noise + bias + pitch projection + timbre bias -> leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, cfg: GeneratorConfig, shape: tuple[int, int],
                 upsample: bool, generator: torch.Generator) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = ModulatedConv(in_ch, out_ch, cfg.w_dim)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(shape, generator=generator), persistent=False)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.pitch_proj = nn.Conv1d(cfg.pitch_dim, out_ch, 1)
        self.h_bias = EqualLinear(cfg.h_dim, out_ch, bias=False, init_scale=cfg.h_bias_init)

    def forward(self, x: torch.Tensor, w: torch.Tensor, pitch: torch.Tensor, h: torch.Tensor,
                delta: torch.Tensor | None, noise_mode: str, fused: bool) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.conv(x, w, delta, fused)  # [B, C, H, W]
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        add = self.bias + self.h_bias(h)  # [B, C]
        x = x + add[:, :, None, None].to(x.dtype) + self.pitch_proj(pitch)[..., None].to(x.dtype)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN


class SynthesisBlock(nn.Module):
    """One resolution: (upsampling conv0), conv1, to-mel skip."""

    def __init__(self, level: int, cfg: GeneratorConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.level = level
        ch = cfg.channels(level)
        shape = cfg.level_shape(level)
        self.height = shape[0]
        if level == 0:
            self.const = nn.Parameter(torch.randn(ch, *shape))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(cfg.channels(level - 1), ch, cfg, shape, True, generator)
        self.conv1 = SynthesisLayer(ch, ch, cfg, shape, False, generator)
        self.tomel = ModulatedConv(ch, 1, cfg.w_dim, kernel_size=1, demodulate=False)
        self.tomel_bias = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, w: torch.Tensor, pitch: torch.Tensor,
                h: torch.Tensor, deltas: dict[str, torch.Tensor], noise_mode: str,
                fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        pitch = F.adaptive_avg_pool1d(pitch, self.height)  # [B, pitch_dim, H]
        name = f"b{self.height}_"
        if self.conv0 is None:
            x = self.const[None].expand(w.shape[0], -1, -1, -1).to(w.dtype)
        else:
            x = self.conv0(x, w, pitch, h, deltas.get(name + "conv0"), noise_mode, fused)
        x = self.conv1(x, w, pitch, h, deltas.get(name + "conv1"), noise_mode, fused)
        y = self.tomel(x, w, deltas.get(name + "tomel"), fused) + self.tomel_bias.to(x.dtype)
        if img is not None:
            y = y + F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
        return x, y


class Generator(nn.Module):
    """G(h [B, h_dim], z [B, z_dim], midi [B] long in 21..108, deltas) -> log-mel ``[B, n_mels, n_frames]``.

    Output is in natural-log-mel units (the grid of ``cfg.mel``). Noise is random in training mode and
    a fixed buffer in eval mode, unless ``noise_mode`` says otherwise. ``deltas`` maps names from
    ``modulated_layers()`` to ``[B, C_out, C_in]`` offsets (or ``[1, C_out, C_in]``, shared by the
    batch); missing names mean no offset.

    ``fused`` picks the modulated-conv path; by default per-sample weights (always with offsets, and
    in eval mode), else activation scaling. ``deltas=None`` and zero offsets are bitwise identical on
    the same path: always in eval mode; in training mode only if ``fused=True`` is passed.
    """

    Config = GeneratorConfig

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        m = cfg.mel
        div = 2 ** (cfg.n_levels - 1)
        if cfg.n_levels < 1 or m.n_mels % div or m.n_frames % div:
            raise ValueError(f"mel grid {m.n_mels}x{m.n_frames} is not divisible by {div} "
                             f"(base_min={cfg.base_min})")
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.pitch_map = PitchMap(m, cfg.template_rolloff)
        self.pitch_mlp = nn.Sequential(nn.Conv1d(N_PITCH_CHANNELS, cfg.pitch_dim, 1), nn.LeakyReLU(0.2),
                                       nn.Conv1d(cfg.pitch_dim, cfg.pitch_dim, 1), nn.LeakyReLU(0.2))
        gen = torch.Generator().manual_seed(cfg.noise_seed)
        self.blocks = nn.ModuleList(SynthesisBlock(i, cfg, gen) for i in range(cfg.n_levels))
        self._layer_names = frozenset(cfg.modulated_layers())

    def modulated_layers(self) -> dict[str, tuple[int, int]]:
        """Every modulated conv, coarse to fine: name -> (C_out, C_in). ``*_tomel`` are the 1x1 skips."""
        return self.cfg.modulated_layers()

    def forward(self, h: torch.Tensor, z: torch.Tensor, midi: torch.Tensor,
                deltas: dict[str, torch.Tensor] | None = None, noise_mode: str | None = None,
                fused: bool | None = None) -> torch.Tensor:
        if noise_mode is None:
            noise_mode = "random" if self.training else "const"
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if deltas:
            unknown = set(deltas) - self._layer_names
            if unknown:
                raise KeyError(f"deltas for unknown layers: {sorted(unknown)}")
        if fused is None:
            # Per-sample weights (fused) are needed for offsets; activation scaling is faster in training.
            fused = bool(deltas) or not self.training
        h = normalize_h(h)
        w = self.mapping(h, z, midi)
        pitch = self.pitch_mlp(self.pitch_map(midi).to(w.dtype))  # [B, pitch_dim, n_mels]
        x = img = None
        for block in self.blocks:
            x, img = block(x, img, w, pitch, h, deltas or {}, noise_mode, fused)
        return denormalize_log_mel(img[:, 0] * self.cfg.out_gain, self.cfg.mel)
