"""Neural mel inversion (the default ``MelInverter``): an iSTFT-head vocoder with a locked phase.

A ConvNeXt backbone (Vocos) reads the log-mel at its own frame rate and predicts, per frame, the
log-magnitude of an STFT whose hop is the mel hop, as a residual over the mel's pseudo-inverse.
The phase is not predicted: it is a phase-locked vocoder's phase derived from that magnitude
(``models/signal/phase.py``). Vocos predicts the phase directly; a convolution gives equal outputs
for equal frames, so its phase cannot rotate through a held note, and on our one-shots it scored
24 % pitch accuracy where Griffin-Lim scored 99 % (models/README.md "Vocoder").

Two configs: ``VocoderConfig`` is the architecture (it rebuilds the network and travels in the
checkpoint); ``VocoderSchedule`` is the inference schedule, the weightless steps after the first
inverse STFT: ``refine_iters`` Griffin-Lim steps on the head's grid, ``coarse_projections``
over-relaxed steps that rescale the wave's mel bands to the input mel on a 4x coarser STFT grid
(a quarter of the cost each), and ``mel_projections`` such steps on a 2x coarser grid (the mel's
own on a GPU, where steps cost little: ``cuda_*``). Any checkpoint runs with any schedule.
Everything runs at the frame rate (256 frames for 2 s). The critics used only in training are in
``models/nets/vocoder_critic.py``; the STFT helpers in ``models/signal/``.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from models.nets.layers import normalize_log_mel
from models.signal.mel import SHIPPED_MEL, TINY_MEL, MelConfig
from models.signal.mel_bands import MelBands
from models.signal.phase import PEAK_INTERPOLATIONS, LockedPhase
from models.signal.stft import OverlapAdd, magnitude

PHASE_MODES = ("locked", "direct")


@dataclass(frozen=True)
class VocoderConfig:
    """Architecture of ``NeuralVocoder``; the iSTFT hop is the mel hop (one STFT frame per mel frame)."""

    mel: MelConfig = SHIPPED_MEL
    dim: int = 160                # backbone channels
    intermediate_dim: int = 480   # ConvNeXt MLP width
    n_layers: int = 6
    kernel_size: int = 7          # depthwise conv over frames
    input_kernel: int = 7         # first conv, n_mels -> dim
    n_fft: int = 2048             # iSTFT head window: the mel's own (1024 cannot resolve keys 21-23)
    phase: str = "locked"         # "locked": phase-locked vocoder phase from the magnitude; "direct": Vocos
    phase_offset: bool = False    # "locked": plus a learned per-frame phase offset (zero at init)
    peak_interpolation: str = "parabolic"  # "locked": how a peak's frequency is read ("slope": the window's curvature)
    peak_move_tolerance: float = 0.15  # "locked": bins; a peak moving less carries no timing term (0: always carries it)
    peak_move_max_hz: float = 1000.0  # ... for partials below this frequency
    magnitude_prior: bool = True  # predict log-magnitude as a residual over the mel's pseudo-inverse
    project_magnitude: bool = True  # rescale the predicted magnitude's bands to the input mel (no STFT)

    def __post_init__(self) -> None:
        if self.n_fft < self.mel.hop_length or self.n_fft % 2:
            raise ValueError(f"n_fft {self.n_fft} must be even and >= the mel hop {self.mel.hop_length}")
        if self.project_magnitude and self.n_fft != self.mel.n_fft:
            raise ValueError("project_magnitude needs the head on the mel's FFT size")
        if self.peak_interpolation not in PEAK_INTERPOLATIONS:
            raise ValueError(f"peak_interpolation must be one of {PEAK_INTERPOLATIONS}, got {self.peak_interpolation!r}")
        if self.phase not in PHASE_MODES:
            raise ValueError(f"phase must be one of {PHASE_MODES}, got {self.phase!r}")

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def max_log_magnitude(self) -> float:
        """Log of the largest STFT magnitude a wave in [-1, 1] can have (sum of the Hann window)."""
        return math.log(self.n_fft / 2)

    @property
    def head_channels(self) -> int:
        """Outputs per frame: log-magnitude, plus a phase (direct) or a phase offset (locked)."""
        with_phase = self.phase == "direct" or self.phase_offset
        return (2 if with_phase else 1) * self.n_freqs

    @classmethod
    def shipped(cls, mel: MelConfig = SHIPPED_MEL) -> "VocoderConfig":
        return cls(mel=mel, n_fft=mel.n_fft)

    @classmethod
    def tiny(cls, mel: MelConfig = TINY_MEL) -> "VocoderConfig":
        return cls(mel=mel, dim=32, intermediate_dim=64, n_layers=2, n_fft=mel.n_fft)


class Steps(NamedTuple):
    """The steps one forward pass runs after the first inverse STFT."""

    refine_iters: int
    coarse_projections: int
    mel_projections: int
    mel_hop_factor: int


@dataclass(frozen=True)
class VocoderSchedule:
    """Inference steps of ``NeuralVocoder`` after the first inverse STFT; they hold no weights.

    The CPU counts are the cheapest measured to take the mel L1 below Griffin-Lim 32's on both
    held-out splits (models/README.md "Vocoder"): a full-grid step costs ~0.5 s of one core per 88
    notes, a coarse one ~0.13 s. Inference on a CUDA device (no autograd) runs the ``cuda_*`` counts
    instead, which cost little there. Training always runs the CPU counts.
    """

    refine_iters: int = 0         # Griffin-Lim steps on the head's grid after the first inverse STFT
    coarse_projections: int = 9   # then mel projections on a grid coarse_hop_factor x coarser (4x cheaper)
    coarse_hop_factor: int = 4
    coarse_power: float = 1.8     # over-relaxation: a coarse projection applies (target / current) ** power
    mel_projections: int = 2      # then rescale the wave's STFT to the input mel on a finer grid:
    mel_hop_factor: int = 2       # every other mel frame (half the cost of the mel's own grid, 1)
    cuda_refine_iters: int = 4
    cuda_coarse_projections: int = 0
    cuda_mel_projections: int = 32
    cuda_mel_hop_factor: int = 1

    @classmethod
    def tiny(cls) -> "VocoderSchedule":
        """For the tests' small grids (a 512-sample window allows coarse hops of up to 2x a 128 hop)."""
        return cls(coarse_projections=2, coarse_hop_factor=2)

    @classmethod
    def for_mel(cls, mel: MelConfig) -> "VocoderSchedule":
        """The default schedule, or ``tiny()`` where the mel's window is too short for its coarse grid."""
        default = cls()
        return default if not default.problems(mel) else cls.tiny()

    def problems(self, mel: MelConfig) -> list[str]:
        """Why this schedule cannot run on ``mel``'s grid (empty when it can)."""
        out = []
        for used, factor in ((self.coarse_projections or self.cuda_coarse_projections, self.coarse_hop_factor),
                             (self.mel_projections, self.mel_hop_factor),
                             (self.cuda_mel_projections, self.cuda_mel_hop_factor)):
            if used and mel.hop_length * factor > mel.win_length // 2:
                out.append(f"projections at hop {mel.hop_length} x {factor}: more than half the "
                           f"{mel.win_length}-sample window, so the inverse STFT cannot overlap-add")
        return out

    def steps(self, cuda: bool) -> Steps:
        if cuda:
            return Steps(self.cuda_refine_iters, self.cuda_coarse_projections, self.cuda_mel_projections,
                         self.cuda_mel_hop_factor)
        return Steps(self.refine_iters, self.coarse_projections, self.mel_projections, self.mel_hop_factor)

    def with_steps(self, refine_iters: int, *projections: int) -> "VocoderSchedule":
        """These step counts on the CPU and on CUDA alike (the CPU's grid for the last projections too,
        so a GPU reproduces the CPU path): ``with_steps(r, p)`` (no coarse projections) or
        ``with_steps(r, c, p)``."""
        if len(projections) not in (1, 2):
            raise ValueError("steps are refine/mel_projections or refine/coarse/mel_projections")
        coarse, fine = (0, *projections) if len(projections) == 1 else projections
        return dataclasses.replace(self, refine_iters=refine_iters, coarse_projections=coarse, mel_projections=fine,
                                   cuda_refine_iters=refine_iters, cuda_coarse_projections=coarse,
                                   cuda_mel_projections=fine, cuda_mel_hop_factor=self.mel_hop_factor)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over time -> LayerNorm -> MLP (GELU) -> layer scale, residual. ``[B, C, T]``."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate_dim)
        self.pw2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)  # [B, T, C]
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))) * self.gamma
        return x + y.transpose(1, 2)


