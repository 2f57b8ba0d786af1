"""Recording-condition augmentation: what a one-shot dropped by a user has been through.

In training f and H meet clean rendered notes; at inference they meet a user's recording: a room,
a microphone's colour, a noise floor, a compressor, some silence before the onset. ``augment``
gives each wave of a batch a random subset of these, deterministically from a seed, and keeps
each wave's peak (the set is peak-normalised). Pure torch: it runs where the batch is (CPU or
CUDA); every random draw comes from one CPU generator, so a seed gives the same batch anywhere.

    from models.data.augment import AugmentConfig, augment
    wave = augment(wave, AugmentConfig(), seed=step)      # [B, T] at cfg.sample_rate, before LogMel
    log_mel = augment_log_mel(log_mel, mel_cfg, gen=gen)  # the same chain on stored log-mels

The chain, in recording order: leading silence, room (synthetic impulse response: early
reflections and a two-band exponentially decaying noise tail), EQ tilt, noise floor, compressor.

The training set stores log-mels, not waves, so training uses ``augment_log_mel``: the same chain
with the same draws, acted out on mel power frames (hop-sized steps). The room becomes a per-band
exponentially decaying power tail, the noise an exponentially distributed power per bin (Rayleigh
magnitudes), the compressor a gain per frame. Phases are not modelled: comb filtering and the
interference of early reflections are lost, which is why the wave version stays the reference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges (uniform) of each stage; levels in dB relative to the wave's peak."""

    sample_rate: int = 16000
    p_delay: float = 0.5
    delay_s: tuple[float, float] = (0.0, 0.08)              # silence before the onset
    p_reverb: float = 0.5
    rt60_s: tuple[float, float] = (0.15, 1.2)               # time for the tail to fall 60 dB (low band)
    hf_decay: tuple[float, float] = (0.3, 0.8)              # high band (> 2 kHz) decays this much faster
    wet_db: tuple[float, float] = (-18.0, -2.0)             # reverb energy relative to the direct sound
    predelay_s: tuple[float, float] = (0.002, 0.025)
    p_tilt: float = 0.5
    tilt_db_per_octave: tuple[float, float] = (-3.0, 3.0)   # around 1 kHz
    p_noise: float = 0.5
    noise_floor_db: tuple[float, float] = (-70.0, -35.0)    # noise RMS relative to the peak
    noise_slope: tuple[float, float] = (0.0, 2.0)           # power ~ f^-slope: 0 white, 1 pink, 2 brown
    p_compress: float = 0.5
    threshold_db: tuple[float, float] = (-30.0, -8.0)       # relative to the peak's 10 ms RMS
    ratio: tuple[float, float] = (1.5, 6.0)

    @property
    def max_ir_samples(self) -> int:
        return int(math.ceil((self.rt60_s[1] + self.predelay_s[1]) * self.sample_rate))


def _uniform(gen: torch.Generator, n: int, lo_hi: tuple[float, float]) -> torch.Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64, device=gen.device)


