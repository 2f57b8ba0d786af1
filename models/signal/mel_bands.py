"""The mel filterbank on frames-first spectra ``[B, F, K]``, and projecting a wave onto a log-mel.

The neural vocoder works frames first (every per-frame step then reads contiguous memory). It uses
this filterbank twice: to rescale its predicted magnitude's bands to the input mel, and, after the
inverse STFT, to rescale the wave's own STFT bands to the input mel (``MelBands.project``,
Griffin-Lim's ``project_mel`` step, once), which restores band energies that overlap-add shifted.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from models.signal.mel import GriffinLim, LogMel, MelConfig
from models.signal.stft import OverlapAdd, magnitude


class MelBands(nn.Module):
    """``to_mel`` / ``from_mel`` between linear bins and mel bands, and ``project`` (no weights)."""

    def __init__(self, mel: MelConfig) -> None:
        super().__init__()
        self.cfg = mel
        # Griffin-Lim's mel magnitude and window (no iterations are run).
        self.mel_ops = GriffinLim(mel, n_iter=0)
        self.register_buffer("mel_fb", LogMel(mel).fb.clone(), persistent=False)  # [mel n_freqs, n_mels]
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
        pad = mel.n_fft - mel.win_length
        self.register_buffer("window", F.pad(self.mel_ops.window, (pad // 2, pad - pad // 2)), persistent=False)
        self.inverse_stft = OverlapAdd()

    def mel_magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel -> linear-amplitude mel ``[B, M, F]``; floor-level bins become exactly 0."""
        return self.mel_ops.mel_magnitude(log_mel)

    def project(self, wave: torch.Tensor, log_mel: torch.Tensor, hop_factor: int = 1,
                power: float = 1.0) -> torch.Tensor:
        """Rescale ``wave [B, T]``'s STFT so that its mel bands match ``log_mel`` (on the mel's own grid).

        Band ratios target / current, spread back to the linear bins through the filterbank and
        applied to the complex STFT, phase kept; bands at the floor are silenced (Griffin-Lim's
        ``project_mel`` step, once). It restores band energies that overlap-add has shifted.
        With ``hop_factor`` k the STFT hops k x the mel hop and matches every k-th mel frame: k
        times cheaper, and a Hann window of 2048 at hop 512 still overlap-adds exactly. ``power``
        > 1 over-relaxes (ratio ** power), which converges in fewer projections.
        """
        m = self.cfg
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
        return self.inverse_stft(spec * gain, hop, wave.shape[-1], self.window, "mel")

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