class NeuralVocoder(nn.Module):
    """Log-mel ``[B, n_mels, F]`` (or ``[n_mels, F]``) -> wave ``[B, hop * (F - 1)]`` at the mel's rate.

    For a full clip (F = ``mel.n_frames``) the output has ``mel.num_samples`` samples, like
    ``GriffinLim``. ``schedule`` (default: ``VocoderSchedule.for_mel``) may be replaced at any time.
    For inference use ``load_vocoder`` (eval mode, no gradients recorded).
    """

    Config = VocoderConfig
    # Without autograd on the CPU, big batches run in chunks of this many clips: tensors stay below
    # glibc's 32 MB mmap threshold (no fresh page faults per allocation) and nearer the cache;
    # 88 notes took 2.7 s of CPU in chunks of 4 against 4.0 s in chunks of 16.
    cpu_chunk = 4

    def __init__(self, cfg: VocoderConfig, schedule: VocoderSchedule | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.schedule = schedule if schedule is not None else VocoderSchedule.for_mel(cfg.mel)
        self.embed = nn.Conv1d(cfg.mel.n_mels, cfg.dim, cfg.input_kernel, padding=cfg.input_kernel // 2)
        self.norm_in = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size, 1.0 / cfg.n_layers)
            for _ in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.head_channels)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        with warnings.catch_warnings():  # a head coarser than the mel grid leaves some low filters empty
            warnings.simplefilter("ignore", UserWarning)
            fb = torchaudio.functional.melscale_fbanks(cfg.n_freqs, cfg.mel.f_min, cfg.mel.f_max, cfg.mel.n_mels,
                                                       cfg.mel.sample_rate, norm=None, mel_scale=cfg.mel.mel_scale)
        # A sinusoid's STFT peak grows with the window's sum: rescale mel magnitudes to this head's window.
        gain = cfg.n_fft / cfg.mel.win_length
        self.register_buffer("mel_pinv", torch.linalg.pinv(fb) * gain, persistent=False)  # [n_mels, n_freqs]
        # The DSP around the network; none of it holds weights.
        self.locked_phase = LockedPhase(cfg.n_fft, cfg.hop_length, cfg.mel.sample_rate, cfg.peak_interpolation,
                                        cfg.peak_move_tolerance, cfg.peak_move_max_hz)
        self.bands = MelBands(cfg.mel)
        self.inverse_stft = OverlapAdd()
        self.apply(_init_weights)
        if cfg.magnitude_prior:  # a zero head starts from the analytic spectrum and learns residuals
            nn.init.zeros_(self.head.weight)

    @property
    def schedule(self) -> VocoderSchedule:
        return self._schedule

    @schedule.setter
    def schedule(self, schedule: VocoderSchedule) -> None:
        problems = schedule.problems(self.cfg.mel)
        if problems:
            raise ValueError("; ".join(problems))
        self._schedule = schedule

    def spectrum(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted STFT magnitude and phase ``[B, n_freqs, F]`` (float32) of the wave behind ``log_mel``.

        The head works frames-first (``[B, F, n_freqs]``): every per-frame step (peaks, slopes) then
        runs along contiguous memory, which is most of this method's CPU time.
        """
        c = self.cfg
        log_mel = log_mel.float().clamp_min(c.mel.log_min)
        log_mag, phase = self.head_outputs(log_mel)
        if c.phase == "locked":
            # A conv net gives equal outputs for equal frames, so a directly predicted phase cannot
            # rotate through a held note (Vocos measured 24 % pitch accuracy here); the phase of a
            # phase vocoder, derived from the magnitude, rotates at each partial's own frequency.
            with torch.no_grad():
                locked = self.locked_phase(log_mag.detach())
            phase = locked if phase is None else locked + phase
        # Clamping the log keeps exp() finite in bf16 training; no real wave exceeds the bound.
        mag = torch.exp(log_mag.clamp(max=c.max_log_magnitude))  # [B, F, n_freqs]
        if c.project_magnitude:
            # The mel fixes each band's energy; the network only shapes it inside the band.
            target = self.bands.mel_magnitude(log_mel).transpose(1, 2)  # [B, F, n_mels]
            mag = mag * self.bands.from_mel(target / self.bands.to_mel(mag).clamp_min(1e-12))
        return mag.transpose(1, 2), phase.transpose(1, 2)

    def head_outputs(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's log-magnitude ``[B, F, n_freqs]`` (frames first, with the prior if any) and its
        phase or phase offset (None for the plain locked phase), from a log-mel clamped at its floor."""
        c = self.cfg
        x = normalize_log_mel(log_mel, c.mel)
        x = self.embed(x)  # [B, dim, F]
        x = self.norm_in(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        x = self.head(self.norm_out(x.transpose(1, 2))).float()  # [B, F, head_channels]
        if c.head_channels == c.n_freqs:
            log_mag, phase = x, None
        else:
            log_mag, phase = x.chunk(2, dim=-1)  # [B, F, n_freqs] each
        if c.magnitude_prior:
            log_mag = log_mag + self.prior_log_magnitude(log_mel)
        return log_mag, phase

    def prior_log_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log of the mel's least-squares linear magnitude on this head's grid, ``[B, F, n_freqs]``
        (Griffin-Lim's magnitude), floored at the mel floor."""
        c = self.cfg
        mel = torch.exp(log_mel) * (log_mel > c.mel.log_min + 1e-3)  # bands at the floor are silent
        with torch.autocast(mel.device.type, enabled=False):
            lin = torch.matmul(mel.transpose(1, 2), self.mel_pinv)  # [B, F, n_freqs]
        return torch.log(lin.clamp_min(c.mel.log_floor))

    def forward(self, log_mel: torch.Tensor, with_magnitude: bool = False):
        """Wave ``[B, T]``; with ``with_magnitude`` also the synthesised magnitude ``[B, n_freqs, F]``
        (training supervises it directly; through the module call, so DDP sees it)."""
        squeeze = log_mel.dim() == 2
        if squeeze:
            log_mel = log_mel[None]
        recording = torch.is_grad_enabled() and self.head.weight.requires_grad
        if (log_mel.device.type == "cpu" and not recording and not with_magnitude
                and log_mel.shape[0] > self.cpu_chunk):
            wave = torch.cat([self(part) for part in log_mel.split(self.cpu_chunk)])
            return wave[0] if squeeze else wave
        c, s = self.cfg, self.schedule
        mag, phase = self.spectrum(log_mel)
        mag_ff, phase_ff = mag.transpose(1, 2), phase.transpose(1, 2)  # frames first: contiguous
        stft = dict(n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.n_fft, window=self.window, center=True)
        length = c.hop_length * (log_mel.shape[-1] - 1)
        # torch.complex of the two products is ~3x faster than torch.polar on the CPU.
        spec = torch.complex(mag_ff * torch.cos(phase_ff), mag_ff * torch.sin(phase_ff))
        wave = self.inverse_stft(spec, c.hop_length, length, self.window, "head")
        steps = self.steps(log_mel.device, recording)
        for _ in range(steps.refine_iters):
            # One Griffin-Lim step from a good phase repairs much of the overlap-add inconsistency
            # (mel L1 halved with the true magnitude) for one STFT pair; training sees it too.
            rebuilt = torch.stft(wave, return_complex=True, **stft).transpose(1, 2)  # [B, F, n_freqs]
            gain = mag_ff / (magnitude(rebuilt) + 1e-6)  # |S| -> mag, phase kept
            wave = self.inverse_stft(rebuilt * gain, c.hop_length, length, self.window, "head")
        for _ in range(steps.coarse_projections):
            wave = self.bands.project(wave, log_mel, s.coarse_hop_factor, s.coarse_power)
        for _ in range(steps.mel_projections):
            wave = self.bands.project(wave, log_mel, steps.mel_hop_factor)
        if squeeze:
            wave, mag = wave[0], mag[0]
        return (wave, mag) if with_magnitude else wave

    def steps(self, device: torch.device, recording: bool) -> Steps:
        """The schedule's steps for a forward pass on ``device``: inference on a CUDA device runs the
        ``cuda_*`` counts; training (``recording``) always the CPU's."""
        return self.schedule.steps(cuda=device.type == "cuda" and not recording)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def load_vocoder(path: str | Path, device: str | torch.device = "cpu",
                 steps: tuple[int, ...] | None = None) -> NeuralVocoder:
    """A trained vocoder ready to invert mels: eval mode, frozen (no autograd graph is recorded).
    ``steps`` (refine_iters, mel_projections) or (refine_iters, coarse_projections, mel_projections)
    replaces the default schedule's counts on every device (``VocoderSchedule.with_steps``)."""
    from models import checkpoint

    net, _, _ = checkpoint.load(path, NeuralVocoder, device)
    if steps is not None:
        net.schedule = net.schedule.with_steps(*steps)
    return net.eval().requires_grad_(False)
