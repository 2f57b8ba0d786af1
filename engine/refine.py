"""Refinement: test-time steps that pull G's instrument towards the dropped sound itself.

H predicts offsets for G's layers in one pass; the result keeps G's pitch but often not the sound's
envelope or spectral shape. Refinement continues from H's offsets with a few Adam steps on them,
matching G's note at the sound's root key to the sound's own log-mel (floored 80 dB below its peak),
with an L2 pull towards H's offsets. Each step also renders one other key (an octave or a fifth away)
and keeps its harmonic fine structure where H's offsets put it, so following the sound at the root
does not take the other keys' pitch with it (speech, bells). Afterwards a mel correction, the log-mel gap still left
at the root, frame by frame and smoothed over the root's harmonic spacing (so it carries the sound's
moving spectral envelope, not its harmonics), is added to every key. What that smoothing leaves, the
sound's harmonic fine structure and quick changes (vibrato, breath, attacks), is added to the keys
within a tritone of the root, moved up or down to each key's pitch, and fades out by the octave;
frames whose pitch has wandered from the sound's own give only their quick envelope changes. A sound
whose harmonics keep moving throughout (speech) instead keeps its whole detail with its pitch contour
(each frame's shift against the median frame's harmonic pattern), and the keys that get the detail
are bent frame by frame along that contour, so they carry the phrase's intonation and fine structure.
The refined offsets fit the root and its neighbours but can take distant keys off pitch (bells,
sung vowels: a harmonic or a formant read as the pitch), so from the same tritone on keys hand over
to H's own offsets, which they play from the octave on, with the same correction (``FarKeys``).
A nearer key (not the root, which plays the sound) whose rendered note then reads nearer another
key than its own (our estimator on the note's sounding part, more than 50 cents off) plays an even
log-mel mix of its refined note and that far conditioning's, or if that still misses the far one
alone, whichever is first on pitch: a bell's, a spoken phrase's or a wide vibrato's unclear pitch
can follow the sound onto its neighbouring keys.

Optionally the targets include the sound repitched by resampling to keys around the root (what a
plain sampler plays there). Measured on out-of-set sounds this fitted the root less well and
identified the source less often than the root alone, so the default uses the root only.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from models.signal.mel import LogMel
from models.signal.pitch import note_pitch


@dataclass(frozen=True)
class RefineConfig:
    """How far and how fast refinement follows the sound."""

    steps: int = 20
    lr: float = 0.015
    key_offsets: tuple[int, ...] = (0,)  # target keys relative to the root (semitones); others repitch the sound
    root_weight: float = 2.0        # the root's own target counts this many times one repitched key
    anchor_weight: float = 1.0      # L2 pull of the offsets towards H's, per element (mean)
    keys_per_step: int = 1          # keys (targets) per Adam step, cycled through key_offsets
    dynamic_range_db: float = 80.0  # below the target's peak, mel bins count as silence
    mel_correction: float = 1.0     # share of the smoothed root gap added to every key (0: none)
    correction_smooth_bins: int = 9
    correction_limit: float = 2.0   # at most this (natural-log units) per bin either way
    correction_over_time: bool = True   # one gap per frame (the sound's moving spectrum), not one mean gap
    correction_smooth_frames: int = 5   # frames averaged into each frame's gap (8 ms each on the shipped grid)
    correction_harmonics: float = 2.0   # the bin smoothing spans at least this many of the root's harmonic spacings
    pitch_keys: tuple[int, ...] = (-12, 7, -7, 12)  # keys (semitones from the root) whose harmonic fine structure is kept
    pitch_weight: float = 1.0           # weight of that term against the root's L1
    fine_structure_bins: int = 9        # fine structure: the log-mel minus its average over this many bins
    detail: float = 1.0                 # share of the root's fine gap (what the correction smooths away) carried
    detail_span: float = 6.0            # ... in full to keys this many semitones from the root, moved to their pitch,
    detail_fade: float = 6.0            # ... then fading out over this many more semitones
    detail_limit: float = 3.0           # at most this (natural-log units) per bin and frame either way
    steady_low: float = 0.4             # frames whose harmonic pattern matches the sound's usual one by at most
    steady_high: float = 0.6            # ... this cosine give only their envelope; from this on, all their detail
    far_from: float = 6.0               # keys further than this (semitones) from the root move to H's own offsets
    far_fade: float = 6.0               # ... over this many more semitones (inf: refined offsets on every key)
    far_own_gap: bool = False           # far keys' correction: the gap H's root note leaves (else the refined one)
    contour_below: float = 0.25         # sounds whose median steadiness is below this (speech) carry their
    contour_semitones: float = 7.0      # ... pitch contour, within this range, onto the keys that get the detail
    pitch_check_cents: float = 50.0     # a refined key whose note misses its pitch by more than this plays the
                                        # ... far keys' conditioning when that one is on pitch (inf: no check),
    pitch_check_blend: float = 0.5      # ... first with this share of its refined log-mel mixed in, then without

    def __post_init__(self) -> None:
        if self.steps < 0 or self.lr <= 0 or not self.key_offsets or 0 not in self.key_offsets:
            raise ValueError("refinement needs steps >= 0, lr > 0 and key offsets that include the root (0)")


    def at_strength(self, strength: float) -> "RefineConfig":
        """This config scaled by a user's strength in [0, 2]: steps in proportion, the correction up to 1x.

        Strength 0 turns refinement off (:meth:`enabled` is False); 1 is this config.
        """
        if not 0.0 <= strength <= 2.0:
            raise ValueError(f"refinement strength must be within [0, 2], got {strength}")
        return replace(self, steps=int(round(self.steps * strength)),
                       mel_correction=self.mel_correction * min(strength, 1.0))

    @property
    def enabled(self) -> bool:
        return self.steps > 0 or self.mel_correction > 0


DEFAULT_REFINEMENT = RefineConfig()


@dataclass(frozen=True)
class Refined:
    """The offsets refinement reached and how many of the asked steps it ran (fewer when cancelled)."""

    deltas: dict[str, torch.Tensor]
    steps_done: int


RenderFn = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]  # (midi [B], deltas) -> log-mel


def repitch(wave: torch.Tensor, semitones: int, sample_rate: int) -> torch.Tensor:
    """``wave [T]`` played ``semitones`` higher by resampling (shorter when higher), zero-padded to T."""
    if semitones == 0:
        return wave
    ratio = 2.0 ** (semitones / 12.0)
    # Read the wave `ratio` times faster: resample from rate*ratio to rate (band-limited).
    orig = int(round(sample_rate * ratio / 50.0))
    out = torchaudio.functional.resample(wave[None], orig, int(sample_rate / 50.0))[0]
    length = wave.shape[-1]
    if out.shape[-1] >= length:
        return out[:length]
    return F.pad(out, (0, length - out.shape[-1]))


def targets(wave: torch.Tensor, root: int, log_mel: LogMel, cfg: RefineConfig,
            lowest: int, highest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target keys ``[K]`` (long, the root first) and log-mels ``[K, n_mels, n_frames]`` of the peak-normalised sound."""
    keys, mels = [], []
    for offset in (0,) + tuple(o for o in cfg.key_offsets if o != 0):  # the root first
        key = root + offset
        if lowest <= key <= highest:
            keys.append(key)
            mels.append(log_mel(repitch(wave, offset, log_mel.cfg.sample_rate)[None])[0])
    return torch.tensor(keys, dtype=torch.long, device=wave.device), torch.stack(mels)


