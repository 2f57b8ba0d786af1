"""The shipped weights in assets/: they load on the CPU, fit together and render pitched keys.

These run the real networks (G 3.5 M parameters) on a demo one-shot from outside the data set.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.instrument import Engine, EngineConfig, default_weights_dir
from models.signal.audio import Audio
from models.checkpoint import read_tensors
from models.signal.pitch import estimate_pitch

ASSETS = default_weights_dir()
DEMO = ASSETS / "demo"
pytestmark = pytest.mark.skipif(not (ASSETS / "generator.safetensors").is_file(), reason="no shipped weights")


@pytest.fixture(scope="module")
def engine() -> Engine:
    # fewer Griffin-Lim iterations than the product: pitch survives them and the test stays quick
    return Engine(device="cpu", vocoder="griffinlim", cfg=EngineConfig(output_rate=16000, griffin_lim_iters=8))


def test_shipped_files_are_float16_with_configs():
    names = ["features", "generator", "pitch_classifier", "instrument_classifier"]
    names += [n for n in ("vocoder", "hyper") if (ASSETS / f"{n}.safetensors").is_file()]
    for name in names:
        tensors, meta = read_tensors(ASSETS / f"{name}.safetensors")
        assert {"kind", "config", "mel", "step"} <= set(meta)
        assert all(str(v.dtype) == "torch.float16" for v in tensors.values() if v.is_floating_point())
        json.loads(meta["config"])
    total = sum(p.stat().st_size for p in ASSETS.glob("*.safetensors"))
    assert total < 26 << 20  # the shipped-model budget, raised for H: assets/MODEL_CARD.md "Size"


@pytest.mark.slow
def test_all_88_keys_render_from_a_demo_sound(engine: Engine):
    sample = engine.load_sample(DEMO / "saw_pad.wav")
    assert sample.root_note == 48
    waves = engine.render_waves(engine.conditioning(sample), list(range(21, 109)), 16000)
    assert waves.shape[0] == 88 and np.isfinite(waves).all()
    peaks = np.abs(waves).max(axis=1)
    assert (peaks > 1e-3).all(), "a key rendered silent"
    # an independent pitch estimate on a spread of keys (the trained G puts them at their key)
    hits = [abs(estimate_pitch(Audio(waves[k - 21].astype(np.float32), 16000)).midi - k) <= 0.5
            for k in (36, 45, 52, 60, 67, 76, 84, 91)]
    assert sum(hits) >= 6, hits


@pytest.mark.skipif(not (ASSETS / "vocoder.safetensors").is_file(), reason="no shipped vocoder")
@pytest.mark.slow
def test_the_shipped_vocoder_is_the_default_and_keeps_pitch():
    engine = Engine(device="cpu", cfg=EngineConfig(output_rate=16000))
    assert engine.nets.vocoder_name == "neural"
    sample = engine.load_sample(DEMO / "pluck.wav")
    keys = [33, 45, 52, 60, 67, 76, 84, 96]
    waves = engine.render_waves(engine.conditioning(sample), keys, 16000)
    assert np.isfinite(waves).all() and (np.abs(waves).max(axis=1) > 1e-3).all()
    hits = [abs(estimate_pitch(Audio(w.astype(np.float32), 16000)).midi - k) <= 0.5 for w, k in zip(waves, keys)]
    assert sum(hits) >= 7, hits
