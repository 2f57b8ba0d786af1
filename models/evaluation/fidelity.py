"""Fidelity metrics: how much a rendered instrument sounds like the one-shot it was made from.

Every function takes mono float32 waves at one rate (the model's 16 kHz in the benchmark) and
returns plain floats or arrays, so it is indifferent to the method that rendered them:

- reconstruction at the root: :func:`log_mel_l1` on the model's mel grid and :func:`mrstft_distance`;
- identification among a suite: :func:`mfcc_stats` and :func:`ltas_envelope` (features nobody
  trained), matched by :func:`identification` (cosine on features z-scored over the suite's inputs);
- envelope: :func:`envelope_correlation` (Pearson of 10 ms RMS envelopes over the input's length);
- pitch: :func:`pitch_hits` with a judge: :class:`OurPitch` (``models.signal.pitch``),
  :class:`PestoPitch` (pesto-pitch, a self-supervised CQT estimator trained by its authors on
  MIR-1K singing: independent of this project) or :class:`YinPitch` (YIN, de Cheveigné & Kawahara
  2002, implemented here; the fallback when pesto is not installed). Judges read only the voiced,
  sounding part of a note, so a short hit counts as fairly as a held tone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torchaudio

from models.signal.audio import active_frames, frame_rms
from models.signal.mel import LogMel
from models.signal.pitch import note_pitch

FRAME_S = 0.01  # RMS envelopes, voiced-frame masks and pitch tracks


def peak_normalised(wave: np.ndarray) -> np.ndarray:
    """float32 copy peaking at 1.0 (level is not timbre: keys are levelled apart anyway)."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return (wave / peak).astype(np.float32) if peak > 0 else wave.astype(np.float32)


def sounding_length(wave: np.ndarray, rate: int, floor_db: float = -50.0) -> int:
    """Samples from the start to the end of the last frame within ``floor_db`` of the loudest."""
    hop = max(1, int(FRAME_S * rate))
    active = np.flatnonzero(active_frames(wave, hop, floor_db))
    return int((active[-1] + 1) * hop) if active.size else 0


# -- reconstruction at the root -------------------------------------------------------------------
@torch.no_grad()
def log_mel_l1(log_mel: LogMel, reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean |log-mel(ref) - log-mel(est)| on ``log_mel``'s grid, both peak-normalised and cut to one length."""
    n = min(len(reference), len(estimate))
    pair = torch.from_numpy(np.stack([peak_normalised(reference[:n]), peak_normalised(estimate[:n])]))
    mels = log_mel(pair.to(log_mel.fb.device))  # [2, M, F]
    return float((mels[0] - mels[1]).abs().mean())


MRSTFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop): Parallel WaveGAN's spread


def mrstft_distance(reference: np.ndarray, estimate: np.ndarray,
                    resolutions: tuple[tuple[int, int], ...] = MRSTFT_RESOLUTIONS) -> float:
    """Multi-resolution STFT distance: mean over resolutions of spectral convergence + log-magnitude L1.

    Both waves are peak-normalised and cut to one length. 0 for identical waves.
    """
    n = min(len(reference), len(estimate))
    ref = torch.from_numpy(peak_normalised(reference[:n])).double()
    est = torch.from_numpy(peak_normalised(estimate[:n])).double()
    total = 0.0
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, dtype=torch.float64)
        mag_ref, mag_est = (torch.stft(x, n_fft, hop, window=window, return_complex=True).abs().clamp_min(1e-7)
                            for x in (ref, est))
        convergence = torch.linalg.norm(mag_ref - mag_est) / torch.linalg.norm(mag_ref).clamp_min(1e-12)
        total += float(convergence) + float((mag_ref.log() - mag_est.log()).abs().mean())
    return total / len(resolutions)


# -- envelope -------------------------------------------------------------------------------------
def envelope_correlation(reference: np.ndarray, estimate: np.ndarray, rate: int) -> float:
    """Pearson correlation of 10 ms RMS envelopes over the reference's sounding length (0 if either is flat)."""
    hop = max(1, int(FRAME_S * rate))
    n = max(2 * hop, sounding_length(reference, rate))
    a, b = frame_rms(reference[:n], hop), frame_rms(np.pad(estimate, (0, max(0, n - len(estimate))))[:n], hop)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


