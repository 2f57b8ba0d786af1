"""Neural mel inversion (the default ``MelInverter``): an iSTFT-head vocoder with a locked phase.

A ConvNeXt backbone (Vocos) reads the log-mel at its own frame rate and predicts, per frame, the
log-magnitude of an STFT whose hop is the mel hop, as a residual over the mel's pseudo-inverse.
The phase is not predicted: it is a phase-locked vocoder's phase derived from that magnitude
(each partial's frequency from the slope of the log-magnitude, integrated over frames; bins locked
to their spectral peak). Vocos predicts the phase directly; a convolution gives equal outputs for
equal frames, so its phase cannot rotate through a held note, and on our one-shots it scored 24 %
pitch accuracy where Griffin-Lim scored 99 % (models/README.md "Vocoder"). One inverse STFT, then
``refine_iters`` Griffin-Lim steps on the head's grid, ``coarse_projections`` over-relaxed steps
that rescale the wave's mel bands to the input mel on a 4x coarser STFT grid (a quarter of the
cost each), and ``mel_projections`` such steps on a 2x coarser grid (the mel's own on a GPU,
where steps cost little: ``cuda_*``). Everything runs at the frame rate (256 frames for 2 s).

Also here: the multi-resolution STFT distance (training loss and evaluation metric). The critics
used only in training are in ``models/nets/vocoder_critic.py``.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from models.nets.layers import normalize_log_mel
from models.signal.mel import SHIPPED_MEL, TINY_MEL, GriffinLim, LogMel, MelConfig


PHASE_MODES = ("locked", "direct")
# A Hann window of n samples behaves like a Gaussian exp(-pi t^2 / gamma), gamma = GAMMA_HANN n^2 (PGHI).
GAMMA_HANN = 0.25645


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
    peak_interpolation: str = "parabolic"  # "locked": how a peak's frequency is read ("slope": until session 6)
    peak_move_tolerance: float = 0.15  # "locked": bins; a peak moving less carries no timing term (0: until session 7)
    peak_move_max_hz: float = 1000.0  # ... for partials below this frequency
    magnitude_prior: bool = True  # predict log-magnitude as a residual over the mel's pseudo-inverse
    project_magnitude: bool = True  # rescale the predicted magnitude's bands to the input mel (no STFT)
    refine_iters: int = 0         # Griffin-Lim steps on the head's grid after the first inverse STFT
    coarse_projections: int = 9   # then mel projections on a grid coarse_hop_factor x coarser (4x cheaper)
    coarse_hop_factor: int = 4
    coarse_power: float = 1.8     # over-relaxation: a coarse projection applies (target / current) ** power
    mel_projections: int = 2      # then rescale the wave's STFT to the input mel on a finer grid:
    mel_hop_factor: int = 2       # every other mel frame (half the cost of the mel's own grid, 1)
    # The CPU counts above are the cheapest measured to take the mel L1 below Griffin-Lim 32's on
    # both held-out splits (models/README.md "Vocoder", session 6): a full-grid step costs ~0.5 s
    # of one core per 88 notes, a coarse one ~0.13 s. Inference on a CUDA device (no autograd)
    # runs these counts instead, which cost little there. Training runs the CPU counts.
    cuda_refine_iters: int = 4
    cuda_coarse_projections: int = 0
    cuda_mel_projections: int = 32
    cuda_mel_hop_factor: int = 1
    # The step counts hold no weights: a checkpoint runs with other counts too (models/README.md).

    def __post_init__(self) -> None:
        if self.n_fft < self.mel.hop_length or self.n_fft % 2:
            raise ValueError(f"n_fft {self.n_fft} must be even and >= the mel hop {self.mel.hop_length}")
        if self.project_magnitude and self.n_fft != self.mel.n_fft:
            raise ValueError("project_magnitude needs the head on the mel's FFT size")
        for used, factor in ((self.coarse_projections or self.cuda_coarse_projections, self.coarse_hop_factor),
                             (self.mel_projections, self.mel_hop_factor),
                             (self.cuda_mel_projections, self.cuda_mel_hop_factor)):
            if used and self.mel.hop_length * factor > self.mel.win_length // 2:
                raise ValueError(f"projections at hop {self.mel.hop_length} x {factor}: more than half the "
                                 f"{self.mel.win_length}-sample window, so the inverse STFT cannot overlap-add")
        if self.peak_interpolation not in ("parabolic", "slope"):
            raise ValueError(f"peak_interpolation must be 'parabolic' or 'slope', got {self.peak_interpolation!r}")
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
        # TINY_MEL's 512-sample window allows coarse hops of up to 2 x its hop
        return cls(mel=mel, dim=32, intermediate_dim=64, n_layers=2, n_fft=mel.n_fft,
                   coarse_projections=2, coarse_hop_factor=2)


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
    ``GriffinLim``. For inference use ``load_vocoder`` (eval mode, no gradients recorded).
    """

    Config = VocoderConfig
    # Without autograd on the CPU, big batches run in chunks of this many clips: tensors stay below
    # glibc's 32 MB mmap threshold (no fresh page faults per allocation) and nearer the cache;
    # 88 notes took 2.7 s of CPU in chunks of 4 against 4.0 s in chunks of 16.
    cpu_chunk = 4

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Conv1d(cfg.mel.n_mels, cfg.dim, cfg.input_kernel, padding=cfg.input_kernel // 2)
        self.norm_in = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size, 1.0 / cfg.n_layers)
            for _ in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.head_channels)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        # Phase advance per hop of a sinusoid at each bin's centre frequency, wrapped to [0, 2pi).
        k = torch.arange(cfg.n_freqs, dtype=torch.float64)
        advance = torch.remainder(2 * math.pi * k * cfg.hop_length / cfg.n_fft, 2 * math.pi)
        self.register_buffer("bin_advance", advance.float(), persistent=False)  # [n_freqs]
        with warnings.catch_warnings():  # a head coarser than the mel grid leaves some low filters empty
            warnings.simplefilter("ignore", UserWarning)
            fb = torchaudio.functional.melscale_fbanks(cfg.n_freqs, cfg.mel.f_min, cfg.mel.f_max, cfg.mel.n_mels,
                                                       cfg.mel.sample_rate, norm=None, mel_scale=cfg.mel.mel_scale)
        # A sinusoid's STFT peak grows with the window's sum: rescale mel magnitudes to this head's window.
        gain = cfg.n_fft / cfg.mel.win_length
        self.register_buffer("mel_pinv", torch.linalg.pinv(fb) * gain, persistent=False)  # [n_mels, n_freqs]
        # Griffin-Lim's filterbank helpers and window; they hold no weights.
        self.mel_ops = GriffinLim(cfg.mel, n_iter=0)
        self.register_buffer("mel_fb", LogMel(cfg.mel).fb.clone(), persistent=False)  # [mel n_freqs, n_mels]
        self._fb_csr: torch.Tensor | None = None
        # The filterbank has at most two non-zeros per linear bin: their bands and weights, for from_mel.
        fb = self.mel_fb
        order = torch.argsort((fb > 0).to(torch.int8), dim=1, descending=True, stable=True)[:, :2]  # [K, 2]
        weight = torch.gather(fb, 1, order)
        if (fb > 0).sum(1).max() > 2:
            raise ValueError("the mel filterbank has more than two bands over a linear bin")
        self.register_buffer("band_index", order.t().contiguous(), persistent=False)  # [2, K]
        self.register_buffer("band_weight", weight.t().contiguous(), persistent=False)  # [2, K]
        # The projections' STFT window, zero-padded to n_fft as torch.stft pads it.
        pad = cfg.mel.n_fft - cfg.mel.win_length
        self.register_buffer("mel_window", F.pad(self.mel_ops.window, (pad // 2, pad - pad // 2)),
                             persistent=False)
        self._envelopes: dict[tuple, torch.Tensor] = {}
        self.apply(_init_weights)
        if cfg.magnitude_prior:  # a zero head starts from the analytic spectrum and learns residuals
            nn.init.zeros_(self.head.weight)

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
            target = self.mel_ops.mel_magnitude(log_mel).transpose(1, 2)  # [B, F, n_mels]
            mag = mag * self.from_mel(target / self.to_mel(mag).clamp_min(1e-12))
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

    def locked_phase(self, log_mag: torch.Tensor) -> torch.Tensor:
        """Phase of a phase vocoder with identity phase locking for ``log_mag [B, F, K]`` (frames first),
        from the magnitude alone (Laroche & Dolson 1999; derivatives as in PGHI, Prusa et al. 2017).

        Within a frame every bin takes the phase of its nearest spectral peak, minus pi per bin (the
        Hann main lobe alternates sign), plus the integrated frequency derivative of the phase,
        -(gamma / (hop n_fft)) d log|S| / dt (the timing term), which places onsets and decays inside
        the frame. From frame to frame each peak continues the phase its bin had a frame earlier plus
        the partial's advance per hop (``peak_shift``): carried through the bins rather than integrated
        per bin, a partial stays coherent when its peak moves to a neighbouring bin (with the true
        magnitude, SC 0.36 -> 0.22, models/README.md). When the peak moves but the partial's own
        frequency stays within ``cfg.peak_move_tolerance`` bins (a flat top flipping between two
        bins), only the lobe term is carried: the timing term of the frame before, re-applied at each
        flip, had walked a low e-piano partial a semitone sharp.
        """
        c = self.cfg
        K = log_mag.shape[-1]
        peak = nearest_peak(log_mag)  # [B, F, K]
        shift = self.peak_shift(log_mag)  # the partial's frequency - k, at every bin k as if it peaked there
        slope_t = F.pad(log_mag[:, 2:] - log_mag[:, :-2], (0, 0, 1, 1))  # 2 d log|S| / dt per hop
        per_bin = slope_t.mul_(-0.5 * GAMMA_HANN * c.n_fft / c.hop_length)  # d phase / d bin, rad
        across = torch.cumsum(per_bin, dim=-1).sub_(per_bin, alpha=0.5)  # trapezoid: integral from bin 0 to k
        k = torch.arange(K, device=log_mag.device, dtype=log_mag.dtype)
        # Each bin's phase relative to its peak's in the same frame: lobe term + timing term.
        offset = (k - peak.to(log_mag.dtype)).mul_(-math.pi).add_(across).sub_(torch.gather(across, -1, peak))
        # The recursion holds each bin's peak's phase: P_t[k] = P_t-1[p] + step_t[p] with p = peak_t[k].
        # P_t-1[p] is the phase of q = peak_t-1[p], so where the peak moved (q != p) the step adds the
        # phase of bin p relative to q a frame earlier (offset_t-1 at p), or below peak_move_max_hz,
        # where the partial's frequency stayed put, its lobe term alone. Computed at every bin p as if
        # it were a peak, then read at the peaks (one gather).
        step = self.bin_advance[:K] + shift * (2 * math.pi * c.hop_length / c.n_fft)  # advance per hop (wrapped)
        step[:, 1:] += offset[:, :-1]
        low = min(K, math.ceil(c.peak_move_max_hz * c.n_fft / c.mel.sample_rate))
        if c.peak_move_tolerance > 0 and low > 0:
            # a walk of a tenth of a bin detunes bin 128 (1 kHz) by 3 cents, a low note by a semitone
            centre = shift.add_(k)  # the partial's frequency in bins, if it peaks here
            before = peak[:, :-1, :low]  # q: the peak of bin p a frame earlier
            lobe = (before - k[:low].to(peak.dtype)).to(log_mag.dtype).mul_(math.pi)  # p's offset to q, lobe term
            earlier = torch.gather(centre[:, :-1], -1, before)  # q's frequency a frame earlier
            stayed = (centre[:, 1:, :low] - earlier).abs_() <= c.peak_move_tolerance
            step[:, 1:, :low] -= offset[:, :-1, :low].sub(lobe).mul_(stayed)  # products: where() is slower
        step = torch.gather(step, -1, peak)
        state = torch.empty_like(log_mag)
        prev = state[:, 0]
        prev.zero_()  # the peaks start at phase 0
        for t in range(1, log_mag.shape[1]):  # the only sequential part: two small ops per frame
            cur = state[:, t]
            torch.gather(prev, -1, peak[:, t], out=cur)
            cur += step[:, t]
            prev = cur
        return state.add_(offset)

    def peak_shift(self, log_mag: torch.Tensor) -> torch.Tensor:
        """Frequency ``[B, F, n_freqs]``, in bins from each bin, of a partial peaking there (frames first).

        For a Gaussian window (Hann ~ Gaussian with gamma = 0.25645 n_fft^2, Prusa et al. 2017) a
        sinusoid's log-magnitude is a parabola in frequency, so the three values around bin k place
        the partial: ``peak_interpolation`` "parabolic" fits that parabola, k0 = k + (a - c) / (2 (a -
        2 b + c)), with its measured curvature wherever it is concave; "slope" assumes the window's
        own curvature, k0 = k + n_fft^2 / (4 pi gamma) (c - a), which reads a low partial sharp when
        the next partial's lobe lifts its upper side (generated-note pitch 0.982 vs 0.994, models/README.md).
        Bins of one partial then share its frequency (phase locking, as in a phase vocoder).
        """
        c = self.cfg
        below = F.pad(log_mag[..., :-2], (1, 1))
        above = F.pad(log_mag[..., 2:], (1, 1))
        slope = above - below
        if c.peak_interpolation == "parabolic":
            # Only peak bins' advances are used (phase locking), and there the parabola is concave
            # (a - 2b + c <= 0); the cap keeps flat tops finite.
            curvature = below.add_(above).sub_(log_mag, alpha=2.0).clamp_(max=-1e-3)
            shift = slope.mul_(-0.5).div_(curvature)
        else:
            shift = slope.mul_(1.0 / (4 * math.pi * GAMMA_HANN))  # in bins (n_fft^2 / gamma = 1 / GAMMA_HANN)
        return shift.clamp_(-2.0, 2.0)  # the Hann main lobe is 4 bins wide

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
        c = self.cfg
        mag, phase = self.spectrum(log_mel)
        mag_ff, phase_ff = mag.transpose(1, 2), phase.transpose(1, 2)  # frames first: contiguous
        stft = dict(n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.n_fft, window=self.window, center=True)
        length = c.hop_length * (log_mel.shape[-1] - 1)
        # torch.complex of the two products is ~3x faster than torch.polar on the CPU.
        spec = torch.complex(mag_ff * torch.cos(phase_ff), mag_ff * torch.sin(phase_ff))
        wave = self.inverse_stft(spec, c.hop_length, length, self.window, "head")
        refine_iters, coarse_projections, mel_projections = self.steps(log_mel.device, recording)
        mel_hop_factor = c.cuda_mel_hop_factor if self._cuda_counts(log_mel.device, recording) else c.mel_hop_factor
        for _ in range(refine_iters):
            # One Griffin-Lim step from a good phase repairs much of the overlap-add inconsistency
            # (mel L1 halved with the true magnitude) for one STFT pair; training sees it too.
            rebuilt = torch.stft(wave, return_complex=True, **stft).transpose(1, 2)  # [B, F, n_freqs]
            gain = mag_ff / (magnitude(rebuilt) + 1e-6)  # |S| -> mag, phase kept
            wave = self.inverse_stft(rebuilt * gain, c.hop_length, length, self.window, "head")
        for _ in range(coarse_projections):
            wave = self.project_to_mel(wave, log_mel, c.coarse_hop_factor, c.coarse_power)
        for _ in range(mel_projections):
            wave = self.project_to_mel(wave, log_mel, mel_hop_factor)
        if squeeze:
            wave, mag = wave[0], mag[0]
        return (wave, mag) if with_magnitude else wave

    def steps(self, device: torch.device, recording: bool) -> tuple[int, int, int]:
        """(refine_iters, coarse_projections, mel_projections) for a forward pass on ``device``."""
        c = self.cfg
        if self._cuda_counts(device, recording):
            return c.cuda_refine_iters, c.cuda_coarse_projections, c.cuda_mel_projections
        return c.refine_iters, c.coarse_projections, c.mel_projections

    @staticmethod
    def _cuda_counts(device: torch.device, recording: bool) -> bool:
        """Inference on a CUDA device runs the ``cuda_*`` steps; training always the CPU's."""
        return device.type == "cuda" and not recording

    def project_to_mel(self, wave: torch.Tensor, log_mel: torch.Tensor, hop_factor: int = 1,
                       power: float = 1.0) -> torch.Tensor:
        """Rescale ``wave [B, T]``'s STFT so that its mel bands match ``log_mel`` (on the mel's own grid).

        Band ratios target / current, spread back to the linear bins through the filterbank and
        applied to the complex STFT, phase kept; bands at the floor are silenced (Griffin-Lim's
        ``project_mel`` step, once). It restores band energies that overlap-add has shifted.
        With ``hop_factor`` k the STFT hops k x the mel hop and matches every k-th mel frame: k
        times cheaper, and a Hann window of 2048 at hop 512 still overlap-adds exactly. ``power``
        > 1 over-relaxes (ratio ** power), which converges in fewer projections.
        """
        m = self.cfg.mel
        hop = m.hop_length * hop_factor
        spec = torch.stft(wave, m.n_fft, hop, m.win_length, self.mel_ops.window, center=True, return_complex=True)
        spec = spec.transpose(1, 2)  # [B, F', K]: torch.stft's own memory order, so contiguous
        current = self.to_mel(magnitude(spec))  # [B, F', M]
        target = log_mel.float()[..., ::hop_factor].transpose(1, 2)  # coarse frame j is centred on mel frame k j
        # Capped at +40 dB: a band the wave left empty must not turn a rounding error into a tone.
        log_ratio = (target - torch.log(current.clamp_min(m.log_floor))).clamp(max=math.log(100.0))
        if power != 1.0:
            log_ratio = log_ratio * power
        ratio = torch.exp(log_ratio) * (target > m.log_min + 1e-3)  # bands at the floor are silenced
        gain = self.from_mel(ratio)  # [B, F', K]
        return self.inverse_stft(spec * gain, hop, wave.shape[-1], self.mel_window, "mel")

    def inverse_stft(self, spec: torch.Tensor, hop: int, length: int, window: torch.Tensor,
                     window_name: str) -> torch.Tensor:
        """``torch.istft(center=True)`` of a frames-first complex spectrum ``[B, F, K]`` -> ``[B, length]``.

        One inverse real FFT, then the overlap-add as n_fft / hop shifted sums and a division by the
        window's overlap-added square, cached per grid: torch.istft rebuilds that envelope on every
        call and took ~2.5x as long on the CPU. ``window`` has n_fft samples.
        """
        n_fft = window.shape[0]
        if n_fft % hop:
            return torch.istft(spec.transpose(1, 2), n_fft, hop, n_fft, window, center=True, length=length)
        frames = torch.fft.irfft(spec, n=n_fft, dim=-1) * window  # [B, F, n_fft]
        B, F_ = frames.shape[:2]
        overlap = n_fft // hop
        parts = frames.view(B, F_, overlap, hop)
        out = frames.new_zeros(B, F_ + overlap - 1, hop)
        for r in range(overlap):
            out[:, r:r + F_] += parts[:, :, r]
        start = n_fft // 2  # center=True padded the wave by half a window
        wave = out.view(B, -1)[:, start:start + length]
        if wave.shape[-1] < length:
            wave = F.pad(wave, (0, length - wave.shape[-1]))
        return wave * self._inverse_envelope(window, window_name, hop, F_, length)

    def _inverse_envelope(self, window: torch.Tensor, window_name: str, hop: int, n_frames: int,
                          length: int) -> torch.Tensor:
        """1 / (sum over frames of the squared window) on the kept samples of an inverse STFT."""
        key = (window_name, window.device, hop, n_frames, length)
        envelope = self._envelopes.get(key)
        if envelope is None:
            n_fft = window.shape[0]
            squares = window.double().square()
            total = torch.zeros((n_frames - 1) * hop + n_fft, dtype=torch.float64, device=window.device)
            for t in range(n_frames):
                total[t * hop:t * hop + n_fft] += squares
            kept = total[n_fft // 2:n_fft // 2 + length]
            if kept.min() < 1e-11:
                raise ValueError(f"window envelope vanishes at hop {hop}: the inverse STFT cannot overlap-add")
            envelope = F.pad(kept.reciprocal(), (0, length - kept.shape[0])).float()
            if len(self._envelopes) > 64:  # one entry per grid and clip length in use
                self._envelopes.clear()
            self._envelopes[key] = envelope
        return envelope

    def to_mel(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Frames-first linear magnitude ``[B, F, n_freqs]`` -> mel magnitude ``[B, F, n_mels]``."""
        B, F_, K = magnitude.shape
        if self._sparse_ok(magnitude):  # the filterbank has at most 2 non-zeros a linear bin
            return torch.mm(magnitude.reshape(B * F_, K), self._sparse_fb(magnitude.device)).reshape(B, F_, -1)
        return torch.matmul(magnitude, self.mel_fb)

    def from_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """Adjoint of ``to_mel``: ``[B, F, n_mels]`` -> ``[B, F, n_freqs]``."""
        B, F_, M = mel.shape
        if self._sparse_ok(mel):  # each linear bin reads at most two bands: two column gathers
            rows = mel.reshape(B * F_, M)
            lin = torch.index_select(rows, 1, self.band_index[0]).mul_(self.band_weight[0])
            lin.addcmul_(torch.index_select(rows, 1, self.band_index[1]), self.band_weight[1])
            return lin.reshape(B, F_, -1)
        return torch.matmul(mel, self.mel_fb.t())

    @staticmethod
    def _sparse_ok(x: torch.Tensor) -> bool:
        # The sparse product (to_mel) and the two gathers (from_mel) are 3-6x faster than the dense
        # product on the CPU; training (autograd) and CUDA take the dense one.
        return x.device.type == "cpu" and not torch.is_grad_enabled()

    def _sparse_fb(self, device: torch.device) -> torch.Tensor:
        """The filterbank ``[n_freqs, n_mels]`` as a sparse CSR matrix (built once; dense @ CSR gives a
        contiguous frames-first result)."""
        if self._fb_csr is None or self._fb_csr.device != device:
            with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used read-only
                warnings.simplefilter("ignore", UserWarning)
                self._fb_csr = self.mel_fb.to(device).to_sparse_csr()
        return self._fb_csr


def magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``spec.abs()`` of a complex tensor; without autograd as sqrt(re^2 + im^2), ~3x faster on the CPU
    (its gradient at zero is infinite, so training keeps abs())."""
    if spec.requires_grad:
        return spec.abs()
    return torch.addcmul(spec.real.square(), spec.imag, spec.imag).sqrt_()


def nearest_peak(log_mag: torch.Tensor) -> torch.Tensor:
    """Index ``[..., K]`` (int64) of the nearest local maximum along the last axis, ties to the lower one."""
    K = log_mag.shape[-1]
    is_peak = torch.empty(log_mag.shape, dtype=torch.bool, device=log_mag.device)
    mid = log_mag[..., 1:-1]
    torch.logical_and(mid >= log_mag[..., :-2], mid > log_mag[..., 2:], out=is_peak[..., 1:-1])
    is_peak[..., 0] = log_mag[..., 0] > log_mag[..., 1]
    is_peak[..., -1] = log_mag[..., -1] >= log_mag[..., -2]
    k = torch.arange(K, device=log_mag.device, dtype=torch.int32)
    # Products rather than torch.where, which is ~4x slower on the CPU: a peak keeps its index k,
    # any other bin gets -4K (for the running max) or +4K (for the running min).
    lower = torch.cummax(torch.mul(is_peak, k + 4 * K).sub_(4 * K), dim=-1).values  # nearest peak at or below
    from_top = torch.mul(is_peak.flip(-1), k.flip(0) - 4 * K).add_(4 * K)
    upper = torch.cummin(from_top, dim=-1).values.flip(-1)  # nearest peak at or above
    # Every row has a peak (its last maximum), so one of the two is a real bin; upper only when it
    # is strictly nearer (then it is real), else lower (real unless upper is nearer).
    nearer_above = (lower + upper) < 2 * k
    return torch.maximum(lower, upper.mul_(nearer_above)).long()


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def load_vocoder(path: str | Path, device: str | torch.device = "cpu",
                 steps: tuple[int, ...] | None = None) -> NeuralVocoder:
    """A trained vocoder ready to invert mels: eval mode, frozen (no autograd graph is recorded).
    ``steps`` (refine_iters, mel_projections) or (refine_iters, coarse_projections, mel_projections)
    replaces the checkpoint's counts on every device."""
    from models import checkpoint

    net, _, _ = checkpoint.load(path, NeuralVocoder, device)
    if steps is not None:
        net.cfg = with_steps(net.cfg, *steps)
    return net.eval().requires_grad_(False)


def with_steps(cfg: VocoderConfig, refine_iters: int, *projections: int) -> VocoderConfig:
    """``cfg`` with these weightless step counts on the CPU and on CUDA alike (the CPU's grid for the last
    projections too, so a GPU reproduces the CPU path):
    ``with_steps(cfg, r, p)`` (no coarse projections) or ``with_steps(cfg, r, c, p)``."""
    if len(projections) not in (1, 2):
        raise ValueError("steps are refine/mel_projections or refine/coarse/mel_projections")
    coarse, fine = (0, *projections) if len(projections) == 1 else projections
    return dataclasses.replace(cfg, refine_iters=refine_iters, coarse_projections=coarse, mel_projections=fine,
                               cuda_refine_iters=refine_iters, cuda_coarse_projections=coarse,
                               cuda_mel_projections=fine, cuda_mel_hop_factor=cfg.mel_hop_factor)


# ---------------------------------------------------------------- spectral distances
DEFAULT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256), (2048, 512))


def stft_magnitude(wave: torch.Tensor, n_fft: int, hop_length: int, floor: float = 1e-5) -> torch.Tensor:
    """|STFT| ``[B, n_fft // 2 + 1, frames]`` in float32 with a Hann window; smooth at zero (for gradients)."""
    window = torch.hann_window(n_fft, device=wave.device)
    spec = torch.stft(wave.float(), n_fft, hop_length, n_fft, window, center=True, return_complex=True)
    return torch.sqrt(spec.real.square() + spec.imag.square() + floor * floor)


def multi_resolution_stft(reference: torch.Tensor, estimate: torch.Tensor,
                          resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS,
                          floor: float = 1e-5, pooled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral convergence and log-magnitude L1, averaged over resolutions, of waves ``[B, T]``.

    SC = ‖|S| − |Ŝ|‖_F / ‖|S|‖_F; LM = mean |log |S| − log |Ŝ||. Per clip (``[B]`` each) by default;
    with ``pooled`` both are scalars over the whole batch, which keeps SC well defined when some
    clips are near-silent (training crops of decayed tails). The MR-STFT distance reported in
    evaluations is SC + LM (Parallel WaveGAN's loss).
    """
    dims = tuple(range(reference.dim() + 1)) if pooled else tuple(range(1, reference.dim() + 1))
    sc = lm = 0.0
    for n_fft, hop in resolutions:
        ref = stft_magnitude(reference, n_fft, hop, floor)
        est = stft_magnitude(estimate, n_fft, hop, floor)
        sc = sc + torch.linalg.vector_norm(ref - est, dim=dims) / torch.linalg.vector_norm(ref, dim=dims).clamp_min(1e-8)
        lm = lm + (ref.log() - est.log()).abs().mean(dim=dims)
    return sc / len(resolutions), lm / len(resolutions)
