"""engine/onset.py: softer layers' slower attacks keep the note's peak and length."""
from __future__ import annotations

import numpy as np
import pytest

from engine.onset import slow_attack
from models.evaluation.note_shape import attack_time_s
from models.signal.tones import harmonic_tone, plucked_string


@pytest.mark.parametrize("ratio", [1.5, 3.0])
@pytest.mark.parametrize("name", ["pluck", "tone"])
def test_a_slower_attack_keeps_the_peak_and_the_length(name: str, ratio: float) -> None:
    wave = plucked_string(52, duration_s=1.0) if name == "pluck" else harmonic_tone(60, decay_s=0.8)
    before = wave.copy()
    out = slow_attack(wave, 16000, ratio)
    assert out.dtype == np.float32 and out.shape == wave.shape and np.array_equal(wave, before)
    assert np.abs(out).max() == pytest.approx(np.abs(wave).max(), rel=1e-5)
    assert attack_time_s(out, 16000) >= ratio * max(attack_time_s(wave, 16000), 0.002) * 0.99
    assert attack_time_s(out, 16000) <= 3 * ratio * max(attack_time_s(wave, 16000), 0.002)
    assert_scaled(out[8000:], wave[8000:])                              # past the fade: the note, scaled


def assert_scaled(a: np.ndarray, b: np.ndarray) -> None:
    gain = float(a @ b / (b @ b))
    np.testing.assert_allclose(a, gain * b, atol=1e-6 * np.abs(a).max())


def test_no_slower_attack_leaves_the_wave_alone() -> None:
    wave = harmonic_tone(60)
    assert slow_attack(wave, 16000, 1.0) is wave and slow_attack(wave, 16000, 0.8) is wave
    silent = np.zeros(16000, np.float32)
    assert slow_attack(silent, 16000, 2.0) is silent


def test_an_unreachable_attack_gets_the_longest_fade() -> None:
    wave = harmonic_tone(60, decay_s=0.8)
    out = slow_attack(wave, 16000, 1000.0, max_fade_s=0.05)
    assert_scaled(out[800:], wave[800:])
    assert abs(out[0]) < 1e-6 and attack_time_s(out, 16000) < 1000 * attack_time_s(wave, 16000)


def test_the_fade_starts_where_the_note_does() -> None:
    tone = harmonic_tone(60, decay_s=0.8)
    wave = np.concatenate([np.zeros(4000, np.float32), tone])
    out = slow_attack(wave, 16000, 2.0)
    assert not out[:4000].any() and out[4000:4100].any()
    assert attack_time_s(out, 16000) >= 2.0 * attack_time_s(wave, 16000) * 0.99