# -- identification -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureConfig:
    """Hand-made timbre features: nothing here was trained, least of all by us."""

    n_mfcc: int = 20              # MFCC 1..n_mfcc-1 are kept (c0 is loudness)
    n_fft: int = 1024
    hop_length: int = 160         # 10 ms at 16 kHz
    n_mels: int = 64
    ltas_n_fft: int = 2048
    ltas_lifter: int = 40         # cepstral coefficients kept: smooths ripple finer than rate / lifter Hz
    ltas_points: int = 40         # log-spaced frequencies the envelope is read at ...
    ltas_lo_hz: float = 100.0     # ... from here
    ltas_hi_hz: float = 7000.0    # ... to here


def _active_mask(waves: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """Bool ``[B, n_frames]`` of sounding frames, aligned to a centred STFT with ``hop``."""
    masks = np.zeros((len(waves), n_frames), bool)
    for i, w in enumerate(waves):
        padded = np.pad(w, (hop // 2, hop))  # frame k of a centred STFT sits at k * hop
        m = active_frames(padded, hop)[:n_frames]
        masks[i, : len(m)] = m
    masks[~masks.any(axis=1)] = True  # a silent wave: average everything rather than nothing
    return masks


@torch.no_grad()
def mfcc_stats(waves: np.ndarray, rate: int, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Mean and std of MFCC 1..19 over sounding frames ``[B, 2 * (n_mfcc - 1)]`` for waves ``[B, T]``."""
    mfcc = torchaudio.transforms.MFCC(rate, cfg.n_mfcc, melkwargs=dict(
        n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, center=True, pad_mode="constant"))
    x = torch.from_numpy(np.stack([peak_normalised(w) for w in waves]))
    coeffs = mfcc(x)[:, 1:].double().numpy()  # [B, n_mfcc - 1, F]
    mask = _active_mask(waves, cfg.hop_length, coeffs.shape[2])
    out = []
    for c, m in zip(coeffs, mask):
        frames = c[:, m]
        out.append(np.concatenate([frames.mean(axis=1), frames.std(axis=1)]))
    return np.stack(out).astype(np.float32)


def ltas_envelope(waves: np.ndarray, rate: int, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Cepstrally smoothed long-term average spectrum ``[B, ltas_points]`` (dB, mean level removed).

    The power spectrum averaged over sounding frames, in log, liftered to its first ``ltas_lifter``
    cepstral coefficients (the envelope, not the harmonics of one pitch), read at log-spaced
    frequencies. Level-free: only the shape counts.
    """
    n_fft, hop = cfg.ltas_n_fft, cfg.hop_length
    x = torch.from_numpy(np.stack([peak_normalised(w) for w in waves])).double()
    power = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64),
                       return_complex=True).abs().square().numpy()  # [B, n_freqs, F]
    mask = _active_mask(waves, hop, power.shape[2])
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    points = np.geomspace(cfg.ltas_lo_hz, min(cfg.ltas_hi_hz, 0.45 * rate), cfg.ltas_points)
    out = []
    for p, m in zip(power, mask):
        log_ltas = np.log(p[:, m].mean(axis=1) + 1e-10)
        cep = np.fft.irfft(log_ltas)
        cep[cfg.ltas_lifter: len(cep) - cfg.ltas_lifter + 1] = 0.0
        smooth = np.fft.rfft(cep).real[: len(freqs)]
        env_db = 10.0 / math.log(10.0) * np.interp(points, freqs, smooth)
        out.append(env_db - env_db.mean())
    return np.stack(out).astype(np.float32)


def identification(notes: np.ndarray, suite: np.ndarray, own: int) -> tuple[float, np.ndarray]:
    """Share of ``notes [K, d]`` whose nearest input among ``suite [N, d]`` is ``suite[own]``, and the picks ``[K]``.

    Features are z-scored by the suite's mean and std per dimension, then compared by cosine.
    """
    mean, std = suite.mean(axis=0), suite.std(axis=0) + 1e-6

    def unit(x: np.ndarray) -> np.ndarray:
        z = (x - mean) / std
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    picks = np.argmax(unit(notes) @ unit(suite).T, axis=1)
    return float(np.mean(picks == own)), picks


# -- pitch ----------------------------------------------------------------------------------------
class PitchJudge(Protocol):
    """Reads the pitch of a note: fractional MIDI, or None where it hears none."""

    name: str

    def midi(self, wave: np.ndarray, rate: int) -> float | None: ...


class OurPitch:
    """``models.signal.pitch.note_pitch``: our estimator on the sounding part, as the engine checks its keys."""

    name = "ours"

    def midi(self, wave: np.ndarray, rate: int) -> float | None:
        return note_pitch(wave, rate)


def _median_midi(f0_hz: np.ndarray, voiced: np.ndarray, min_frames: int = 3) -> float | None:
    f0 = f0_hz[voiced & (f0_hz > 0)]
    if f0.size < min_frames:
        return None
    return float(np.median(69.0 + 12.0 * np.log2(f0 / 440.0)))


@dataclass(frozen=True)
class YinConfig:
    frame: int = 1024             # samples at 16 kHz (64 ms): two periods of 31 Hz
    fmin_hz: float = 30.0
    fmax_hz: float = 2100.0       # above MIDI 96
    threshold: float = 0.15       # the absolute threshold on the normalised difference
    voiced_aperiodicity: float = 0.3  # frames whose dip is above this are unvoiced


class YinPitch:
    """YIN on 10 ms hops: cumulative-mean-normalised difference, absolute threshold, parabolic dip."""

    name = "yin"

    def __init__(self, cfg: YinConfig = YinConfig()) -> None:
        self.cfg = cfg

    def track(self, wave: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
        """(f0 Hz ``[N]``, aperiodicity ``[N]``) per 10 ms hop; f0 is 0 where no dip passes the threshold."""
        c, hop = self.cfg, max(1, int(FRAME_S * rate))
        frame = int(c.frame * rate / 16000)
        max_lag = min(frame - 2, int(math.ceil(rate / c.fmin_hz)))
        min_lag = max(2, int(rate / c.fmax_hz))
        x = np.pad(wave.astype(np.float64), (0, frame + max_lag))
        n = max(1, len(wave) // hop)
        idx = np.arange(n)[:, None] * hop + np.arange(frame + max_lag)[None]
        frames = x[idx]  # [N, frame + max_lag]
        size = 1 << int(math.ceil(math.log2(2 * (frame + max_lag))))
        head = np.fft.rfft(frames[:, :frame], size)
        whole = np.fft.rfft(frames, size)
        cross = np.fft.irfft(np.conj(head) * whole, size)[:, : max_lag + 1]  # r_t(tau)
        cum = np.concatenate([np.zeros((n, 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
        lags = np.arange(max_lag + 1)
        energy_shift = cum[:, lags + frame] - cum[:, lags]  # sum of x[j + tau]^2 over the frame
        diff = cum[:, frame:frame + 1] + energy_shift - 2 * cross  # [N, max_lag + 1]
        diff[:, 0] = 0.0
        running = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, max_lag + 1)
        cmnd = np.ones_like(diff)
        cmnd[:, 1:] = diff[:, 1:] / np.maximum(running, 1e-12)
        f0, aper = np.zeros(n), np.ones(n)
        for i in range(n):
            d = cmnd[i]
            below = np.flatnonzero(d[min_lag:max_lag] < c.threshold)
            if below.size:
                tau = min_lag + below[0]
                while tau + 1 < max_lag and d[tau + 1] < d[tau]:
                    tau += 1  # to the bottom of the dip
            else:
                tau = min_lag + int(np.argmin(d[min_lag:max_lag]))
            aper[i] = d[tau]
            if below.size:
                a, b, e = d[tau - 1], d[tau], d[tau + 1]
                denom = a - 2 * b + e
                shift = 0.5 * (a - e) / denom if denom > 0 else 0.0
                f0[i] = rate / (tau + shift)
        return f0, aper

    def midi(self, wave: np.ndarray, rate: int) -> float | None:
        hop = max(1, int(FRAME_S * rate))
        f0, aper = self.track(wave, rate)
        loud = active_frames(np.pad(wave, (0, hop)), hop, -30.0)[: len(f0)]
        loud = np.pad(loud, (0, len(f0) - len(loud)))
        return _median_midi(f0, loud & (aper < self.cfg.voiced_aperiodicity))


def harmonic_ratio(wave: np.ndarray, rate: int, f0_hz: np.ndarray, hop: int, n_fft: int = 2048,
                   n_harmonics: int = 10) -> np.ndarray:
    """Per frame of ``hop`` samples, the share of power within a quarter of f0 of a harmonic of ``f0_hz [N]``.

    Counted from f0 / 2 to the last harmonic below 0.45 x rate: ~1 for a harmonic sound at that f0,
    ~0.5 for noise of any colour. A voicing check that cannot itself name a pitch.
    """
    x = torch.from_numpy(np.pad(wave.astype(np.float32), (hop // 2, 0)))
    power = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().square()
    power = power.double().numpy()[:, : len(f0_hz)]  # [n_freqs, N]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)[:, None]
    f0 = np.maximum(np.asarray(f0_hz, np.float64)[None, : power.shape[1]], 1.0)
    top = np.minimum(n_harmonics, np.floor(0.45 * rate / f0)) + 0.5
    k = np.round(freqs / f0)
    band = (freqs >= 0.5 * f0) & (freqs <= top * f0)
    near = band & (k >= 1) & (np.abs(freqs - k * f0) <= 0.25 * f0)
    ratio = (power * near).sum(axis=0) / np.maximum((power * band).sum(axis=0), 1e-20)
    return np.pad(ratio, (0, len(f0_hz) - len(ratio)))


class PestoPitch:
    """PESTO (pesto-pitch, model ``mir-1k_g7``): median of its pitch over sounding, harmonic frames.

    PESTO's own confidence head learnt voicing from singing: it reads 0 for clean tones below E2 or
    above F#6 whose pitch PESTO gets right, so voicing is decided by :func:`harmonic_ratio` at
    PESTO's pitch instead (PESTO names a pitch even for white noise).
    """

    name = "pesto"

    def __init__(self, device: str | torch.device = "cpu", min_harmonic_ratio: float = 0.7,
                 hop_s: float = 0.02) -> None:
        import pesto  # optional: only the benchmark needs it

        self.device = torch.device(device)
        self.min_harmonic_ratio = min_harmonic_ratio
        self.hop_s = hop_s  # 20 ms: half PESTO's CPU time at 10 ms, and still 5 frames in a 0.1 s note
        self._pesto = pesto
        self._models: dict[int, torch.nn.Module] = {}

    def _model(self, rate: int) -> torch.nn.Module:
        if rate not in self._models:
            self._models[rate] = self._pesto.load_model("mir-1k_g7", step_size=1000 * self.hop_s,
                                                        sampling_rate=rate).to(self.device).eval()
        return self._models[rate]

    @torch.inference_mode()
    def track(self, wave: np.ndarray, rate: int) -> np.ndarray:
        """PESTO's pitch per ``hop_s`` frame, fractional MIDI ``[N]``."""
        x = torch.from_numpy(np.ascontiguousarray(peak_normalised(wave))).to(self.device)
        semitones, _, _ = self._model(rate)(x, sr=rate, convert_to_freq=False, return_activations=False)
        return semitones.float().cpu().numpy().reshape(-1)

    def midi(self, wave: np.ndarray, rate: int) -> float | None:
        semitones = self.track(wave, rate)
        hop = max(1, int(self.hop_s * rate))
        loud = active_frames(np.pad(wave, (0, hop)), hop, -30.0)
        loud = np.pad(loud, (0, max(0, len(semitones) - len(loud))))[: len(semitones)]
        hz = 440.0 * 2.0 ** ((semitones - 69.0) / 12.0)
        voiced = loud & (harmonic_ratio(wave, rate, hz, hop) >= self.min_harmonic_ratio)
        return float(np.median(semitones[voiced])) if voiced.sum() >= 3 else None


def independent_judge(device: str | torch.device = "cpu", prefer: str = "pesto") -> PitchJudge:
    """PESTO when pesto-pitch is installed (and preferred), else YIN."""
    if prefer == "pesto":
        try:
            return PestoPitch(device)
        except ImportError:
            pass
    return YinPitch()


def pitch_errors_cents(judge: PitchJudge, waves: np.ndarray, keys: list[int], rate: int) -> np.ndarray:
    """|judged pitch - key| in cents per wave ``[K]`` (inf where the judge hears no pitch)."""
    out = []
    for wave, key in zip(waves, keys):
        midi = judge.midi(wave, rate)
        out.append(math.inf if midi is None else abs(midi - key) * 100.0)
    return np.array(out)


def root_check(estimated_midi: float, labelled_midi: float) -> str:
    """``"ok"`` within a semitone of the label, ``"octave"`` within a semitone of it +-1 or 2 octaves, else ``"wrong"``."""
    gap = estimated_midi - labelled_midi
    if abs(gap) <= 1.0:
        return "ok"
    if any(abs(gap - 12 * k) <= 1.0 for k in (-2, -1, 1, 2)):
        return "octave"
    return "wrong"
