"""Fixed per-key pitch structure on the mel axis, given to G (every synthesis layer) and D (input).

The probe found that pitch entering G only as an embedding was not learned (2 % exact after 215
kimg), while a harmonic template added to the feature maps reached 72-82 % within 40 kimg, failing
for keys 21-42 where the template of a coarse grid is nearly flat. So the map has three channels:
  0: harmonic template — log-mel of a harmonic series (amplitudes k^-rolloff) through this grid's
     own STFT window and mel filterbank, standardised per key (equal contrast for every key);
  1: relative position — log2(f_bin / f0) of each mel bin's centre, clipped: distinct for every key
     even where the harmonics are unresolved, and what a timbre needs to place partials;
  2: absolute position — the mel bin's index scaled to [-1, 1], the same for every key (formants
     and noise bands sit at fixed frequencies; convolutions alone only know it near the edges).
"""
from __future__ import annotations

import math

import torch
import torchaudio
from torch import nn

from models.signal.mel import MelConfig
from models.units import HIGHEST_KEY, LOWEST_KEY, N_KEYS, midi_to_hz

N_PITCH_CHANNELS = 3


def _mel_filterbank(mel: MelConfig) -> torch.Tensor:
    return torchaudio.functional.melscale_fbanks(
        mel.n_freqs, mel.f_min, mel.f_max, mel.n_mels, mel.sample_rate, norm=None,
        mel_scale=mel.mel_scale).double()  # [n_freqs, n_mels]


def mel_bin_centres_hz(mel: MelConfig) -> torch.Tensor:
    """Centre frequency of every mel band (the peak of its triangle) ``[n_mels]``."""
    m_min = torchaudio.functional.functional._hz_to_mel(mel.f_min, mel.mel_scale)
    m_max = torchaudio.functional.functional._hz_to_mel(mel.f_max, mel.mel_scale)
    pts = torch.linspace(m_min, m_max, mel.n_mels + 2, dtype=torch.float64)
    return torchaudio.functional.functional._mel_to_hz(pts, mel.mel_scale)[1:-1]


def harmonic_template(mel: MelConfig, rolloff: float = 1.0, floor_db: float = 60.0) -> torch.Tensor:
    """Standardised log-mel of each key's harmonic series ``[88, n_mels]`` (float32).

    Partials are summed in power (no phase interference); each is the window's spectrum shifted to
    ``k * f0``, so the template blurs exactly as the grid blurs real notes.
    """
    fb = _mel_filterbank(mel)
    win = torch.hann_window(mel.win_length, dtype=torch.float64)
    pad = (mel.n_fft - mel.win_length) // 2
    n = torch.arange(mel.win_length, dtype=torch.float64)
    nyquist = min(mel.f_max, mel.sample_rate / 2)
    rows = []
    for midi in range(LOWEST_KEY, HIGHEST_KEY + 1):
        f0 = float(midi_to_hz(torch.tensor(midi, dtype=torch.float64)))
        k = torch.arange(1, int(nyquist / f0) + 1, dtype=torch.float64)
        frames = torch.cos(2 * math.pi * k[:, None] * f0 / mel.sample_rate * n) * win  # [K, win]
        frames = nn.functional.pad(frames, (pad, mel.n_fft - mel.win_length - pad))
        power = torch.fft.rfft(frames, dim=-1).abs().square()  # [K, n_freqs]
        mag = (power * k[:, None].pow(-2 * rolloff)).sum(0).sqrt()  # [n_freqs]
        band = mag @ fb  # [n_mels]
        band = torch.log(band.clamp_min(band.max() * 10 ** (-floor_db / 20)))
        rows.append((band - band.mean()) / band.std().clamp_min(1e-6))
    return torch.stack(rows).float()


def relative_position(mel: MelConfig, low: float = -3.0, high: float = 8.0) -> torch.Tensor:
    """``log2(f_bin / f0)`` clipped to ``[low, high]`` and scaled to about [-1, 1]: ``[88, n_mels]``."""
    centres = mel_bin_centres_hz(mel).clamp_min(1.0)
    f0 = midi_to_hz(torch.arange(LOWEST_KEY, HIGHEST_KEY + 1, dtype=torch.float64))
    rel = torch.log2(centres[None, :] / f0[:, None]).clamp(low, high)
    return ((rel - 0.5 * (low + high)) / (0.5 * (high - low))).float()


def log_f0_fourier(midi: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """Fourier features of the key position in [0, 1] (log f0): ``[B, 2 * n_freqs]``."""
    pos = (midi.float() - LOWEST_KEY) / (HIGHEST_KEY - LOWEST_KEY)
    freqs = math.pi * 2.0 ** torch.arange(n_freqs, device=midi.device, dtype=torch.float32)
    angles = pos[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class PitchMap(nn.Module):
    """MIDI keys ``[B]`` (long, 21..108) -> fixed pitch map ``[B, 3, n_mels]`` for this grid.

    The map is a persistent buffer, so weights always carry the exact map they were trained with.
    """

    def __init__(self, mel: MelConfig, rolloff: float = 1.0) -> None:
        super().__init__()
        absolute = torch.linspace(-1.0, 1.0, mel.n_mels).expand(N_KEYS, -1)
        maps = torch.stack([harmonic_template(mel, rolloff), relative_position(mel), absolute], dim=1)
        self.register_buffer("maps", maps)  # [88, 3, n_mels]

    def forward(self, midi: torch.Tensor) -> torch.Tensor:
        return self.maps[midi.long() - LOWEST_KEY]
