"""Round robins and velocity layers rendered by the engine on the tiny real networks."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.instrument import Engine
from engine.key_cache import Variations
from engine.variations import VELOCITY_FILE, load_velocity_timbre, save_velocity_timbre, variant
from models.errors import CheckpointError
from models.signal.audio import Audio
from models.signal.tones import plucked_string
from tests.test_engine_real import write_tiny_weights

KEYS = [50, 52, 55]


def write_tiny_velocity(folder: Path, h_dim: int = 16, seed: int = 0, n_mels: int = 32) -> Path:
    """A velocity timbre for tiny weights: offsets growing linearly with velocity along a seeded
    direction; mel gains a tilt falling towards high bins, steeper the softer."""
    velocities = np.array([30.0, 64.0, 100.0, 127.0])
    direction = torch.randn(h_dim, generator=torch.Generator().manual_seed(seed))
    offsets = torch.from_numpy((velocities - 100.0) / 100.0).float()[:, None] * direction[None]
    mel_gains = torch.from_numpy((velocities - 100.0) / 100.0).float()[:, None] * torch.linspace(0, 1, n_mels)[None]
    save_velocity_timbre(folder / VELOCITY_FILE, velocities, offsets, {"fitted_on": "test"}, mel_gains)
    return folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    torch.set_num_threads(1)
    folder = write_tiny_velocity(write_tiny_weights(tmp_path_factory.mktemp("tiny"), steps=10))
    return Engine(folder, device="cpu", vocoder="griffinlim", num_threads=1)


def test_variations_render_after_the_main_keys_and_differ(engine: Engine) -> None:
    sample = engine.load_sample(Audio(plucked_string(52, duration_s=1.0), 16000))
    main = engine.render(sample, keys=KEYS, sample_rate=16000, refine=None)
    v = Variations(round_robins=2, velocity_layers=3)
    landed = []
    variants = engine.render_variations(sample, variations=v, keys=KEYS, sample_rate=16000,
                                        on_variant=lambda m, layer, rr, key: landed.append((m, layer, rr)))
    assert len(variants) == len(KEYS) * (v.count - 1) and (52, v.main_layer, 0) not in variants
    assert landed[:3] == [(52, 1, 0), (50, 1, 0), (55, 1, 0)]           # a pass at a time, outward
    for (midi, layer, rr), key in variants.items():
        assert key.root_note == midi and key.samples.dtype == np.float32
        assert not np.array_equal(key.samples, main[midi].samples)
    again = engine.render(sample, keys=KEYS, sample_rate=16000, refine=None)   # the main render is unchanged
    assert all(np.array_equal(again[k].samples, main[k].samples) for k in KEYS)


def test_variations_of_a_mix_are_the_mix_s(engine: Engine) -> None:
    from engine.mix import Mix

    a, b, c = (engine.load_sample(Audio(plucked_string(midi, duration_s=1.0, seed=seed), 16000), name=name)
               for midi, seed, name in ((52, 0, "a"), (55, 1, "b"), (48, 2, "c")))
    v = Variations(round_robins=2, velocity_layers=2)
    run = lambda sounds: engine.render_variations(sounds, variations=v, keys=[52], sample_rate=16000)  # noqa: E731
    alone, corner, blend = run(a), run(Mix.of([a, b, c], [1.0, 0.0, 0.0])), run(Mix.of([a, b, c], [0.4, 0.3, 0.3]))
    assert alone.keys() == corner.keys() == blend.keys() and len(blend) == v.count - 1
    for name, key in blend.items():
        assert np.array_equal(corner[name].samples, alone[name].samples)     # all of a: a's own variations
        assert not np.allclose(key.samples, alone[name].samples)             # the blend's, not sound a's


def test_variant_conditioning_moves_z_and_h_as_configured(engine: Engine) -> None:
    sample = engine.load_sample(Audio(plucked_string(52, duration_s=1.0), 16000))
    cond = engine.conditioning(sample)
    velocity = load_velocity_timbre(engine.weights_dir / VELOCITY_FILE, cond.h.shape[1])
    v = Variations(round_robins=3, velocity_layers=3, rr_h_scale=0.0, rr_z_scale=1.0, velocity_strength=0.0,
                   velocity_tilt=1.0)
    same_h = variant(cond, v.main_layer, 1, v, velocity, engine.nets.z_dim)
    assert torch.equal(same_h.h, cond.h) and same_h.z is not None and same_h.deltas is cond.deltas
    moved_h = variant(cond, v.main_layer, 2, Variations(), velocity, engine.nets.z_dim)   # the defaults: h only
    assert moved_h.z is None and (moved_h.h - cond.h).square().mean().sqrt().item() == pytest.approx(0.1, rel=0.3)
    softer = variant(cond, 0, 0, v, velocity, engine.nets.z_dim)          # a tilt, h kept
    assert softer.z is None and torch.equal(softer.h, cond.h)
    tilt = velocity.tilt(v.layer_velocity(0), v.reference_velocity)
    assert softer.mel_correction is not None and torch.allclose(softer.mel_correction, tilt)
    assert softer.mel_correction[-1] < softer.mel_correction[0] <= 0      # softer: duller
    moved = variant(cond, 0, 0, replace(v, velocity_strength=1.0, velocity_tilt=0.0), velocity, engine.nets.z_dim)
    assert moved.mel_correction is None and not torch.equal(moved.h, cond.h)
    assert moved.h.square().mean().item() == pytest.approx(1.0, rel=1e-4)   # h stays on f's sphere
    assert torch.allclose(velocity.shift(100, 100), torch.zeros(cond.h.shape[1]))
    assert torch.allclose(velocity.tilt(100, 100), torch.zeros(velocity.mel_gains.shape[1]))


def test_the_tilt_adds_to_a_refined_mel_correction(engine: Engine) -> None:
    sample = engine.load_sample(Audio(plucked_string(52, duration_s=1.0), 16000))
    cond = engine.conditioning(sample)
    velocity = load_velocity_timbre(engine.weights_dir / VELOCITY_FILE, cond.h.shape[1])
    v = Variations(round_robins=1, velocity_layers=3, velocity_tilt=1.0)
    tilt = velocity.tilt(v.layer_velocity(0), v.reference_velocity)
    per_frame = torch.ones(tilt.shape[0], 5)
    refined = replace(cond, mel_correction=per_frame)
    assert torch.allclose(variant(refined, 0, 0, v, velocity, engine.nets.z_dim).mel_correction, per_frame + tilt[:, None])
    assert variant(refined, v.main_layer, 0, v, velocity, engine.nets.z_dim).mel_correction is per_frame


def test_a_missing_or_mismatched_velocity_timbre_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="velocity layers need"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 16)
    write_tiny_velocity(tmp_path, h_dim=8)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 16)
    with pytest.raises(CheckpointError, match="mel bins"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 8, n_mels=64)


def test_a_format_1_velocity_timbre_still_loads_without_a_tilt(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"velocities": torch.tensor([30.0, 100.0]), "offsets": torch.zeros(2, 8)}, str(tmp_path / VELOCITY_FILE),
              metadata={"format": "hypergan/velocity-timbre/1", "meta": "{}"})
    velocity = load_velocity_timbre(tmp_path / VELOCITY_FILE, 8, n_mels=32)
    assert velocity.mel_gains is None and velocity.tilt(30, 100) is None
