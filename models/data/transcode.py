"""Font samples made smaller for the GPU carry: resampled to at most 22.05 kHz, stored as Ogg Vorbis (SF3).

We render at 16 kHz, so content above 8 kHz never reaches the training set; a sample at 44.1 kHz
carries twice the points we can use, unless it is played far below its root (``rate_for``). Resampling keeps every loop whole: the ratio is nudged so
that the loop length becomes an integer number of new points (a loop of 101 points at 44.1 kHz
becomes 51 points at 22,268 Hz, not 50.5 rounded, which would detune a single-cycle loop by up to
17 cents); the stored rate says what the ratio was, so the key still sounds at its pitch.
SF3 stores each sample as its own Ogg Vorbis stream, loop points relative to the sample's start
(the layout of MuseScore's fonts; tinysoundfont and fluidsynth read it).
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class TranscodeConfig:
    """How a slimmed font's samples are re-encoded (``None`` in ``slim_font`` = copied bit for bit)."""

    max_rate: int = 22050       # samples above this rate are resampled down to it ...
    render_rate: int = 16000    # ... unless played so far below their root that a render at this rate
                                # would hear what lies above max_rate / 2 (see rate_for)
    ogg: bool = True            # store samples as Ogg Vorbis (an SF3 font)
    ogg_quality: float = 0.4    # Vorbis VBR quality in [0, 1] (0.4 ~ 50 kbit/s mono at 22 kHz)
    # Samples played this many semitones below their root stay PCM (their top band, coarsely coded
    # by Vorbis, comes down into the render). 128 = never: at 12, a fifth of FluidR3's samples
    # stay PCM and the font doubles (14.6 -> 30 MB); check-fonts --slimmed drops what suffers.
    pcm_below_semitones: int = 128

    def rate_for(self, rate: int, semitones_down: int) -> int:
        """Rate to keep for a sample at ``rate`` Hz played at most ``semitones_down`` below its root.

        Transposed down by s semitones, sample content at f sounds at f 2^(-s/12): everything
        below render_rate / 2 x 2^(s/12) can reach the render (a glockenspiel sample stretched
        over four octaves brings its 11-22 kHz band down to 0.7-1.4 kHz).
        """
        needed = self.render_rate * 2.0 ** (max(semitones_down, 0) / 12.0)
        return int(min(rate, max(self.max_rate, math.ceil(needed))))


@dataclass(frozen=True)
class SampleData:
    """One mono sample: int16 points, their rate, the loop (start, end) in points from its start."""

    pcm: np.ndarray
    rate: int
    loop: tuple[int, int]


def _valid_loop(loop: tuple[int, int], n: int) -> bool:
    return 0 <= loop[0] < loop[1] <= n


MAX_RATIO_TERM = 4096  # largest up or down factor of a resampling ratio (its kernel holds ~up x down values)


def _reduced(up: int, down: int) -> tuple[int, int]:
    g = math.gcd(up, down)
    return up // g, down // g


def resample(sample: SampleData, max_rate: int) -> SampleData:
    """``sample`` at a rate <= ~``max_rate``, its loop length an exact integer number of points."""
    import torch
    import torchaudio

    if sample.rate <= max_rate or len(sample.pcm) < 2:
        return sample
    ratio = max_rate / sample.rate
    loop_len = sample.loop[1] - sample.loop[0]
    up, down = _reduced(max_rate, sample.rate)
    if max(up, down) > MAX_RATIO_TERM:  # an odd rate: the nearest small ratio (the rate written is exact)
        near = Fraction(max_rate, sample.rate).limit_denominator(MAX_RATIO_TERM)
        up, down = near.numerator, near.denominator
    if _valid_loop(sample.loop, len(sample.pcm)):
        # An exact ratio keeps the loop a whole number of points, unless its terms are so large that the
        # resampling kernel ([up, ~down] values) would not fit in memory; then the loop is longer than
        # ~2,000 points and rounding it to whole points moves its pitch by under half a cent.
        exact = _reduced(max(1, round(loop_len * ratio)), loop_len)
        if max(exact) <= MAX_RATIO_TERM:
            up, down = exact
    exact = up / down
    # Band-limited rational resampling (windowed sinc), by up / down exactly.
    y = torchaudio.functional.resample(torch.from_numpy(sample.pcm.astype(np.float64)), down, up).numpy()
    pcm = np.clip(np.round(y), -32768, 32767).astype(np.int16)
    start = min(round(sample.loop[0] * exact), len(pcm))
    if _valid_loop(sample.loop, len(sample.pcm)):
        loop = (start, min(start + round(loop_len * exact), len(pcm)))
    else:
        loop = (start, min(round(sample.loop[1] * exact), len(pcm)))
    return SampleData(pcm, int(round(sample.rate * exact)), loop)


def encode_ogg(pcm: np.ndarray, rate: int, quality: float) -> bytes:
    """int16 ``[n]`` -> one Ogg Vorbis stream (bytes)."""
    import soundfile

    buf = io.BytesIO()
    with soundfile.SoundFile(buf, "w", samplerate=rate, channels=1, format="OGG", subtype="VORBIS",
                             compression_level=float(np.clip(1.0 - quality, 0.0, 1.0))) as f:
        f.write(pcm.astype(np.float32) / 32768.0)
    return buf.getvalue()


def decode_ogg(data: bytes) -> tuple[np.ndarray, int]:
    """One Ogg Vorbis stream -> (int16 ``[n]``, rate)."""
    import soundfile

    wave, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.clip(np.round(wave[:, 0] * 32768.0), -32768, 32767).astype(np.int16), int(rate)
