"""The loop's parts: typed ``--set`` overrides, sharded state, optimiser / scaler / RNG round trips."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from models.errors import UserError
from models.train import resume
from models.train.overrides import Overrides


@dataclass(frozen=True)
class Inner:
    width: int = 4


@dataclass(frozen=True)
class Settings:
    lr: float = 1e-3
    steps: int = 10
    name: str = "a"
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[int, float] = (1, 2.0)
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_overrides_are_typed_by_the_annotations():
    ov = Overrides(["lr=1", "steps=7", "name=b", "flag=on", "sizes=3,4,5", "pair=2,0.5", "limit=none", "G.width=8"])
    cfg = ov.apply(Settings())
    assert cfg == Settings(lr=1.0, steps=7, name="b", flag=True, sizes=(3, 4, 5), pair=(2, 0.5), limit=None)
    assert isinstance(cfg.lr, float)
    assert ov.apply(Inner(), "G") == Inner(width=8)
    ov.check_all_used()
    assert Overrides(["limit=12"]).apply(Settings()).limit == 12


@pytest.mark.parametrize("item, message", [
    ("flag=maybe", "bad value for flag"), ("steps=1.5", "bad value for steps"), ("pair=1", "bad value for pair"),
    ("inner=3", "bad value for inner"), ("lr", "expects key=value")])
def test_bad_values_are_clear_errors(item, message):
    with pytest.raises(UserError, match=message):
        Overrides([item]).apply(Settings())


def test_an_unknown_key_names_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown setting 'stpes'; known: .*lr.*steps"):
        Overrides(["stpes=3"]).apply(Settings())
    with pytest.raises(UserError, match=r"unknown setting 'G.widht'; known: G.width"):
        Overrides(["G.widht=3"]).apply(Inner(), "G")


def test_an_assignment_no_config_took_is_an_error():
    """A mistyped prefix (``GG.``) or one the stage does not have is not silently dropped."""
    ov = Overrides(["lr=2", "GG.width=3"])
    ov.apply(Settings())
    ov.apply(Inner(), "G")
    with pytest.raises(UserError, match=r"unknown setting 'GG.width'; known: .*G\.width"):
        ov.check_all_used()


def test_large_tensors_are_split_and_every_shard_stays_under_the_limit(tmp_path):
    tensors = {"big": torch.randn(1000, 37), "small": torch.arange(10), "scalar": torch.tensor(2.5)}
    limit = 40_000  # bytes of tensor data per shard: "big" (148 kB) needs four parts
    paths = resume.save_tensor_state(tmp_path, "state", tensors, {"step": 3}, shard_bytes=limit)
    assert len(paths) >= 4
    for p in paths:
        assert p.stat().st_size < limit + 4096
    back, meta = resume.load_state(tmp_path, "state")
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)
    resume.save_tensor_state(tmp_path, "state", {"small": tensors["small"]}, {"step": 4})
    assert len(list(tmp_path.glob("state-*.safetensors"))) == 1  # stale shards go


def _trained(opt_cls, steps: int = 3, **kwargs):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    opt = opt_cls(net.parameters(), **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(16, 4)).square().mean().backward()
        opt.step()
    return net, opt


@pytest.mark.parametrize("opt_cls, kwargs", [
    (torch.optim.Adam, {"lr": 1e-2, "betas": (0.0, 0.99)}), (torch.optim.AdamW, {"lr": 1e-2}),
    (torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9})])
def test_optimiser_state_round_trips_exactly_in_float32(opt_cls, kwargs):
    net, opt = _trained(opt_cls, **kwargs)
    names = resume.parameter_names({"net": net})
    tensors, meta = resume.optimizer_tensors({"opt": opt}, names, torch.float32)
    assert all(k.startswith("optim.net.") for k in tensors)
    zero_beta1 = kwargs.get("betas", (1.0,))[0] == 0
    assert zero_beta1 == (not any(k.endswith(".exp_avg") for k in tensors)) or opt_cls is torch.optim.SGD
    fresh_net, fresh_opt = _trained(opt_cls, steps=0, **dict(kwargs, lr=5.0))
    fresh_net.load_state_dict(net.state_dict())
    resume.restore_optimizers({"opt": fresh_opt}, resume.parameter_names({"net": fresh_net}), tensors, meta)
    assert fresh_opt.param_groups[0]["lr"] == 5.0  # hyperparameters come from this run's config
    for p, q in zip(net.parameters(), fresh_net.parameters()):
        for slot, value in opt.state[p].items():
            if slot == "exp_avg" and zero_beta1:  # not stored: restored as zeros
                assert torch.equal(fresh_opt.state[q][slot], torch.zeros_like(value))
            else:
                assert torch.equal(fresh_opt.state[q][slot], value), slot


def test_bfloat16_moments_and_a_mismatched_optimiser(tmp_path):
    net, opt = _trained(torch.optim.AdamW, lr=1e-2)
    tensors, meta = resume.optimizer_tensors({"opt": opt}, resume.parameter_names({"net": net}), torch.bfloat16)
    assert tensors["optim.net.0.weight.exp_avg_sq"].dtype == torch.bfloat16
    assert tensors["optim.net.0.weight.step"].dtype == torch.float32  # scalars keep their precision
    other = torch.nn.Linear(4, 8)
    with pytest.raises(UserError, match="does not match"):
        resume.restore_optimizers({"opt": torch.optim.AdamW(other.parameters())},
                                  resume.parameter_names({"net": other}), tensors, meta)


def test_grad_scaler_state_round_trips():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    meta = resume.scaler_meta({"g": scaler})
    other = torch.amp.GradScaler("cpu")
    resume.restore_scalers({"g": other}, meta)
    assert other.get_scale() == 1024.0 and other.get_growth_interval() == 7


def test_random_streams_round_trip():
    gen = torch.Generator().manual_seed(5)
    random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=gen)
    np.random.randn()  # numpy caches the second gaussian
    saved = resume.rng_tensors(gen)
    ahead = (random.random(), np.random.randn(), torch.rand(3).tolist(), torch.rand(3, generator=gen).tolist())
    random.seed(1), np.random.seed(1), torch.manual_seed(1), gen.manual_seed(1)
    resume.restore_rng(saved, gen)
    assert (random.random(), np.random.randn(), torch.rand(3).tolist(), torch.rand(3, generator=gen).tolist()) == ahead
