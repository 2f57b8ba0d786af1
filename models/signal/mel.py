"""Log-mel analysis and mel inversion, shared by training, the engine and the tests.

``MelConfig`` fixes the time-frequency grid; it is saved inside every checkpoint so that weights
always know the grid they were trained on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torchaudio

from models.configs import config_from_json, config_to_json


@dataclass(frozen=True)
class MelConfig:
    """Time-frequency grid of the model's log-mel spectrograms."""

    sample_rate: int = 16000
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 128
    n_mels: int = 256
    n_frames: int = 256
    f_min: float = 0.0
    f_max: float = 8000.0
    mel_scale: str = "htk"
    log_floor: float = 1e-5

    @property
    def num_samples(self) -> int:
        """Samples in one clip; a centred STFT of this length gives exactly ``n_frames`` frames."""
        return self.hop_length * (self.n_frames - 1)

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def log_min(self) -> float:
        """The value a silent bin takes."""
        return math.log(self.log_floor)

    def band_centres_hz(self) -> torch.Tensor:
        """Centre frequency (Hz) of each mel band ``[n_mels]``, as torchaudio's filterbank places them."""
        if self.mel_scale == "htk":
            to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
            points = torch.linspace(to_mel(self.f_min), to_mel(self.f_max), self.n_mels + 2, dtype=torch.float64)
            return (700.0 * (10.0 ** (points / 2595.0) - 1.0))[1:-1].float()
        fb = torchaudio.functional.melscale_fbanks(self.n_freqs, self.f_min, self.f_max, self.n_mels,
                                                   self.sample_rate, norm=None, mel_scale=self.mel_scale)
        return fb.argmax(dim=0).float() * self.sample_rate / self.n_fft

    def to_json(self) -> str:
        return config_to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "MelConfig":
        """Raises ``ValueError`` for unknown fields."""
        return config_from_json(cls, text)


# The paper's grid (512 mels x 512 frames at hop 64, ~2.05 s at 16 kHz).
PAPER_MEL = MelConfig(n_fft=2048, win_length=1024, hop_length=64, n_mels=512, n_frames=512)
# The shipped model's grid; see models/README.md for the measurements behind it.
SHIPPED_MEL = MelConfig()
# Tiny grid for CPU tests.
TINY_MEL = MelConfig(n_fft=512, win_length=512, hop_length=128, n_mels=32, n_frames=32)