def _draws(n: int, cfg: AugmentConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random parameter of a batch of ``n``, drawn in a fixed order (CPU, float64)."""
    d = {}
    for stage in ("delay", "reverb", "tilt", "noise", "compress"):
        d[f"use_{stage}"] = _uniform(gen, n, (0.0, 1.0)) < getattr(cfg, f"p_{stage}")
    d["delay_s"] = _uniform(gen, n, cfg.delay_s)
    d["rt60_s"] = _uniform(gen, n, cfg.rt60_s)
    d["hf_decay"] = _uniform(gen, n, cfg.hf_decay)
    d["wet_db"] = _uniform(gen, n, cfg.wet_db)
    d["predelay_s"] = _uniform(gen, n, cfg.predelay_s)
    d["tilt"] = _uniform(gen, n, cfg.tilt_db_per_octave)
    d["noise_db"] = _uniform(gen, n, cfg.noise_floor_db)
    d["noise_slope"] = _uniform(gen, n, cfg.noise_slope)
    d["threshold_db"] = _uniform(gen, n, cfg.threshold_db)
    d["ratio"] = _uniform(gen, n, cfg.ratio)
    return d


def _delay(x: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Shift each row right by ``samples`` ``[B]`` (zeros in front, the end cut)."""
    t = torch.arange(x.shape[1], device=x.device)[None, :] - samples[:, None]   # [B, T]
    return torch.where(t >= 0, x.gather(1, t.clamp(min=0)), torch.zeros((), device=x.device, dtype=x.dtype))


def impulse_responses(d: dict, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Synthetic room impulse responses ``[B, L]`` (float32, CPU): a unit direct impulse, then early
    reflections and a noise tail whose energy is ``wet_db`` below it."""
    n, length, sr = len(d["rt60_s"]), cfg.max_ir_samples, cfg.sample_rate
    t = torch.arange(length, dtype=torch.float64)[None, :] / sr                   # [1, L]
    noise = torch.randn(n, length, generator=gen, dtype=torch.float64)
    spec = torch.fft.rfft(noise)
    low = torch.fft.rfftfreq(length, 1.0 / sr)[None, :] < 2000.0
    lo_band = torch.fft.irfft(spec * low, length)
    hi_band = noise - lo_band
    decay = -3.0 * math.log(10.0) * t                                            # 60 dB over rt60
    tail = lo_band * torch.exp(decay / d["rt60_s"][:, None]) \
        + hi_band * torch.exp(decay / (d["rt60_s"] * d["hf_decay"])[:, None])
    start = (d["predelay_s"] * sr).round().long()
    tail = torch.where(torch.arange(length)[None, :] >= start[:, None], tail, torch.zeros(()))
    # Early reflections: 6 taps between the pre-delay and 50 ms, signs and gains at random.
    taps = (start[:, None] + (torch.rand(n, 6, generator=gen, dtype=torch.float64) * 0.05 * sr).long()).clamp(max=length - 1)
    gains = (torch.rand(n, 6, generator=gen, dtype=torch.float64) * 2 - 1) * 3.0 * tail.std(dim=1, keepdim=True)
    tail = tail.scatter_add(1, taps, gains)
    energy = (tail ** 2).sum(dim=1, keepdim=True).clamp(min=1e-12)
    ir = tail * torch.sqrt(10.0 ** (d["wet_db"][:, None] / 10.0) / energy)
    ir[:, 0] += 1.0
    return ir.float()


def _convolve(x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Linear convolution of rows, cut to ``x``'s length (FFT)."""
    n = x.shape[1] + ir.shape[1]
    n_fft = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x, n_fft) * torch.fft.rfft(ir, n_fft), n_fft)
    return y[:, :x.shape[1]]


def _tilt(x: torch.Tensor, db_per_octave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    freqs = torch.fft.rfftfreq(x.shape[1], 1.0 / sample_rate, device=x.device).clamp(min=50.0)
    gain_db = db_per_octave[:, None] * torch.log2(freqs / 1000.0)[None, :]        # [B, F]
    return torch.fft.irfft(torch.fft.rfft(x) * 10.0 ** (gain_db / 20.0), x.shape[1])


def _noise(shape: tuple[int, int], slope: torch.Tensor, sample_rate: int, gen: torch.Generator) -> torch.Tensor:
    """Unit-RMS noise rows ``[B, T]`` with power ~ f^-slope (CPU)."""
    white = torch.randn(shape, generator=gen, dtype=torch.float64)
    freqs = torch.fft.rfftfreq(shape[1], 1.0 / sample_rate).clamp(min=20.0)
    coloured = torch.fft.irfft(torch.fft.rfft(white) * freqs[None, :] ** (-slope[:, None] / 2), shape[1])
    return (coloured / coloured.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-12)).float()


