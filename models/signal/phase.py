"""Phase from a magnitude alone: the phase of a phase vocoder with identity phase locking.

The neural vocoder predicts only a log-magnitude; ``LockedPhase`` turns it into a phase that
rotates at each partial's own frequency (Laroche & Dolson 1999; the time and frequency derivatives
of the phase as in PGHI, Prusa et al. 2017). Spectra are frames first: ``[B, F, K]``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# A Hann window of n samples behaves like a Gaussian exp(-pi t^2 / gamma), gamma = GAMMA_HANN n^2 (PGHI).
GAMMA_HANN = 0.25645
PEAK_INTERPOLATIONS = ("parabolic", "slope")


class LockedPhase(nn.Module):
    """``log_mag [B, F, K]`` (frames first) -> phase ``[B, F, K]`` on an STFT grid of ``n_fft`` / ``hop_length``.

    Within a frame every bin takes the phase of its nearest spectral peak, minus pi per bin (the
    Hann main lobe alternates sign), plus the integrated frequency derivative of the phase,
    -(gamma / (hop n_fft)) d log|S| / dt (the timing term), which places onsets and decays inside
    the frame. From frame to frame each peak continues the phase its bin had a frame earlier plus
    the partial's advance per hop (``peak_shift``): carried through the bins rather than integrated
    per bin, a partial stays coherent when its peak moves to a neighbouring bin (with the true
    magnitude, SC 0.36 -> 0.22, models/README.md "Vocoder"). When the peak moves but the partial's
    own frequency stays within ``move_tolerance`` bins (a flat top flipping between two bins), only
    the lobe term is carried: re-applying the earlier frame's timing term at every flip walks the
    phase, and a low e-piano partial came out a semitone sharp.
    """

    def __init__(self, n_fft: int, hop_length: int, sample_rate: int, interpolation: str = "parabolic",
                 move_tolerance: float = 0.15, move_max_hz: float = 1000.0) -> None:
        super().__init__()
        if interpolation not in PEAK_INTERPOLATIONS:
            raise ValueError(f"peak interpolation must be one of {PEAK_INTERPOLATIONS}, got {interpolation!r}")
        self.n_fft, self.hop_length, self.sample_rate = n_fft, hop_length, sample_rate
        self.interpolation = interpolation
        self.move_tolerance, self.move_max_hz = move_tolerance, move_max_hz
        # Phase advance per hop of a sinusoid at each bin's centre frequency, wrapped to [0, 2pi).
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        advance = torch.remainder(2 * math.pi * k * hop_length / n_fft, 2 * math.pi)
        self.register_buffer("bin_advance", advance.float(), persistent=False)  # [n_freqs]

    def forward(self, log_mag: torch.Tensor) -> torch.Tensor:
        K = log_mag.shape[-1]
        peak = nearest_peak(log_mag)  # [B, F, K]
        shift = self.peak_shift(log_mag)  # the partial's frequency - k, at every bin k as if it peaked there
        slope_t = F.pad(log_mag[:, 2:] - log_mag[:, :-2], (0, 0, 1, 1))  # 2 d log|S| / dt per hop
        per_bin = slope_t.mul_(-0.5 * GAMMA_HANN * self.n_fft / self.hop_length)  # d phase / d bin, rad
        across = torch.cumsum(per_bin, dim=-1).sub_(per_bin, alpha=0.5)  # trapezoid: integral from bin 0 to k
        k = torch.arange(K, device=log_mag.device, dtype=log_mag.dtype)
        # Each bin's phase relative to its peak's in the same frame: lobe term + timing term.
        offset = (k - peak.to(log_mag.dtype)).mul_(-math.pi).add_(across).sub_(torch.gather(across, -1, peak))
        # The recursion holds each bin's peak's phase: P_t[k] = P_t-1[p] + step_t[p] with p = peak_t[k].
        # P_t-1[p] is the phase of q = peak_t-1[p], so where the peak moved (q != p) the step adds the
        # phase of bin p relative to q a frame earlier (offset_t-1 at p), or below move_max_hz,
        # where the partial's frequency stayed put, its lobe term alone. Computed at every bin p as if
        # it were a peak, then read at the peaks (one gather).
        step = self.bin_advance[:K] + shift * (2 * math.pi * self.hop_length / self.n_fft)  # advance per hop (wrapped)
        step[:, 1:] += offset[:, :-1]
        low = min(K, math.ceil(self.move_max_hz * self.n_fft / self.sample_rate))
        if self.move_tolerance > 0 and low > 0:
            # a walk of a tenth of a bin detunes bin 128 (1 kHz) by 3 cents, a low note by a semitone
            centre = shift.add_(k)  # the partial's frequency in bins, if it peaks here
            before = peak[:, :-1, :low]  # q: the peak of bin p a frame earlier
            lobe = (before - k[:low].to(peak.dtype)).to(log_mag.dtype).mul_(math.pi)  # p's offset to q, lobe term
            earlier = torch.gather(centre[:, :-1], -1, before)  # q's frequency a frame earlier
            stayed = (centre[:, 1:, :low] - earlier).abs_() <= self.move_tolerance
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
        the partial: ``interpolation`` "parabolic" fits that parabola, k0 = k + (a - c) / (2 (a -
        2 b + c)), with its measured curvature wherever it is concave; "slope" assumes the window's
        own curvature, k0 = k + n_fft^2 / (4 pi gamma) (c - a), which reads a low partial sharp when
        the next partial's lobe lifts its upper side (generated-note pitch 0.982 vs 0.994, models/README.md).
        Bins of one partial then share its frequency (phase locking, as in a phase vocoder).
        """
        below = F.pad(log_mag[..., :-2], (1, 1))
        above = F.pad(log_mag[..., 2:], (1, 1))
        slope = above - below
        if self.interpolation == "parabolic":
            # Only peak bins' advances are used (phase locking), and there the parabola is concave
            # (a - 2b + c <= 0); the cap keeps flat tops finite.
            curvature = below.add_(above).sub_(log_mag, alpha=2.0).clamp_(max=-1e-3)
            shift = slope.mul_(-0.5).div_(curvature)
        else:
            shift = slope.mul_(1.0 / (4 * math.pi * GAMMA_HANN))  # in bins (n_fft^2 / gamma = 1 / GAMMA_HANN)
        return shift.clamp_(-2.0, 2.0)  # the Hann main lobe is 4 bins wide


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
