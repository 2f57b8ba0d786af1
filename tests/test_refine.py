"""Refinement (engine/refine.py through Engine.render) on the real networks at their tiny configs."""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.instrument import Engine, EngineConfig
from engine.refine import DEFAULT_REFINEMENT, RefineConfig, masked_l1, targets
from models.signal.audio import Audio
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_engine_real import REAL_MEL, write_tiny_weights

QUICK = replace(DEFAULT_REFINEMENT, steps=6)   # few steps: the tests check behaviour, not quality


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return write_tiny_weights(tmp_path_factory.mktemp("tiny"), steps=10)


@pytest.fixture
def engine(tiny_weights: Path) -> Engine:
    return Engine(tiny_weights, device="cpu", vocoder="griffinlim", num_threads=1,
                  cfg=EngineConfig(output_rate=16000, griffin_lim_iters=4))


def pluck(engine: Engine, midi: int = 52):
    return engine.load_sample(Audio(plucked_string(midi, duration_s=1.0), REAL_MEL.sample_rate), midi=midi)


def tone(engine: Engine, midi: int = 64):
    return engine.load_sample(Audio(harmonic_tone(midi, duration_s=1.0, decay_s=0.5), REAL_MEL.sample_rate),
                              midi=midi)


class StepCounter:
    """An ``on_refine`` callback counting optimisation steps; optionally sets ``cancel`` at a step."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.cancel = threading.Event()
        self.cancel_at = cancel_at

    def __call__(self, step: int, steps: int) -> None:
        self.steps.append((step, steps))
        if step == self.cancel_at:
            self.cancel.set()


def test_strength_scales_the_config_and_zero_turns_it_off() -> None:
    assert not DEFAULT_REFINEMENT.at_strength(0.0).enabled
    assert DEFAULT_REFINEMENT.at_strength(1.0) == DEFAULT_REFINEMENT
    double = DEFAULT_REFINEMENT.at_strength(2.0)
    assert double.steps == 2 * DEFAULT_REFINEMENT.steps and double.mel_correction == DEFAULT_REFINEMENT.mel_correction
    half = DEFAULT_REFINEMENT.at_strength(0.5)
    assert half.enabled and half.steps == round(DEFAULT_REFINEMENT.steps / 2)
    for bad in (-0.1, 2.5):
        with pytest.raises(ValueError, match="strength"):
            DEFAULT_REFINEMENT.at_strength(bad)
    with pytest.raises(ValueError):
        RefineConfig(key_offsets=(-7, 7))          # the root itself must be a target


def test_refinement_is_cached_per_sound_and_config(engine: Engine) -> None:
    sample = pluck(engine)
    first = StepCounter()
    assert not engine.refinement_cached(sample, QUICK)
    keys = engine.render(sample, keys=[52, 53], refine=QUICK, on_refine=first)
    assert set(keys) == {52, 53} and first.steps == [(i, QUICK.steps) for i in range(1, QUICK.steps + 1)]
    assert engine.refinement_cached(sample, QUICK)
    again = StepCounter()
    repeat = engine.render(pluck(engine), keys=[52, 53], refine=QUICK, on_refine=again)
    assert again.steps == []                                       # no optimisation the second time
    for midi in keys:
        np.testing.assert_array_equal(keys[midi].samples, repeat[midi].samples)
    other = StepCounter()
    engine.render(sample, keys=[52], refine=replace(QUICK, steps=4), on_refine=other)
    assert len(other.steps) == 4                                   # another config is refined anew
    moved = engine.load_sample(sample.audio, midi=55)              # so is another root
    assert not engine.refinement_cached(moved, QUICK)


def test_a_cancel_from_on_refine_stops_it_and_renders_nothing(engine: Engine) -> None:
    sample = pluck(engine)
    counter = StepCounter(cancel_at=2)
    keys = engine.render(sample, keys=[52, 53], refine=QUICK, on_refine=counter, cancel=counter.cancel)
    assert keys == {} and len(counter.steps) == 2
    assert not engine.refinement_cached(sample, QUICK)             # a cut-short refinement is not kept
    assert engine.refined(sample, QUICK).refined                   # and runs whole next time
    assert engine.refinement_cached(sample, QUICK)


@pytest.mark.parametrize("correction", [0.0, 1.0], ids=["steps only", "with correction"])
def test_refinement_brings_the_root_closer_to_the_sound(engine: Engine, correction: float) -> None:
    sample = pluck(engine)
    cfg = replace(DEFAULT_REFINEMENT, mel_correction=correction)
    wave = torch.from_numpy(sample.audio.samples)
    _, target = targets(wave / wave.abs().max(), sample.root_note, engine._log_mel, cfg, 21, 108)

    def root_l1(cond) -> float:
        return masked_l1(engine.render_mels(cond, [sample.root_note])[0], target[0], cfg.dynamic_range_db).item()

    before, after = root_l1(engine.conditioning(sample)), root_l1(engine.refined(sample, cfg))
    assert after < 0.9 * before, (before, after)


def test_a_mix_of_refined_sounds_at_its_ends_is_each_refined_sound(engine: Engine) -> None:
    a, b = pluck(engine), tone(engine)
    keys = [58, 60]
    only_a = engine.render(a, keys=keys, refine=QUICK)
    only_b = engine.render(b, keys=keys, refine=QUICK)
    at_0 = engine.render(a, b, alpha=0.0, keys=keys, refine=QUICK)
    at_1 = engine.render(a, b, alpha=1.0, keys=keys, refine=QUICK)
    for midi in keys:
        np.testing.assert_allclose(at_0[midi].samples, only_a[midi].samples, atol=1e-5)
        np.testing.assert_allclose(at_1[midi].samples, only_b[midi].samples, atol=1e-5)
    half = engine.conditioning(a, b, 0.5, refine=QUICK)
    ca, cb = engine.refined(a, QUICK), engine.refined(b, QUICK)
    assert half.refined and torch.allclose(half.h, 0.5 * (ca.h + cb.h))
    assert torch.allclose(half.mel_correction, 0.5 * (ca.mel_correction + cb.mel_correction))
