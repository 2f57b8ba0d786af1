"""Audio as it travels through the product: samples with their rate attached.

Also the first of the two named resampling points: ``load_audio`` brings any file to the model rate.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from models.errors import AudioFileError, CorruptAudioError, EmptyAudioError, SilentAudioError, TooShortAudioError


@dataclass(frozen=True)
class Audio:
    """float32 samples in [-1, 1], mono ``[T]`` or multichannel ``[C, T]``, with their rate in Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.float32:
            raise TypeError(f"Audio samples must be float32, got {self.samples.dtype}")
        if self.samples.ndim not in (1, 2):
            raise ValueError(f"Audio samples must be [T] or [C, T], got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[-1])

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def is_mono(self) -> bool:
        return self.samples.ndim == 1

    def require_rate(self, sample_rate: int) -> None:
        """Raise if this audio is not at ``sample_rate`` (resampling happens only at named points)."""
        if self.sample_rate != sample_rate:
            raise ValueError(f"expected audio at {sample_rate} Hz, got {self.sample_rate} Hz")


@dataclass(frozen=True)
class LoadConfig:
    """How ``load_audio`` turns a file into a one-shot (levels in dB relative to the file's peak)."""

    trim_db: float = -40.0  # leading samples quieter than this are silence
    pre_roll_s: float = 0.002  # kept before the onset so the attack's first cycle survives the trim
    sound_db: float = -40.0  # the sound lasts from its first to its last sample above this
    min_sound_s: float = 0.05  # less than this above ``sound_db`` is a click, not a note
    silence_dbfs: float = -60.0  # a peak below this (absolute) is silence or hiss, not a usable sound
    peak: float = 1.0  # the returned samples peak at this level
    fade_out_s: float = 0.01  # fade at the cut when a long sound is capped
    max_read_s: float = 120.0  # never decode more than this much of a file
    anti_phase_ratio: float = 0.5  # mix RMS below this x the channels' mean RMS: channels cancel


def load_audio(path: str | os.PathLike, sample_rate: int, max_duration_s: float = 4.0,
               cfg: LoadConfig = LoadConfig()) -> Audio:
    """Read any file soundfile decodes into a mono one-shot at ``sample_rate``.

    Downmixes to mono, trims leading silence, caps the length at ``max_duration_s`` after the
    onset (with a short fade), resamples and peak-normalises to ``cfg.peak``. Raises
    ``AudioFileError`` (missing file) or its subclasses ``EmptyAudioError``, ``CorruptAudioError``,
    ``SilentAudioError``, ``TooShortAudioError`` with a message fit for the user.
    """
    path = Path(path)
    channels, file_rate = _read_file(path, cfg)
    mono = _downmix(channels, cfg.anti_phase_ratio)
    peak = float(np.abs(mono).max())
    if peak < 10.0 ** (cfg.silence_dbfs / 20):
        raise SilentAudioError(f"{path.name} is silent (peak {_dbfs(peak):.0f} dBFS)")
    onset, end = _sound_span(mono, peak, file_rate, cfg)
    if (end - onset) < cfg.min_sound_s * file_rate:
        raise TooShortAudioError(f"{path.name} holds only {1000 * (end - onset) / file_rate:.0f} ms of sound; "
                                 f"a note needs at least {1000 * cfg.min_sound_s:.0f} ms")
    start = max(0, onset - int(cfg.pre_roll_s * file_rate))
    keep = int(math.ceil(max_duration_s * file_rate))
    capped = mono.size - start > keep
    # A little extra past the cut so the resampler's filter sees real signal at the new end.
    clip = mono[start: start + keep + (int(0.01 * file_rate) if capped else 0)]
    out = resample(Audio(clip, file_rate), sample_rate).samples
    if capped:
        out = out[: int(round(max_duration_s * sample_rate))].copy()
        fade = min(out.size, int(cfg.fade_out_s * sample_rate))
        out[out.size - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return Audio(peak_normalise(out, cfg.peak), sample_rate)


def _dbfs(level: float) -> float:
    return 20.0 * math.log10(max(level, 1e-12))


def _read_file(path: Path, cfg: LoadConfig) -> tuple[np.ndarray, int]:
    """Decode ``path`` into float32 ``[C, T]`` and its rate, or raise the matching error."""
    if not path.exists():
        raise AudioFileError(f"no such file: {path}")
    if not path.is_file():
        raise AudioFileError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path.name} is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise CorruptAudioError(f"{path.name} is not an audio file this program can read ({_reason(exc)})") from exc
    if _header_claims_more(info.extra_info):
        raise CorruptAudioError(f"{path.name} is truncated: its header promises more audio than the file holds")
    if info.frames == 0 or info.channels == 0:
        raise EmptyAudioError(f"{path.name} holds no audio samples")
    frames = min(info.frames, int(cfg.max_read_s * info.samplerate))
    try:
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise CorruptAudioError(f"{path.name} could not be decoded ({_reason(exc)})") from exc
    if data.shape[0] < frames:
        raise CorruptAudioError(f"{path.name} is truncated or damaged: decoded {data.shape[0]} of {frames} frames")
    if data.shape[0] == 0:
        raise EmptyAudioError(f"{path.name} holds no audio samples")
    if not np.isfinite(data).all():
        raise CorruptAudioError(f"{path.name} holds invalid samples (NaN or infinity)")
    return np.ascontiguousarray(data.T), int(rate)  # [C, T]


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text


def _header_claims_more(extra_info: str) -> bool:
    """libsndfile notes ``data : N (should be M)`` when a chunk runs past the end of the file.

    Streaming writers leave a placeholder size (0 or 0xFFFFFFFF) that is not a truncation.
    """
    for match in re.finditer(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", extra_info, re.M):
        claimed, actual = int(match.group(1)), int(match.group(2))
        if 0 < claimed < 0xFFFFFF00 and actual < claimed:
            return True
    return False


def _downmix(channels: np.ndarray, anti_phase_ratio: float) -> np.ndarray:
    """``[C, T]`` -> ``[T]``: the channel mean, or the loudest channel if the channels cancel.

    Opposite-phase channels (a mis-wired stereo pair, M/S material) sum to near silence, though the
    user hears a sound; then the loudest single channel is the faithful mono version.
    """
    if channels.shape[0] == 1:
        return channels[0]
    mix = channels.mean(axis=0)
    rms = np.sqrt(np.mean(channels.astype(np.float64) ** 2, axis=1))  # [C]
    if np.sqrt(np.mean(mix.astype(np.float64) ** 2)) < anti_phase_ratio * rms.mean():
        return channels[int(np.argmax(rms))]
    return mix


def _sound_span(mono: np.ndarray, peak: float, rate: int, cfg: LoadConfig) -> tuple[int, int]:
    """(onset, end) sample indices of the sound: first sample above ``trim_db``, last above ``sound_db``."""
    loud = np.flatnonzero(np.abs(mono) >= peak * 10.0 ** (cfg.trim_db / 20))
    sounding = np.flatnonzero(np.abs(mono) >= peak * 10.0 ** (cfg.sound_db / 20))
    return int(loud[0]), int(sounding[-1]) + 1


def peak_normalise(samples: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """A float32 copy scaled so that max |sample| == ``peak`` (all-zero input stays zero)."""
    top = float(np.abs(samples).max()) if samples.size else 0.0
    scale = peak / top if top > 0 else 0.0
    return (samples.astype(np.float64) * scale).astype(np.float32)


# Beyond this many output phases per input period, torchaudio's polyphase kernel gets huge
# (8001 Hz -> 16 kHz would need 16,000 phases); such odd rates use one FFT instead.
_MAX_PHASES = 2000


def frame_rms(wave: np.ndarray, hop: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames of ``hop`` samples ``[T // hop]``."""
    n = len(wave) // hop
    frames = wave[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt(np.mean(frames ** 2, axis=1))


def active_frames(wave: np.ndarray, hop: int, floor_db: float = -40.0) -> np.ndarray:
    """Bool ``[T // hop]``: frames whose RMS is within ``floor_db`` of the loudest."""
    rms = frame_rms(wave, hop)
    if rms.size == 0 or rms.max() <= 0:
        return np.zeros(rms.size, bool)
    return rms >= rms.max() * 10.0 ** (floor_db / 20.0)


def resample(audio: Audio, sample_rate: int) -> Audio:
    """``audio`` at ``sample_rate`` (band-limited: Kaiser-windowed sinc, ~0.95 of the lower Nyquist)."""
    if audio.sample_rate == sample_rate:
        return audio
    src, dst = audio.sample_rate, sample_rate
    g = math.gcd(src, dst)
    x = torch.from_numpy(np.ascontiguousarray(audio.samples, dtype=np.float32))
    if max(src, dst) // g <= _MAX_PHASES:
        y = torchaudio.functional.resample(x, src, dst, lowpass_filter_width=32, rolloff=0.95,
                                           resampling_method="sinc_interp_kaiser", beta=10.0)
    else:
        y = _fft_resample(x, src, dst)
    return Audio(y.numpy().astype(np.float32), dst)


def _fft_resample(x: torch.Tensor, src: int, dst: int) -> torch.Tensor:
    """Resample ``[..., T]`` by truncating/zero-padding its spectrum (zero-padded to avoid wrap-around)."""
    n = x.shape[-1]
    pad = min(n, src // 10)  # 100 ms of zeros keeps the end from ringing into the start
    n_out = int(round(n * dst / src))
    n_pad_out = int(round((n + pad) * dst / src))
    spec = torch.fft.rfft(torch.nn.functional.pad(x.double(), (0, pad)))
    keep = min(spec.shape[-1], n_pad_out // 2 + 1)
    cutoff = int(0.95 * keep)  # a gentle edge instead of a brick wall
    taper = torch.ones(keep, dtype=torch.float64)
    taper[cutoff:] = 0.5 + 0.5 * torch.cos(torch.linspace(0, math.pi, keep - cutoff, dtype=torch.float64))
    out = torch.fft.irfft(spec[..., :keep] * taper, n_pad_out) * (n_pad_out / (n + pad))
    return out[..., :n_out].float()


def save_wav(path: str | os.PathLike, audio: Audio, subtype: str = "PCM_24") -> Path:
    """Write ``audio`` as WAV (``PCM_16``, ``PCM_24`` or ``FLOAT``) via a temp file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    data = audio.samples.T if audio.samples.ndim == 2 else audio.samples  # soundfile wants [T, C]
    sf.write(str(tmp), data, audio.sample_rate, subtype=subtype, format="WAV")
    os.replace(tmp, path)
    return path