def below_peak(peak: torch.Tensor, db: float) -> torch.Tensor:
    """The natural-log level ``db`` decibels below ``peak`` (a log-mel level)."""
    return peak - db / 20.0 * math.log(10.0)


def _floored_gap(out: torch.Tensor, target: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    """``target - out`` per bin and frame, both floored ``cfg.dynamic_range_db`` below the target's peak."""
    floor = below_peak(target.max(), cfg.dynamic_range_db)
    return torch.maximum(target, floor) - torch.maximum(out, floor)


def masked_l1(out: torch.Tensor, target: torch.Tensor, range_db: float) -> torch.Tensor:
    """Mean |out - target| over the log-mel, both floored ``range_db`` below the target's peak."""
    floor = below_peak(target.amax(dim=(-2, -1), keepdim=True), range_db)
    return (torch.maximum(out, floor) - torch.maximum(target, floor)).abs().mean()


def mel_gap(out: torch.Tensor, target: torch.Tensor, cfg: RefineConfig,
            centres_hz: torch.Tensor | None = None, root_hz: float | None = None) -> torch.Tensor:
    """The smoothed log-mel gap (target - out) G's root note leaves: ``[n_mels]``, or ``[n_mels, n_frames]``
    with ``cfg.correction_over_time``.

    The static gap is the mean over the target's active frames; the gap over time is kept per frame,
    averaged over ``correction_smooth_frames``. Either is smoothed over mel bins, over at least
    ``correction_harmonics`` harmonic spacings of the root (``root_hz``, with the bands' ``centres_hz``)
    so the root's own harmonics do not print onto other keys: what is left is the spectral envelope.
    """
    gap = _floored_gap(out, target, cfg)                                       # [n_mels, n_frames]
    if cfg.correction_over_time:
        k = cfg.correction_smooth_frames
        if k > 1:
            gap = F.avg_pool1d(F.pad(gap[None], (k // 2, (k - 1) // 2), mode="replicate"), k, stride=1)[0]
    else:
        frame_level = target.amax(dim=0)                                      # [n_frames]
        active = frame_level > below_peak(frame_level.max(), 40.0)          # within 40 dB of the loudest frame
        gap = gap[:, active].mean(dim=1)
    gap = smooth_bins(gap, _half_widths(gap.shape[0], cfg, centres_hz, root_hz).to(gap.device))
    return gap.clamp(-cfg.correction_limit, cfg.correction_limit) * cfg.mel_correction


def mel_detail(out: torch.Tensor, target: torch.Tensor, correction: torch.Tensor, cfg: RefineConfig,
               centres_hz: torch.Tensor | None = None, root_hz: float | None = None) -> torch.Tensor:
    """The root's gap (target - out) frame by frame that ``correction`` (from :func:`mel_gap`) leaves:
    the sound's harmonic fine structure and quick changes ``[n_mels, n_frames]``, clamped, times ``cfg.detail``.

    In steady frames (:func:`steadiness`) correction + detail is the whole gap at the root; other keys
    get it moved to their own pitch (:meth:`MelDetail.at_keys`), so the root's harmonics land on
    theirs. Frames whose harmonics have moved away from the sound's usual pitch (speech intonation, a
    glide) keep only their quick spectral-envelope changes (smoothed over the root's harmonic
    spacing, as the correction is), so they cannot pull other keys off pitch.
    """
    envelope = correction[:, None] if correction.dim() == 1 else correction
    detail = _floored_gap(out, target, cfg) - envelope                         # [n_mels, n_frames]
    smooth = smooth_bins(detail, _half_widths(detail.shape[0], cfg, centres_hz, root_hz).to(detail.device))
    steady = steadiness(target, cfg)[None]                                    # [1, n_frames]
    detail = steady * detail + (1.0 - steady) * smooth
    return detail.clamp(-cfg.detail_limit, cfg.detail_limit) * cfg.detail


def steadiness(target: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    """Per frame of the sound's log-mel ``[n_mels, n_frames]``, 0..1: how closely its harmonic fine
    structure matches the sound's usual one (cosine with the median over sounding frames, mapped from
    ``steady_low``..``steady_high`` to 0..1). A held note scores ~1 throughout, speech ~0.3."""
    fine, _, usual = _harmonic_pattern(target, cfg)
    return _steadiness(fine, usual, cfg)


def _steadiness(fine: torch.Tensor, usual: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    cosine = F.cosine_similarity(fine, usual[:, None], dim=0)
    span = max(cfg.steady_high - cfg.steady_low, 1e-6)
    return ((cosine - cfg.steady_low) / span).clamp(0.0, 1.0)


@dataclass(frozen=True)
class MelDetail:
    """The root's fine gap (:func:`mel_detail`) and how far from the root keys get it."""

    mel: torch.Tensor   # [n_mels, n_frames], natural-log units, at the sound's own pitch
    span: float         # semitones from the root that get it in full
    fade: float         # semitones over which it then fades out
    tuning: float = 0.0  # semitones the sound sits above its root key (its harmonics are there)
    contour: torch.Tensor | None = None  # [n_frames] semitones: the sound's pitch over time, if it moves

    def follow_contour(self, mels: torch.Tensor, root: int, midi: torch.Tensor,
                       centres_hz: torch.Tensor) -> torch.Tensor:
        """Keys' log-mels ``[B, n_mels, n_frames]`` bent frame by frame along the sound's pitch contour,
        as far as each key gets the detail (unchanged without a contour)."""
        if self.contour is None:
            return mels
        weights = detail_weight((midi - root).to(mels.device), self.span, self.fade).to(mels.dtype)
        bent = warp_frames(mels, self.contour.to(mels.device), centres_hz.to(mels.device))
        return mels + weights[:, None, None] * (bent - mels)

    def at_keys(self, root: int, midi: torch.Tensor, centres_hz: torch.Tensor) -> torch.Tensor:
        """This detail at keys ``midi [B]``: moved to each key's pitch (the sound's own tuning taken
        out) and weighted by distance from ``root`` (:func:`detail_weight`), ``[B, n_mels, n_frames]``."""
        offsets = (midi - root).to(self.mel.device)
        weights = detail_weight(offsets, self.span, self.fade).to(self.mel.dtype)
        moved = shift_bins(self.mel, centres_hz.to(self.mel.device), offsets.double() - self.tuning)
        return moved * weights[:, None, None]

    def moved_to(self, root: int, new_root: int, centres_hz: torch.Tensor) -> "MelDetail":
        """The same detail relative to ``new_root`` and in tune with it (for blending sounds of different roots)."""
        if new_root == root and self.tuning == 0.0:
            return self
        semitones = torch.tensor([new_root - root - self.tuning], dtype=torch.float64, device=self.mel.device)
        return replace(self, mel=shift_bins(self.mel, centres_hz.to(self.mel.device), semitones)[0], tuning=0.0)


@dataclass(frozen=True)
class FarKeys:
    """What keys far from the root play instead of the refined offsets: H's own offsets, with the
    refined correction (the default) or the gap H's root note leaves (``far_own_gap``). Refined offsets
    fit the root and its neighbours but can take distant keys off pitch (bells, sung vowels); H's
    offsets keep G's pitch everywhere. With a finite ``pitch_check_cents``, a nearer key (not the root)
    whose refined note misses its pitch (by :func:`misses_pitch`) plays this conditioning too where that
    note is on pitch, first mixed in the log-mel domain with ``check_blend`` of the refined note, which
    keeps some of the sound's detail (``Engine.render_waves``): a bell's or a spoken phrase's keys near
    the root can follow the sound into its own unclear pitch."""

    deltas: dict[str, torch.Tensor]   # {layer: [1, C_out, C_in]}: H's one-pass offsets
    mel_correction: torch.Tensor      # [n_mels] or [n_mels, n_frames]: the far keys' correction
    span: float                       # semitones from the root that keep the refined offsets in full
    fade: float                       # semitones over which the far conditioning then takes over
    pitch_check_cents: float = math.inf  # nearer keys missing their pitch by more than this play it too,
    check_blend: float = 0.0             # ... first mixed with this share of their refined log-mel

    def share(self, root: int, midi: torch.Tensor) -> torch.Tensor:
        """How much of the far conditioning keys ``midi [B]`` take: 0 near the root, 1 far from it."""
        return 1.0 - detail_weight(midi - root, self.span, self.fade)

    def blend(self, root: int, midi: torch.Tensor, deltas: dict[str, torch.Tensor],
              correction: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Per-key offsets ``{layer: [B, C_out, C_in]}`` and mel correction (``[B, n_mels, n_frames]``)
        between the refined ``deltas``/``correction`` and this far conditioning."""
        w = self.share(root, midi).to(self.mel_correction)                     # [B]
        mixed = {n: d + w[:, None, None] * (self.deltas[n].to(d) - d) for n, d in deltas.items()}
        near = torch.zeros_like(self.mel_correction) if correction is None else correction
        near, far = (c[:, None] if c.dim() == 1 else c for c in (near, self.mel_correction))
        return mixed, near[None] + w[:, None, None] * (far - near)[None]


def misses_pitch(wave: np.ndarray, rate: int, key: int, cents: float) -> bool:
    """Whether the note ``wave`` (mono, at ``rate``) is off key ``key`` by more than ``cents``, or has no pitch."""
    midi = note_pitch(wave, rate)
    return midi is None or abs(midi - key) * 100.0 > cents


def _harmonic_pattern(target: torch.Tensor, cfg: RefineConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sound's fine structure ``[n_mels, n_frames]``, its sounding frames (within 40 dB of the
    loudest, ``[n_frames]`` bool) and its usual pattern, the median over those frames ``[n_mels]``."""
    fine = fine_structure(target[None], cfg.fine_structure_bins, below_peak(target.max(), cfg.dynamic_range_db))[0]
    level = target.amax(dim=0)
    sounding = level > below_peak(level.max(), 40.0)
    return fine, sounding, fine[:, sounding].median(dim=1).values


def pitch_contour(target: torch.Tensor, cfg: RefineConfig, centres_hz: torch.Tensor,
                  step: float = 0.25) -> torch.Tensor:
    """The sound's pitch over time ``[n_frames]`` in semitones around its median (0 on silent frames):
    per frame, the shift along frequency (within ``cfg.contour_semitones``, in ``step``) that best lines
    its harmonic fine structure up with the median frame's."""
    fine, sounding, usual = _harmonic_pattern(target, cfg)
    shifts = torch.arange(-cfg.contour_semitones, cfg.contour_semitones + step / 2, step, dtype=torch.float64)
    candidates = shift_bins(usual[:, None], centres_hz.to(target.device), shifts)[:, :, 0]   # [S, n_mels]
    best = shifts[F.cosine_similarity(candidates[:, :, None], fine[None], dim=1).argmax(dim=0).cpu()]
    best = (best - best[sounding.cpu()].median()).to(target.dtype).to(target.device)
    return torch.where(sounding, best, torch.zeros_like(best))


def moves(target: torch.Tensor, cfg: RefineConfig) -> bool:
    """Whether the sound's harmonics keep moving (speech): the median steadiness of its sounding frames
    is below ``cfg.contour_below``."""
    fine, sounding, usual = _harmonic_pattern(target, cfg)
    return bool(_steadiness(fine, usual, cfg)[sounding].median() < cfg.contour_below)


def moving_detail(out: torch.Tensor, target: torch.Tensor, correction: torch.Tensor, cfg: RefineConfig,
                  centres_hz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a sound whose harmonics keep moving: its pitch contour ``[n_frames]`` and the whole gap
    ``[n_mels, n_frames]`` G's root note (with the correction) leaves once bent along that contour, so
    keys bent the same way and given this detail carry the sound's intonation and fine structure."""
    contour = pitch_contour(target, cfg, centres_hz)
    envelope = correction[:, None] if correction.dim() == 1 else correction
    bent = warp_frames((out + envelope)[None], contour, centres_hz.to(out.device))[0]
    detail = _floored_gap(bent, target, cfg).clamp(-cfg.detail_limit, cfg.detail_limit) * cfg.detail
    return detail, contour


def warp_frames(mels: torch.Tensor, semitones: torch.Tensor, centres_hz: torch.Tensor) -> torch.Tensor:
    """Log-mels ``[B, n_mels, n_frames]`` with frame t moved up by ``semitones[t]`` along frequency
    (linear between bands); bands that would read outside the bands take each mel's quietest level."""
    n, batch = centres_hz.shape[0], mels.shape[0]
    grid = centres_hz.double().to(mels.device)
    source = grid[:, None] / torch.pow(2.0, semitones.double().to(mels.device)[None, :] / 12.0)   # [n_mels, F]
    pos = torch.searchsorted(grid, source.T.contiguous()).T.clamp(1, n - 1)
    frac = ((source - grid[pos - 1]) / (grid[pos] - grid[pos - 1])).clamp(0.0, 1.0).to(mels.dtype)
    lo = mels.gather(1, (pos - 1).expand(batch, -1, -1))
    hi = mels.gather(1, pos.expand(batch, -1, -1))
    inside = (source >= grid[0]) & (source <= grid[-1])
    quietest = mels.amin(dim=(1, 2), keepdim=True)
    return torch.where(inside, (1.0 - frac) * lo + frac * hi, quietest)


def detail_weight(semitones: torch.Tensor, span: float, fade: float) -> torch.Tensor:
    """How much of the root's detail a key ``semitones`` from the root gets: 1 within ``span``,
    then a linear fade to 0 over ``fade`` more semitones."""
    beyond = (semitones.abs().float() - span).clamp_min(0.0)
    return (1.0 - beyond / max(fade, 1e-6)).clamp(0.0, 1.0)


def shift_bins(x: torch.Tensor, centres_hz: torch.Tensor, semitones: torch.Tensor) -> torch.Tensor:
    """``x [n_mels, n_frames]`` moved up by ``semitones [B]`` along frequency: ``[B, n_mels, n_frames]``.

    Band m of key b reads ``x`` at frequency ``centres_hz[m] / 2**(semitones[b] / 12)`` (linear between
    bands); frequencies outside the bands read 0.
    """
    n = centres_hz.shape[0]
    source_hz = centres_hz[None].double() / torch.pow(2.0, semitones.double()[:, None] / 12.0)   # [B, n_mels]
    grid = centres_hz.double().to(source_hz.device)
    pos = torch.searchsorted(grid, source_hz.contiguous()).clamp(1, n - 1)
    lo_hz, hi_hz = grid[pos - 1], grid[pos]
    frac = ((source_hz - lo_hz) / (hi_hz - lo_hz)).clamp(0.0, 1.0).to(x.dtype)
    inside = ((source_hz >= grid[0]) & (source_hz <= grid[-1])).to(x.dtype)
    lo, hi = x[pos - 1], x[pos]                                                           # [B, n_mels, n_frames]
    return ((1.0 - frac)[..., None] * lo + frac[..., None] * hi) * inside[..., None]


def smooth_bins(x: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """``x [n_mels, ...]`` averaged over bins ``m - half[m] .. m + half[m]`` (cut at the edges)."""
    n = x.shape[0]
    csum = torch.cat([torch.zeros_like(x[:1]), x.cumsum(dim=0)])
    idx = torch.arange(n, device=x.device)
    lo, hi = (idx - half).clamp(min=0), (idx + half + 1).clamp(max=n)
    count = (hi - lo).to(x.dtype).reshape((n,) + (1,) * (x.dim() - 1))
    return (csum[hi] - csum[lo]) / count


def _half_widths(n_mels: int, cfg: RefineConfig, centres_hz: torch.Tensor | None,
                 root_hz: float | None) -> torch.Tensor:
    """Per bin, how many neighbours either side the smoothing takes (long ``[n_mels]``)."""
    half = torch.full((n_mels,), cfg.correction_smooth_bins // 2, dtype=torch.long)
    if cfg.correction_harmonics > 0 and centres_hz is not None and root_hz is not None:
        spacing = torch.gradient(centres_hz.double().cpu())[0].clamp_min(1e-6)   # Hz between neighbouring bands
        wide = torch.ceil(cfg.correction_harmonics * root_hz / 2.0 / spacing).long()
        half = torch.maximum(half, wide)
    return half


def fine_structure(mel: torch.Tensor, bins: int, floor: torch.Tensor) -> torch.Tensor:
    """``mel [B, n_mels, F]`` floored at ``floor``, minus its average over ``bins`` neighbouring bins:
    the harmonic peaks and valleys that carry pitch, without the spectral envelope."""
    x = torch.maximum(mel, floor)
    pad = bins // 2
    envelope = F.avg_pool1d(F.pad(x.transpose(1, 2).reshape(-1, 1, x.shape[1]), (pad, pad), mode="replicate"),
                            bins, stride=1).reshape(x.shape[0], x.shape[2], -1).transpose(1, 2)
    return x - envelope


def refine_offsets(render: RenderFn, start: dict[str, torch.Tensor], keys: torch.Tensor, target_mels: torch.Tensor,
                   cfg: RefineConfig, cancel: threading.Event | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   pitch_keys: torch.Tensor | None = None, graphs: bool = True) -> Refined:
    """Adam steps on the offsets ``{layer: [1, C_out, C_in]}`` from ``start`` (H's), towards ``target_mels``.

    ``render(midi [B], deltas)`` is G at z = 0 with the sound's h. Keys are visited in turn, the root
    (index 0) ``root_weight`` times as often as each other key. With ``pitch_keys`` (MIDI notes), each
    step also renders one of them and keeps its harmonic fine structure (:func:`fine_structure`) at
    what H's offsets gave there, so the fit at the root does not take the other keys' pitch with it.
    Stops early (keeping the steps done) when ``cancel`` is set. On a CUDA device (with ``graphs``)
    the step is replayed from a CUDA graph after a few eager steps (:class:`_Steps`).
    """
    anchor = {name: d.detach() for name, d in start.items()}
    keep = _pitch_reference(render, anchor, pitch_keys, target_mels, cfg)
    steps = _Steps(render, start, anchor, target_mels.shape[1:], cfg, keep, graphs)
    schedule = _visit_order(len(keys), cfg.root_weight)
    done = 0
    for step in range(cfg.steps):
        if cancel is not None and cancel.is_set():
            break
        pick = [schedule[(step * cfg.keys_per_step + i) % len(schedule)] for i in range(cfg.keys_per_step)]
        idx = torch.tensor(pick, device=keys.device)
        j = step % len(pitch_keys) if keep is not None else 0
        midi = keys[idx] if keep is None else torch.cat([keys[idx], pitch_keys[j:j + 1]])
        steps.run(step, midi, target_mels[idx], None if keep is None else keep.fine[j:j + 1])
        done += 1
        if progress is not None:
            progress(done, cfg.steps)
    return Refined({n: p.detach() for n, p in steps.params.items()}, done)


class _Steps:
    """Refinement's Adam step on fixed input tensors (the keys, their targets, the kept fine structure).

    On the GPU one step is some 900 small kernels whose launches cost several times their work, so
    after ``EAGER_STEPS`` eager steps (on a side stream, as capture needs) the step is captured once
    as a CUDA graph and replayed with each step's inputs copied in. Elsewhere, or when capture fails,
    every step runs eagerly; both give the same updates.
    """

    EAGER_STEPS = 3

    def __init__(self, render: RenderFn, start: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                 mel_shape: torch.Size, cfg: RefineConfig, keep: _PitchReference | None, graphs: bool) -> None:
        self.render, self.anchor, self.cfg, self.keep = render, anchor, cfg, keep
        device = next(iter(start.values())).device
        self.use_graph = graphs and device.type == "cuda"
        self.params = {name: d.detach().clone().requires_grad_(True) for name, d in start.items()}
        self.optimiser = torch.optim.Adam(self.params.values(), lr=cfg.lr, capturable=self.use_graph)
        n = cfg.keys_per_step
        self.midi = torch.zeros(n + (keep is not None), dtype=torch.long, device=device)
        self.target = torch.zeros(n, *mel_shape, device=device)
        self.fine = torch.zeros(1, *mel_shape, device=device) if keep is not None else None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side = torch.cuda.Stream(device) if self.use_graph else None

    def run(self, step: int, midi: torch.Tensor, target: torch.Tensor, fine: torch.Tensor | None) -> None:
        """Step ``step`` of the loop with these inputs."""
        self.midi.copy_(midi)
        self.target.copy_(target)
        if fine is not None:
            self.fine.copy_(fine)
        if not self.use_graph:
            self._step()
        elif step < self.EAGER_STEPS:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self._step()
            torch.cuda.current_stream().wait_stream(self.side)
        else:
            if self.graph is None and not self._capture():
                self.use_graph = False
                self._step()
                return
            self.graph.replay()

    def _capture(self) -> bool:
        self.optimiser.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:   # thread-local: other threads (the quick render, playback) keep using the GPU meanwhile
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._loss().backward()
                self.optimiser.step()
        except RuntimeError:       # an op that cannot be captured, or capture disturbed: stay eager
            torch.cuda.synchronize()
            return False
        self.graph = graph
        return True

    def _step(self) -> None:
        loss = self._loss()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()

    def _loss(self) -> torch.Tensor:
        cfg, params = self.cfg, self.params
        with torch.enable_grad():
            out = self.render(self.midi, params)
            loss = masked_l1(out[:cfg.keys_per_step], self.target, cfg.dynamic_range_db)
            if self.keep is not None:
                fine = fine_structure(out[-1:], cfg.fine_structure_bins, self.keep.floor)
                loss = loss + cfg.pitch_weight * (fine - self.fine).abs().mean()
            if cfg.anchor_weight > 0:
                pull = sum((params[n] - self.anchor[n]).pow(2).mean() for n in params) / len(params)
                loss = loss + cfg.anchor_weight * pull
        return loss


@dataclass(frozen=True)
class _PitchReference:
    fine: torch.Tensor      # [K, n_mels, n_frames] fine structure of H's notes at the pitch keys
    floor: torch.Tensor     # scalar: the level below which bins count as silence


def _pitch_reference(render: RenderFn, anchor: dict[str, torch.Tensor], pitch_keys: torch.Tensor | None,
                     target_mels: torch.Tensor, cfg: RefineConfig) -> _PitchReference | None:
    """The fine structure H's offsets give at ``pitch_keys`` (what the pitch term keeps), or None."""
    if pitch_keys is None or len(pitch_keys) == 0 or cfg.pitch_weight <= 0:
        return None
    with torch.no_grad():
        notes = render(pitch_keys, anchor)
    floor = below_peak(target_mels[0].max(), cfg.dynamic_range_db).detach()
    return _PitchReference(fine_structure(notes, cfg.fine_structure_bins, floor), floor)


def _visit_order(n_keys: int, root_weight: float) -> list[int]:
    """Indices into the target keys: the root (0) interleaved ``root_weight`` times per round of the others."""
    others = list(range(1, n_keys))
    if not others:
        return [0]
    repeats = max(1, int(round(root_weight)))
    order: list[int] = []
    for i, k in enumerate(others):
        if i % max(1, len(others) // repeats) == 0:
            order.append(0)
        order.append(k)
    return order
