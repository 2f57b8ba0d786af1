"""Playing the sample itself near its root: weights, the keys it replaces, and what it leaves alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.instrument import Engine, EngineConfig, NearRoot
from engine.keys import loudness_db
from engine.refine import repitch
from models.signal.audio import Audio
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_engine_real import REAL_MEL, write_tiny_weights


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    torch.set_num_threads(1)
    weights = write_tiny_weights(tmp_path_factory.mktemp("tiny"))
    return Engine(weights, device="cpu", vocoder="griffinlim", num_threads=1,
                  cfg=EngineConfig(output_rate=REAL_MEL.sample_rate, griffin_lim_iters=4))


def test_weights_are_one_inside_and_fade_out_beyond() -> None:
    near = NearRoot(sample=None, semitones=2, fade=2)  # type: ignore[arg-type]
    assert [near.weight(o) for o in (0, 1, -2)] == [1.0, 1.0, 1.0]
    assert near.weight(3) == pytest.approx(2 / 3) and near.weight(-4) == pytest.approx(1 / 3)
    assert near.weight(5) == 0.0 and near.weight(-12) == 0.0


def test_repitch_moves_the_pitch_by_the_ratio() -> None:
    tone = torch.from_numpy(harmonic_tone(60, n_harmonics=1, duration_s=1.0))
    up = repitch(tone, 7, 16000).numpy()
    spectrum = np.abs(np.fft.rfft(up[:8000] * np.hanning(8000)))
    peak_hz = np.argmax(spectrum) * 16000 / 8000
    assert peak_hz == pytest.approx(261.63 * 2 ** (7 / 12), rel=0.01)
    assert up.shape == tone.shape


@pytest.mark.slow
def test_keys_near_the_root_are_the_sample_and_far_keys_are_untouched(engine: Engine) -> None:
    rate = REAL_MEL.sample_rate
    sample = engine.load_sample(Audio(plucked_string(60, duration_s=1.0), rate), midi=60)
    keys = [60, 61, 63, 70]
    cond = engine.conditioning(sample)
    plain = engine.render_waves(cond, keys, rate)
    near = engine.render_waves(cond, keys, rate, NearRoot(sample, 1, fade=2))
    source = torch.from_numpy(sample.audio.samples)
    for i, key in enumerate(keys[:2]):  # inside: the sample itself, at the generated note's level
        played = repitch(source, key - 60, rate).numpy()
        gain = 10 ** ((loudness_db(Audio(plain[i], rate)) - loudness_db(Audio(played.astype(np.float32), rate))) / 20)
        np.testing.assert_allclose(near[i], gain * played, atol=1e-5)
    assert not np.allclose(near[2], plain[2]) and not np.allclose(near[2], near[0])   # cross-faded
    np.testing.assert_array_equal(near[3], plain[3])                                   # beyond the fade


def test_render_option_applies_to_single_sounds_only(engine: Engine) -> None:
    rate = REAL_MEL.sample_rate
    a = engine.load_sample(Audio(plucked_string(60, duration_s=1.0), rate), midi=60)
    b = engine.load_sample(Audio(harmonic_tone(64, duration_s=1.0), rate), midi=64)
    plain = engine.render(a, keys=[60], sample_rate=rate)[60].samples
    near = engine.render(a, keys=[60], sample_rate=rate, near_root=2)[60].samples
    assert not np.allclose(plain, near)
    mix_plain = engine.render(a, b, 0.5, keys=[62], sample_rate=rate)[62].samples
    mix_near = engine.render(a, b, 0.5, keys=[62], sample_rate=rate, near_root=2)[62].samples
    np.testing.assert_array_equal(mix_plain, mix_near)
