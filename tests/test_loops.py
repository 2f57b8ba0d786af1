"""Sustain loops: inside the sample, period-aligned, click-free at the seam and when played straight on."""
from __future__ import annotations

import numpy as np
import pytest

from engine.loops import LoopConfig, crossfade_loop, find_loop, make_loop, seam_jump
from models.signal.audio import Audio
from models.units import midi_to_hz
from models.signal.tones import harmonic_tone, plucked_string


def _straight_jump(y: np.ndarray, end: int) -> tuple[float, float]:
    """Second difference where straight playback crosses the loop end, and the typical one around it."""
    seam = abs(y[end] - 2 * y[end - 1] + y[end - 2])
    around = np.abs(np.diff(y[end - 2000: end + 2000], 2))
    return float(seam), float(np.percentile(around, 95))


@pytest.mark.parametrize("sample_rate", [16000, 48000])
@pytest.mark.parametrize("midi", [24, 45, 60, 81, 105])
def test_loop_inside_aligned_and_click_free(midi: int, sample_rate: int) -> None:
    x = harmonic_tone(midi, sample_rate=sample_rate, duration_s=2.0, decay_s=1.2, seed=midi)
    looped, start, end = make_loop(Audio(x, sample_rate), midi_to_hz(midi))
    y = looped.samples
    assert looped.sample_rate == sample_rate and len(y) == len(x)
    cfg = LoopConfig()
    fade = int(cfg.crossfade_s * sample_rate)
    assert fade <= start < end and end + fade <= len(x) - int(cfg.tail_s * sample_rate)
    # Whole periods (the tone is exactly at its nominal pitch): within a tenth of a period.
    periods = (end - start) * midi_to_hz(midi) / sample_rate
    assert abs(periods - round(periods)) < 0.1, periods
    assert abs((end - start) / sample_rate - cfg.target_s) < 2 / midi_to_hz(midi) + 0.01
    # In the decay, after the attack.
    assert start > 0.1 * sample_rate
    seam, typical = seam_jump(y, start, end)
    assert seam <= 2 * typical, (seam, typical)
    straight, around = _straight_jump(y, end)
    assert straight <= 1.5 * around, (straight, around)


@pytest.mark.parametrize("midi", [40, 64])
def test_pluck_loop_has_no_level_dip(midi: int) -> None:
    """A decaying, slightly inharmonic string: the cross-fade must not cancel (phase-matched points)."""
    sr = 16000
    x = plucked_string(midi, sample_rate=sr, duration_s=2.0, seed=1)
    y, start, end = make_loop(Audio(x, sr), midi_to_hz(midi))
    y = y.samples
    fade = int(LoopConfig().crossfade_s * sr)
    # Play the loop twice around the seam, as a held voice would.
    held = np.concatenate([y[end - 4 * fade: end], y[start: start + 4 * fade]])
    frame = fade // 2
    rms = np.sqrt(np.mean(held[: len(held) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    dips = 20 * np.log10(rms[1:-1] / np.maximum(rms[:-2], rms[2:]))
    assert dips.min() > -1.5, dips.min()
    # Levelled: a held note does not pulse by the decay across each pass.
    steps = 20 * np.log10(rms[1:] / rms[:-1])
    assert np.abs(steps).max() < 1.5, steps
    seam, typical = seam_jump(y, start, end)
    assert seam <= 2 * typical


def test_seam_metric_detects_a_click() -> None:
    """The click measure is not blind: a loop at arbitrary points without cross-fade scores badly."""
    sr = 16000
    x = harmonic_tone(57, sample_rate=sr, duration_s=2.0)
    start, end = 8000, 8000 + 4000 + 37     # 37 samples off the period grid, not at a zero crossing
    seam, typical = seam_jump(x, start, end)
    assert seam > 4 * typical


def test_crossfade_leaves_the_rest_untouched() -> None:
    x = harmonic_tone(50, duration_s=1.5, decay_s=0.7)
    y = crossfade_loop(x, 6000, 10000, 400)
    assert np.array_equal(y[:9600], x[:9600]) and np.array_equal(y[10400:], x[10400:])
    assert y[9999] == pytest.approx(x[5999]) and y[10000] == pytest.approx(x[6000])
    assert not np.shares_memory(x, y)


@pytest.mark.parametrize("kind", ["silence", "noise", "short", "tiny"])
def test_degenerate_inputs_still_give_a_valid_loop(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = {"silence": np.zeros(32000, np.float32),
         "noise": rng.uniform(-0.5, 0.5, 32000).astype(np.float32),
         "short": harmonic_tone(60, duration_s=0.1),
         "tiny": harmonic_tone(60, duration_s=0.005)}[kind]
    start, end = find_loop(Audio(x, 16000), midi_to_hz(21))
    assert 0 <= start < end <= len(x)
    y = crossfade_loop(x, start, end, 640)
    assert y.shape == x.shape and np.isfinite(y).all()
