"""Mixes of n sounds: pad weights, the n-way conditioning (plain and refined) and rendering a Mix."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.instrument import Engine
from engine.mix import CORNERS, Mix, as_mix, bilinear_weights, pad_weights
from engine.refine import RefineConfig
from models.errors import UserError
from models.signal.audio import Audio
from models.signal.tones import plucked_string
from tests.test_engine import make_engine, tone
from tests.test_engine_fakes import write_fake_weights

QUICK_REFINE = RefineConfig(steps=2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def engine(weights: Path) -> Engine:
    return make_engine(weights)


@pytest.fixture()
def quad(engine: Engine) -> list:
    """Four sounds at roots 48, 55, 60 and 67."""
    return [engine.load_sample(tone(48, seed=1), name="low", midi=48),
            engine.load_sample(Audio(plucked_string(55, duration_s=1.2), 16000), name="pluck", midi=55),
            engine.load_sample(tone(60, seed=2), name="mid", midi=60),
            engine.load_sample(tone(67, seed=3), name="high", midi=67)]


@pytest.mark.parametrize("x, y", [(0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5), (0.3, 0.8), (-1, 2)])
def test_bilinear_weights_add_up_to_one_and_corners_are_single_sounds(x: float, y: float) -> None:
    w = bilinear_weights(x, y)
    assert math.fsum(w) == pytest.approx(1.0, abs=1e-12) and all(0 <= v <= 1 for v in w)
    corner = {(0, 0): 0, (1, 0): 1, (0, 1): 2, (1, 1): 3}.get((x, y))
    if corner is not None:
        assert w == tuple(1.0 if i == corner else 0.0 for i in range(4))
    assert bilinear_weights(0.5, 0.5) == (0.25, 0.25, 0.25, 0.25)
    assert bilinear_weights(0.25, 0.0) == (0.75, 0.25, 0.0, 0.0)   # the top edge is the A <-> B slider


def test_pad_weights_spread_an_empty_corner_over_the_filled_ones() -> None:
    full = pad_weights(0.3, 0.6, CORNERS)
    assert list(full) == list(CORNERS) and math.fsum(full.values()) == pytest.approx(1.0)
    three = pad_weights(1.0, 1.0, ["A", "B", "C"])                 # at the empty corner: an even blend
    assert three == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})
    assert pad_weights(0.0, 1.0, ["C", "A", "B"]) == {"A": 0.0, "B": 0.0, "C": 1.0}
    assert pad_weights(0.7, 0.2, ["D"]) == {"D": 1.0}
    with pytest.raises(UserError, match="at least one sound"):
        pad_weights(0.5, 0.5, [])


def test_mix_checks_its_weights(quad: list) -> None:
    a, b = quad[:2]
    for weights, message in [((0.5,), "one weight per sound"), ((0.7, 0.7), "add up to 1"),
                             ((1.5, -0.5), "within"), ((math.nan, 1.0), "within")]:
        with pytest.raises(UserError, match=message):
            Mix.of([a, b], weights)
    with pytest.raises(UserError, match="alpha"):
        as_mix(a, b, 1.5)
    mix = Mix.of(quad, [0.1, 0.2, 0.3, 0.4])
    assert mix.root_note == round(0.1 * 48 + 0.2 * 55 + 0.3 * 60 + 0.4 * 67) == 61
    assert mix.name == "low + pluck + mid + high"
    assert Mix.of([a, b], [1.0, 0.0]).sounding().sounds == (a,)


def test_n_way_h_is_the_weighted_sum_and_h_refines_it(engine: Engine, quad: list) -> None:
    weights = [0.1, 0.2, 0.3, 0.4]
    cond = engine.conditioning(Mix.of(quad, weights))
    expected = sum(w * engine.timbre(s) for s, w in zip(quad, weights))
    torch.testing.assert_close(cond.h, expected)
    assert cond.root_note == 61 and cond.deltas is not None and not cond.refined
    other = engine.conditioning(Mix.of(quad, [0.4, 0.3, 0.2, 0.1]))
    assert not torch.allclose(other.h, cond.h)
    assert any(not torch.allclose(other.deltas[n], cond.deltas[n]) for n in cond.deltas)   # H saw the mixed h
    hits = engine.cache.hits
    assert torch.equal(engine.conditioning(Mix.of(quad, weights)).h, cond.h) and engine.cache.hits == hits + 1


def test_two_sound_call_equals_its_mix(engine: Engine, quad: list) -> None:
    a, b = quad[:2]
    old, new = engine.conditioning(a, b, 0.3), engine.conditioning(Mix.of([a, b], [0.7, 0.3]))
    assert torch.equal(old.h, new.h) and old.root_note == new.root_note
    with pytest.raises(UserError, match="not both"):
        engine.conditioning(Mix.of([a, b], [0.7, 0.3]), b)


@pytest.mark.parametrize("refine", [None, QUICK_REFINE], ids=["plain", "refined"])
def test_each_corner_gives_exactly_its_single_sound(engine: Engine, quad: list, refine: RefineConfig | None) -> None:
    for corner, sound in zip(CORNERS, quad):
        weights = pad_weights(*{"A": (0, 0), "B": (1, 0), "C": (0, 1), "D": (1, 1)}[corner], CORNERS)
        mixed = engine.conditioning(Mix.of(quad, list(weights.values())), refine=refine)
        single = engine.conditioning(sound, refine=refine)
        assert torch.equal(mixed.h, single.h) and mixed.root_note == single.root_note == sound.root_note
        for name in single.deltas:
            assert torch.equal(mixed.deltas[name], single.deltas[name])
        if refine is not None:
            assert torch.equal(mixed.mel_correction, single.mel_correction)


def test_refined_mix_blends_each_refined_sound(engine: Engine, quad: list) -> None:
    weights = [0.5, 0.25, 0.25, 0.0]
    cond = engine.conditioning(Mix.of(quad, weights), refine=QUICK_REFINE)
    singles = [engine.refined(s, QUICK_REFINE) for s in quad[:3]]
    torch.testing.assert_close(cond.h, sum(w * c.h for c, w in zip(singles, weights)))
    for name in cond.deltas:
        torch.testing.assert_close(cond.deltas[name], sum(w * c.deltas[name] for c, w in zip(singles, weights)))
    torch.testing.assert_close(cond.mel_correction, sum(w * c.mel_correction for c, w in zip(singles, weights)))
    assert cond.refined and cond.root_note == round(0.5 * 48 + 0.25 * 55 + 0.25 * 60)
    assert not engine.refinement_cached(quad[3], QUICK_REFINE)     # weight 0: never refined


def test_render_takes_a_mix(engine: Engine, quad: list) -> None:
    mix = Mix.of(quad[:3], [0.2, 0.3, 0.5])
    keys = engine.render(mix, keys=range(55, 62))
    assert sorted(keys) == list(range(55, 62)) and all(np.isfinite(k.samples).all() for k in keys.values())
    corner = engine.render(Mix.of(quad[:3], [0.0, 1.0, 0.0]), keys=[57])
    single = engine.render(quad[1], keys=[57])
    np.testing.assert_array_equal(corner[57].samples, single[57].samples)
