"""NSynth-style quality filter: drop silent, clipped and mistuned notes, and say why.

Pitch is measured with ``models.signal.pitch.estimate_pitch``. An instrument is treated as pitched when
its program says so *and* most of its notes measure at their key; otherwise its notes are kept for
timbre and excluded from the pitch check (``pitched=False``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.signal.audio import Audio
from models.signal.pitch import estimate_pitch

REASONS = ("silent", "clipped", "mistuned", "unclear_pitch", "out_of_range", "unreadable")


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the quality filter."""

    silent_peak: float = 1e-4          # raw peak below this (full scale 1.0): nothing sounds
    silent_active_s: float = 0.05      # or sound (within 40 dB of the peak) lasts less than this
    clip_run: int = 4                  # this many consecutive samples at the peak: a flat top
    clip_min_runs: int = 2             # ... occurring at least this often: clipped
    tolerance_semitones: float = 0.5   # |measured - key| above this: mistuned
    min_confidence: float = 0.5        # measurements below this confidence do not count
    pitched_agreement: float = 0.6     # share of confident notes at their key for "pitched"


@dataclass(frozen=True)
class NoteCheck:
    """Per-note measurements: why the note would be dropped (``""`` = kept by the level checks)."""

    reason: str
    pitch_estimate: float   # NaN when nothing was measured
    confidence: float


def is_silent(note: Audio, cfg: FilterConfig) -> bool:
    """Too quiet, or above 1 % of its peak for less than ``cfg.silent_active_s``."""
    raw = note.samples
    peak = float(np.abs(raw).max()) if raw.size else 0.0
    if peak < cfg.silent_peak:
        return True
    active = np.count_nonzero(np.abs(raw) > peak * 0.01)
    return active < cfg.silent_active_s * note.sample_rate


def is_clipped(raw: np.ndarray, cfg: FilterConfig) -> bool:
    """Flat tops: runs of ``clip_run`` samples pinned at the peak level (hard clipping)."""
    mag = np.abs(raw)
    peak = mag.max()
    if peak <= 0:
        return False
    at_peak = mag >= peak * 0.9999
    # Count runs of consecutive True values of at least clip_run samples.
    edges = np.diff(np.concatenate([[0], at_peak.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int(np.count_nonzero(ends - starts >= cfg.clip_run)) >= cfg.clip_min_runs


def check_note(note: Audio, cfg: FilterConfig, measure_pitch: bool = True) -> NoteCheck:
    """Level checks and (optionally) a pitch measurement of one rendered mono note (not normalised)."""
    raw = note.samples
    if is_silent(note, cfg):
        return NoteCheck("silent", float("nan"), 0.0)
    if is_clipped(raw, cfg):
        return NoteCheck("clipped", float("nan"), 0.0)
    if not measure_pitch:
        return NoteCheck("", float("nan"), 0.0)
    peak = float(np.abs(raw).max())
    est = estimate_pitch(Audio((raw / peak).astype(np.float32), note.sample_rate))
    return NoteCheck("", float(est.midi), float(est.confidence))


def decide_pitched(keys: np.ndarray, checks: list[NoteCheck], nominal: bool, cfg: FilterConfig) -> tuple[bool, float]:
    """(pitched, agreement): agreement is the share of confident notes measured at their key."""
    est = np.array([c.pitch_estimate for c in checks], dtype=np.float64)
    conf = np.array([c.confidence for c in checks])
    confident = np.isfinite(est) & (conf >= cfg.min_confidence)
    if not confident.any():
        return False, 0.0
    agree = np.abs(est[confident] - keys[confident]) <= cfg.tolerance_semitones
    agreement = float(agree.mean())
    return nominal and agreement >= cfg.pitched_agreement, agreement


def final_reasons(keys: np.ndarray, checks: list[NoteCheck], pitched: bool, cfg: FilterConfig) -> list[str]:
    """Reason per note after the instrument-level decision (mistuned only applies to pitched ones).

    A pitched instrument's note is mistuned when its measurement is confident and off by more than
    the tolerance, and of unclear pitch when no confident measurement exists.
    """
    reasons = []
    for key, c in zip(keys, checks):
        if c.reason:
            reasons.append(c.reason)
        elif pitched and c.confidence < cfg.min_confidence:
            reasons.append("unclear_pitch")
        elif pitched and abs(c.pitch_estimate - key) > cfg.tolerance_semitones:
            reasons.append("mistuned")
        else:
            reasons.append("")
    return reasons