class LogMel(torch.nn.Module):
    """Waveform ``[B, T]`` (or ``[T]``) at ``cfg.sample_rate`` -> natural-log mel ``[B, n_mels, frames]``."""

    def __init__(self, cfg: MelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        fb = torchaudio.functional.melscale_fbanks(
            cfg.n_freqs, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate,
            norm=None, mel_scale=cfg.mel_scale,
        )  # [n_freqs, n_mels]
        self.register_buffer("fb", fb, persistent=False)

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude ``[B, n_freqs, frames]``."""
        c = self.cfg
        spec = torch.stft(wave.float(), c.n_fft, c.hop_length, c.win_length, self.window,
                          center=True, return_complex=True)
        return spec.abs()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        squeeze = wave.dim() == 1
        if squeeze:
            wave = wave[None]
        out = self.from_magnitude(self.magnitude(wave))
        return out[0] if squeeze else out

    def from_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude ``[B, n_freqs, frames]`` -> natural-log mel ``[B, n_mels, frames]``."""
        mel = torch.matmul(magnitude.transpose(1, 2), self.fb).transpose(1, 2)
        return torch.log(mel.clamp_min(self.cfg.log_floor))


class MelInverter(Protocol):
    """Anything that turns log-mels ``[B, n_mels, n_frames]`` into waves ``[B, num_samples]``."""

    cfg: MelConfig

    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor: ...


class GriffinLim(torch.nn.Module):
    """Mel inversion: non-negative least squares to linear magnitude, then fast Griffin-Lim.

    The fallback and baseline inverter; a neural vocoder implements the same call. Three choices,
    each measured (``bench/bench_inversion.py``, models/README.md "Mel grid"):
    - mel -> linear by ``nnls_iter`` multiplicative NNLS updates, started from each band's mean
      spread over its triangle (the clamped pseudo-inverse left negative lobes and lost energy);
    - zero initial phase (lower spectral convergence than random phase at equal iterations);
    - ``project_mel``: every iteration re-distributes each mel band's energy over its linear bins in
      proportion to the current consistent spectrogram, so harmonics sharpen instead of staying
      smeared across wide high bands.
    The filterbank is applied sparsely (a linear bin lies under at most two triangles); the batch
    runs in chunks of ``chunk`` notes: tensors above glibc's 32 MB mmap threshold are page-faulted
    afresh on every allocation, which more than doubled the wall time at 16 notes a chunk.
    """

    def __init__(self, cfg: MelConfig, n_iter: int = 32, momentum: float = 0.99, nnls_iter: int = 10,
                 project_mel: bool = True, project_every: int = 1, chunk: int = 4) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_iter = n_iter
        self.momentum = momentum
        self.nnls_iter = nnls_iter
        self.project_mel = project_mel
        self.project_every = project_every
        self.chunk = chunk
        analysis = LogMel(cfg)
        fb = analysis.fb  # [n_freqs, n_mels]
        if int((fb > 0).sum(dim=1).max()) > 2:
            raise ValueError("GriffinLim expects triangular mel filters (at most two per linear bin)")
        weight, index = fb.topk(2, dim=1)  # [n_freqs, 2]
        self.register_buffer("window", analysis.window.clone(), persistent=False)
        self.register_buffer("fb_index", index, persistent=False)
        self.register_buffer("fb_weight", weight, persistent=False)
        self.register_buffer("band_area", fb.sum(dim=0).clamp_min(1e-12), persistent=False)  # [n_mels]

    def to_mel(self, linear: torch.Tensor) -> torch.Tensor:
        """Linear magnitude ``[B, n_freqs, F]`` -> mel magnitude ``[B, n_mels, F]`` (= fbᵀ · linear)."""
        out = linear.new_zeros(linear.shape[0], self.cfg.n_mels, linear.shape[2])
        out.index_add_(1, self.fb_index[:, 0], linear * self.fb_weight[:, 0, None])
        out.index_add_(1, self.fb_index[:, 1], linear * self.fb_weight[:, 1, None])
        return out

    def from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Adjoint of ``to_mel``: ``[B, n_mels, F]`` -> ``[B, n_freqs, F]`` (= fb · mel)."""
        return (mel.index_select(1, self.fb_index[:, 0]) * self.fb_weight[:, 0, None]
                + mel.index_select(1, self.fb_index[:, 1]) * self.fb_weight[:, 1, None])

    def mel_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> linear-amplitude mel ``[B, M, F]``; floor-level bins become exactly 0."""
        mel = torch.exp(log_mel.float())
        return torch.where(log_mel <= self.cfg.log_min + 1e-3, torch.zeros_like(mel), mel)

    def linear_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, M, F]`` -> non-negative linear magnitude ``[B, n_freqs, F]``."""
        mel = self.mel_magnitude(log_mel)
        linear = self.from_mel(mel / self.band_area[:, None])
        target = self.from_mel(mel)
        for _ in range(self.nnls_iter):
            # Lee-Seung update for min ‖fbᵀ·s − mel‖², s ≥ 0: stays non-negative, lowers the error.
            linear = linear * target / self.from_mel(self.to_mel(linear)).clamp_min(1e-12)
        return linear

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        squeeze = log_mel.dim() == 2
        if squeeze:
            log_mel = log_mel[None]
        waves = [self._invert(part) for part in torch.split(log_mel, self.chunk)]
        wave = torch.cat(waves)
        return wave[0] if squeeze else wave

    def _invert(self, log_mel: torch.Tensor) -> torch.Tensor:
        """One chunk ``[b, M, F]`` -> ``[b, num_samples]``."""
        c = self.cfg
        mel = self.mel_magnitude(log_mel)
        mag = self.linear_magnitude(log_mel)  # [b, n_freqs, F]
        stft_args = dict(n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                         window=self.window, center=True)
        spec = mag.to(torch.complex64)  # zero initial phase
        prev = None
        keep = self.momentum / (1 + self.momentum)  # fast Griffin-Lim (Perraudin et al. 2013)
        for i in range(self.n_iter):
            wave = torch.istft(spec, length=c.num_samples, **stft_args)
            rebuilt = torch.stft(wave, return_complex=True, **stft_args)  # [b, n_freqs, F]
            if self.project_mel and i % self.project_every == 0:
                rebuilt_mag = rebuilt.abs()
                ratio = mel / self.to_mel(rebuilt_mag).clamp_min(1e-12)
                mag = rebuilt_mag.mul_(self.from_mel(ratio))
            step = rebuilt if prev is None else torch.sub(rebuilt, prev, alpha=keep)
            spec = torch.sgn(step).mul_(mag)  # unit phasors times the target magnitude
            prev = rebuilt
        return torch.istft(spec, length=c.num_samples, **stft_args)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor, cfg: MelConfig) -> float:
    """‖|S_ref| − |S_est|‖_F / ‖|S_ref|‖_F on the STFT grid of ``cfg`` (lower is better)."""
    analysis = LogMel(cfg).to(reference.device)
    ref = analysis.magnitude(reference)
    est = analysis.magnitude(estimate)
    return float(torch.linalg.norm(ref - est) / torch.linalg.norm(ref).clamp_min(1e-12))
