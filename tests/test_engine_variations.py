"""Round robins and velocity layers rendered by the engine on the tiny real networks."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.instrument import Engine
from engine.key_cache import Variations
from engine.refine import FarKeys
from engine.variations import VELOCITY_FILE, load_velocity_timbre, save_velocity_timbre, variant
from models.errors import CheckpointError
from models.signal.audio import Audio
from models.signal.tones import plucked_string
from tests.test_engine_real import write_tiny_weights

KEYS = [50, 52, 55]


def write_tiny_velocity(folder: Path, h_dim: int = 16, seed: int = 0, n_mels: int = 32) -> Path:
    """A velocity timbre for tiny weights: offsets growing linearly with velocity along a seeded
    direction; a tilt basis rising towards high bins (softer: duller); attacks up to 1.5 times as long."""
    velocities = np.array([12.0, 30.0, 64.0, 100.0, 127.0])
    direction = torch.randn(h_dim, generator=torch.Generator().manual_seed(seed))
    offsets = torch.from_numpy((velocities - 100.0) / 100.0).float()[:, None] * direction[None]
    save_velocity_timbre(folder / VELOCITY_FILE, velocities, (velocities - 100.0) / 100.0, offsets,
                         torch.linspace(0.0, 2.0, n_mels), attack_log_slope=float(np.log(1.5)) / 0.88,
                         meta={"fitted_on": "test"})
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
    assert softer.attack_ratio == pytest.approx(velocity.attack_ratio(22, 100)) and softer.attack_ratio > 1
    moved = variant(cond, 0, 0, replace(v, velocity_strength=1.0, velocity_tilt=0.0, velocity_attack=0.0), velocity,
                    engine.nets.z_dim)
    assert moved.mel_correction is None and moved.attack_ratio == 1.0 and not torch.equal(moved.h, cond.h)
    assert moved.h.square().mean().item() == pytest.approx(1.0, rel=1e-4)   # h stays on f's sphere
    assert torch.allclose(velocity.shift(100, 100), torch.zeros(cond.h.shape[1]))
    assert torch.allclose(velocity.tilt(100, 100), torch.zeros(velocity.tilt_basis.shape[0]))
    assert velocity.attack_ratio(100, 100) == 1.0


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
    far = FarKeys(cond.deltas, 2 * per_frame, 6.0, 6.0)                 # far keys get the same tilt
    softer = variant(replace(refined, far=far), 0, 0, v, velocity, engine.nets.z_dim)
    assert torch.allclose(softer.far.mel_correction, 2 * per_frame + tilt[:, None])


def test_a_missing_or_mismatched_velocity_timbre_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="velocity layers need"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 16)
    write_tiny_velocity(tmp_path, h_dim=8)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 16)
    with pytest.raises(CheckpointError, match="mel bins"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 8, n_mels=64)


@pytest.mark.parametrize("fmt", ["hypergan/velocity-timbre/1", "hypergan/velocity-timbre/2"])
def test_an_older_velocity_timbre_is_a_clear_error(tmp_path: Path, fmt: str) -> None:
    from safetensors.torch import save_file

    save_file({"velocities": torch.tensor([30.0, 100.0]), "offsets": torch.zeros(2, 8),
               "mel_gains": torch.zeros(2, 32)}, str(tmp_path / VELOCITY_FILE), metadata={"format": fmt, "meta": "{}"})
    with pytest.raises(CheckpointError, match=f"format {fmt} .* no longer read; refit it with .*bench.velocity_timbre"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 8, n_mels=32)


def test_a_velocity_timbre_round_trips_and_checks_its_curve(tmp_path: Path) -> None:
    write_tiny_velocity(tmp_path, h_dim=8)
    velocity = load_velocity_timbre(tmp_path / VELOCITY_FILE, 8, n_mels=32)
    assert velocity.attack_ratio(12, 100) == pytest.approx(1.5) and velocity.curve[3] == 0.0
    assert velocity.meta == {"fitted_on": "test"} and velocity.velocities.tolist() == [12, 30, 64, 100, 127]
    flat = velocity.curve.copy()
    flat[1] = flat[0]
    save_velocity_timbre(tmp_path / VELOCITY_FILE, velocity.velocities, flat, velocity.offsets, velocity.tilt_basis,
                         attack_log_slope=0.1, meta={})
    with pytest.raises(CheckpointError, match="rise strictly"):
        load_velocity_timbre(tmp_path / VELOCITY_FILE, 8)


def test_the_tilt_and_attack_are_monotone_and_every_layer_count_gets_distinct_layers(engine: Engine) -> None:
    velocity = load_velocity_timbre(engine.weights_dir / VELOCITY_FILE, engine.nets.f.cfg.h_dim)
    tilts = torch.stack([velocity.tilt(v, 100) for v in range(1, 128)])      # [127, n_mels]
    steps = tilts[1:] - tilts[:-1]
    assert bool((steps * velocity.tilt_basis.sign() >= 0).all())            # each bin moves one way only
    ratios = [velocity.attack_ratio(v, 100) for v in range(1, 128)]
    assert all(a >= b for a, b in zip(ratios, ratios[1:])) and ratios[0] > 1.0 > ratios[-1]
    for n in range(2, 6):
        v = Variations(velocity_layers=n, round_robins=1)
        layer_tilts = [velocity.tilt(v.layer_velocity(layer), v.reference_velocity) for layer in range(n)]
        gaps = [float((a - b).abs().max()) for i, a in enumerate(layer_tilts) for b in layer_tilts[i + 1:]]
        assert min(gaps) > 0.01                                              # no two layers alike


def test_a_softer_layer_renders_with_a_slower_attack(engine: Engine) -> None:
    from engine.onset import slow_attack

    sample = engine.load_sample(Audio(plucked_string(52, duration_s=1.0), 16000))
    cond = engine.conditioning(sample)
    plain = engine.render_waves(cond, [52, 55], 16000)
    slower = engine.render_waves(replace(cond, attack_ratio=2.0), [52, 55], 16000)
    assert slower.shape == plain.shape and not np.array_equal(slower, plain)
    for a, b in zip(slower, plain):
        np.testing.assert_array_equal(a, slow_attack(b, 16000, 2.0))
