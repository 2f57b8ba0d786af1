"""Blocks shared by the networks: log-mel normalisation, gradient reversal, equalised-lr layers,
modulated convolution (StyleGAN2, with HyperStyle offsets) and a small CNN encoder.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.signal.mel import MelConfig

# StyleGAN2's gain after leaky ReLU keeps activations at unit variance.
LRELU_GAIN = math.sqrt(2.0)


def log_mel_top(mel: MelConfig) -> float:
    """Natural-log mel of a full-scale sine: |STFT| peak = sum(hann)/2 = win_length/4."""
    return math.log(mel.win_length / 4.0)


def normalize_log_mel(x: torch.Tensor, mel: MelConfig) -> torch.Tensor:
    """Map natural-log mels from ``[mel.log_min, log_mel_top(mel)]`` to about ``[-1, 1]``.

    Every network calls this on its input, and G calls ``denormalize_log_mel`` on its output, so
    all of them see the same scale whatever the grid (the top moves with ``win_length``).
    """
    top = log_mel_top(mel)
    center = 0.5 * (mel.log_min + top)
    half = 0.5 * (top - mel.log_min)
    return (x - center) / half


def denormalize_log_mel(y: torch.Tensor, mel: MelConfig) -> torch.Tensor:
    """Inverse of ``normalize_log_mel``."""
    top = log_mel_top(mel)
    return y * (0.5 * (top - mel.log_min)) + 0.5 * (mel.log_min + top)


def normalize_h(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each feature vector to RMS 1 (L2 norm sqrt(h_dim)); keeps mixes of h on the same sphere."""
    return h * torch.rsqrt(h.float().square().mean(dim=-1, keepdim=True) + eps).to(h.dtype)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


class GradReverse(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the gradient by ``-scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return GradReverse.apply(x, scale)


class EqualLinear(nn.Module):
    """Linear layer with StyleGAN's equalised learning rate (weights scaled at run time)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mult: float = 1.0, activation: bool = False, init_scale: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (init_scale / lr_mult))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.weight_gain = lr_mult / math.sqrt(in_features)
        self.bias_gain = lr_mult
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, w.to(x.dtype), None if b is None else b.to(x.dtype))
        if self.activation:
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x


class EqualConv2d(nn.Module):
    """Plain conv with equalised learning rate (for D and the pitch projections)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, w, b, padding=self.padding)


class ModulatedConv(nn.Module):
    """StyleGAN2 modulated conv; an optional per-sample offset ``delta [B, C_out, C_in]`` scales the
    weight as ``w * (1 + delta)`` (broadcast over the kernel) before modulation/demodulation.

    ``fused=True`` builds per-sample weights and runs one grouped conv (needed for ``delta``);
    ``fused=False`` scales activations instead (faster for large training batches without offsets).
    With ``fused=True``, ``delta=None`` and ``delta=0`` give bitwise-identical outputs.
    """

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, kernel_size: int = 3,
                 demodulate: bool = True) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor, delta: torch.Tensor | None = None,
                fused: bool = True) -> torch.Tensor:
        B, _, H, W = x.shape
        styles = self.affine(w)  # [B, C_in]
        if not self.demodulate:
            styles = styles * self.weight_gain  # to-mel: no demodulation, keep unit gain
        if not fused and delta is None:
            return self._forward_unfused(x, styles)
        weight = self.weight[None]  # [1, C_out, C_in, k, k]
        if delta is not None:
            weight = weight * (1 + delta.to(weight.dtype))[..., None, None]  # [B, C_out, C_in, k, k]
        weight = weight * styles[:, None, :, None, None].to(weight.dtype)  # [B, C_out, C_in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
        weight = weight.reshape(B * self.out_ch, self.in_ch, self.kernel_size, self.kernel_size)
        out = F.conv2d(x.reshape(1, B * self.in_ch, H, W), weight.to(x.dtype),
                       padding=self.kernel_size // 2, groups=B)
        return out.reshape(B, self.out_ch, H, W)

    def _forward_unfused(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        x = x * styles[:, :, None, None].to(x.dtype)
        out = F.conv2d(x, self.weight.to(x.dtype), padding=self.kernel_size // 2)
        if self.demodulate:
            # Elementwise in fp32: under autocast a matmul here would run in bf16.
            wsq = self.weight.float().square().sum(dim=[2, 3])  # [C_out, C_in]
            dcoefs = torch.rsqrt((styles.float().square()[:, None, :] * wsq[None]).sum(-1) + 1e-8)  # [B, C_out]
            out = out * dcoefs[:, :, None, None].to(out.dtype)
        return out


class ConvStage(nn.Module):
    """Two 3x3 convs (GroupNorm, leaky ReLU) then average pooling by ``pool`` (freq, time)."""

    def __init__(self, in_ch: int, out_ch: int, pool: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        groups = math.gcd(8, out_ch)
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.GroupNorm(groups, out_ch), nn.LeakyReLU(0.2),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.GroupNorm(groups, out_ch), nn.LeakyReLU(0.2),
        )
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else nn.Identity()
        self.pool = tuple(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x) + self.skip(x)
        if self.pool != (1, 1):
            x = F.avg_pool2d(x, self.pool)
        return x


class ConvEncoder(nn.Module):
    """Log-mel ``[B, M, F]`` -> feature map ``[B, C, M / prod(pool_f), F / prod(pool_t)]``.

    A strided stem halves both axes first (cost), then one ``ConvStage`` per channel count.
    """

    def __init__(self, mel: MelConfig, channels: tuple[int, ...], pools: tuple[tuple[int, int], ...],
                 stem_stride: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        if len(pools) != len(channels):
            raise ValueError("ConvEncoder: one pool per stage")
        self.mel = mel
        self.stem = nn.Conv2d(1, channels[0], 3, stride=stem_stride, padding=1)
        stages, prev = [], channels[0]
        for ch, pool in zip(channels, pools):
            stages.append(ConvStage(prev, ch, pool))
            prev = ch
        self.stages = nn.Sequential(*stages)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = normalize_log_mel(log_mel, self.mel)[:, None]  # [B, 1, M, F]
        return self.stages(F.leaky_relu(self.stem(x), 0.2))