def _compress(x: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Feed-forward RMS compressor (10 ms detector, ~20 ms gain smoothing), soft 6 dB knee."""
    win = max(1, sample_rate // 100)
    power = torch.nn.functional.avg_pool1d(x[:, None] ** 2, win, 1, win // 2, count_include_pad=False)[:, 0, :x.shape[1]]
    level_db = 10 * torch.log10(power.clamp(min=1e-10))
    over = level_db - (level_db.amax(dim=1, keepdim=True) + threshold_db[:, None])
    knee = 6.0
    over = torch.where(over > knee / 2, over, torch.where(over < -knee / 2, torch.zeros_like(over),
                                                           (over + knee / 2) ** 2 / (2 * knee)))
    gain_db = -over * (1 - 1 / ratio[:, None])
    gain_db = torch.nn.functional.avg_pool1d(gain_db[:, None], 2 * win + 1, 1, win, count_include_pad=False)[:, 0]
    return x * 10.0 ** (gain_db / 20.0)


def augment(wave: torch.Tensor, cfg: AugmentConfig = AugmentConfig(), seed: int | torch.Generator = 0) -> torch.Tensor:
    """Waves ``[B, T]`` (or ``[T]``) at ``cfg.sample_rate`` -> the same shape with a random recording
    chain per row; each row keeps its peak. ``seed`` (or a CPU generator) fixes every draw."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    x = wave[None] if wave.dim() == 1 else wave
    x = x.float()
    n, dev, sr = x.shape[0], x.device, cfg.sample_rate
    d = _draws(n, cfg, gen)
    on = {k: d[f"use_{k}"].to(dev)[:, None] for k in ("reverb", "tilt", "noise", "compress")}
    peak = x.abs().amax(dim=1, keepdim=True)
    samples = torch.where(d["use_delay"], (d["delay_s"] * sr).round(), torch.zeros((), dtype=torch.float64)).long().to(dev)
    y = _delay(x, samples)
    y = torch.where(on["reverb"], _convolve(y, impulse_responses(d, cfg, gen).to(dev)), y)
    y = torch.where(on["tilt"], _tilt(y, d["tilt"].float().to(dev), sr), y)
    noise = _noise(tuple(x.shape), d["noise_slope"], sr, gen).to(dev)
    level = peak * (10.0 ** (d["noise_db"] / 20.0)).float().to(dev)[:, None]
    y = torch.where(on["noise"], y + noise * level, y)
    y = torch.where(on["compress"], _compress(y, d["threshold_db"].float().to(dev), d["ratio"].float().to(dev), sr), y)
    y = y * (peak / y.abs().amax(dim=1, keepdim=True).clamp(min=1e-12))
    return y[0] if wave.dim() == 1 else y


def _room_kernel(d: dict, cfg: AugmentConfig, centres_hz: torch.Tensor, frame_s: float) -> torch.Tensor:
    """Per-band power response of the room ``[B, n_mels, K]``: the direct sound (1 at lag 0), then a
    tail from the pre-delay that falls 60 dB over rt60 (``hf_decay`` times that above 2 kHz), its
    low-band energy ``wet_db`` below the direct sound."""
    k = math.ceil((cfg.rt60_s[1] + cfg.predelay_s[1]) / frame_s)
    t = torch.arange(k, device=centres_hz.device, dtype=torch.float32)[None, None, :] * frame_s   # [1, 1, K]
    rt60 = d["rt60_s"].float()[:, None, None]
    rt60 = torch.where(centres_hz[None, :, None] > 2000.0, rt60 * d["hf_decay"].float()[:, None, None], rt60)
    late = (t - d["predelay_s"].float()[:, None, None]).clamp(min=0.0)
    tail = torch.exp(-6.0 * math.log(10.0) * late / rt60) * (t >= d["predelay_s"].float()[:, None, None])
    low_energy = tail[:, :1].sum(-1, keepdim=True).clamp(min=1e-12)  # band 0 is below 2 kHz
    tail = tail * (10.0 ** (d["wet_db"].float() / 10.0))[:, None, None] / low_energy
    tail[..., 0] += 1.0
    return tail


def _convolve_frames(power: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Causal convolution along the last axis, cut to ``power``'s length (FFT)."""
    n = power.shape[-1] + kernel.shape[-1]
    n_fft = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(power, n_fft) * torch.fft.rfft(kernel, n_fft), n_fft)
    return y[..., :power.shape[-1]].clamp(min=0.0)


def _compress_frames(power: torch.Tensor, d: dict, frame_s: float) -> torch.Tensor:
    """The compressor of ``augment`` on frames: level per frame, soft 6 dB knee, ~20 ms smoothing."""
    level_db = 10 * torch.log10(power.sum(1).clamp(min=1e-20))                       # [B, T]
    over = level_db - (level_db.amax(dim=1, keepdim=True) + d["threshold_db"].float()[:, None])
    knee = 6.0
    over = torch.where(over > knee / 2, over, torch.where(over < -knee / 2, torch.zeros_like(over),
                                                           (over + knee / 2) ** 2 / (2 * knee)))
    gain_db = -over * (1 - 1 / d["ratio"].float()[:, None])
    win = max(1, round(0.01 / frame_s))
    gain_db = torch.nn.functional.avg_pool1d(gain_db[:, None], 2 * win + 1, 1, win, count_include_pad=False)[:, 0]
    return power * 10.0 ** (gain_db[:, None, :] / 10.0)


def augment_log_mel(log_mel: torch.Tensor, mel_cfg, cfg: AugmentConfig = AugmentConfig(),
                    gen: torch.Generator | None = None, p: float = 1.0) -> torch.Tensor:
    """Log-mels ``[B, n_mels, n_frames]`` (natural log of mel magnitude, as ``LogMel`` gives) -> the same
    with a random recording chain on a ``p`` share of rows; each changed row keeps its loudest frame's
    power. Draws come from ``gen`` (any device; a fresh seed-0 CPU generator when None)."""
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    n, n_mels, n_frames = log_mel.shape
    dev = log_mel.device
    rows = (_uniform(gen, n, (0.0, 1.0)) < p).to(dev)
    d = {k: v.to(dev) for k, v in _draws(n, cfg, gen).items()}
    frame_s = mel_cfg.hop_length / mel_cfg.sample_rate
    centres = mel_cfg.band_centres_hz().to(dev)
    silent = math.exp(2 * mel_cfg.log_min)
    power = torch.exp(2 * log_mel.float())
    peak = power.sum(1).amax(1)                                                        # [B]

    shift = torch.where(d["use_delay"], (d["delay_s"] / frame_s).round(), torch.zeros_like(d["delay_s"])).long()
    t = torch.arange(n_frames, device=dev)[None, :] - shift[:, None]                   # [B, T]
    delayed = power.gather(2, t.clamp(min=0)[:, None, :].expand(-1, n_mels, -1))
    power = torch.where((t >= 0)[:, None, :], delayed, torch.full((), silent, device=dev))
    on = lambda stage: d[f"use_{stage}"][:, None, None]  # noqa: E731
    power = torch.where(on("reverb"), _convolve_frames(power, _room_kernel(d, cfg, centres, frame_s)), power)
    tilt_db = d["tilt"].float()[:, None] * torch.log2(centres.clamp(min=50.0) / 1000.0)[None, :]
    power = torch.where(on("tilt"), power * 10.0 ** (tilt_db[:, :, None] / 10.0), power)
    # noise: power ~ f^-slope integrated over each band (width ~ the spacing of the centres)
    width = torch.gradient(centres)[0].clamp(min=1.0)
    shape = width[None, :] * centres.clamp(min=20.0)[None, :] ** (-d["noise_slope"].float()[:, None])
    shape = shape / shape.sum(1, keepdim=True)                                         # [B, n_mels]
    level = peak * 10.0 ** (d["noise_db"].float() / 10.0)                              # [B]
    draw = -torch.log(torch.rand(n, n_mels, n_frames, generator=gen, device=gen.device).clamp(min=1e-12)).to(dev)
    power = torch.where(on("noise"), power + (level[:, None] * shape)[:, :, None] * draw, power)
    power = torch.where(on("compress"), _compress_frames(power, d, frame_s), power)
    power = power * (peak / power.sum(1).amax(1).clamp(min=1e-20))[:, None, None]
    out = 0.5 * torch.log(power.clamp(min=silent))
    return torch.where(rows[:, None, None], out.to(log_mel.dtype), log_mel)
