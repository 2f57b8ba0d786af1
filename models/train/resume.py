"""Complete training state on disk: weights, EMA, optimisers, grad scalers, RNG streams and step.

A state is ``{name}-00000.safetensors``, ``{name}-00001.safetensors`` ... in a run folder; every file
stays under 16 MiB (what a file coming back from the GPU machine may weigh), a larger tensor is
stored in parts. Keys:

    {net}.{param}                     weights and buffers of each network ("G", "D", "ema", ...)
    optim.{net}.{param}.{slot}        optimiser state of that parameter (exp_avg_sq, step, ...)
    rng.{rank}.{stream}               torch CPU / CUDA, numpy, python and data-order generator states
    extra.{part}.{key}                whatever else a stage keeps (e.g. a bank of recent features)

Header metadata (JSON strings): ``step``, the stage's configs, ``optim`` (per optimiser: parameters
per group, non-tensor state), ``scalers`` (grad-scaler state), ``split`` (tensors stored in parts),
``moments_dtype`` and ``shard`` ("i/n"). No pickle: optimiser state is flattened to tensors + JSON.

Optimiser moments may be stored in bfloat16 (``moments_dtype``): the state is then about a third
smaller and a resumed run follows the uninterrupted one closely rather than bit for bit. Adam's
first moment is not stored when beta1 is 0 (the GAN stages): the next step overwrites it with the
gradient, so zeros restore it exactly.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import read_tensors, save_tensors, unwrap
from models.errors import UserError

SHARD_BYTES = 15 * 1024 * 1024  # tensor bytes per file; the header fits in the last MiB
MOMENTS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------- shards
def save_tensor_state(out_dir: str | Path, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                      shard_bytes: int = SHARD_BYTES) -> list[Path]:
    """Write ``tensors`` as shards ``{name}-00000.safetensors`` ... of at most ``shard_bytes`` tensor
    bytes each under ``out_dir``; larger tensors go in parts. Stale shards of an earlier save go."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces, split = _split_large(tensors, shard_bytes)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in pieces.items():
        nbytes = v.numel() * v.element_size()
        if size + nbytes > shard_bytes and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    meta = dict(meta, split=split) if split else dict(meta)
    paths = []
    for i, shard in enumerate(shards):
        path = out_dir / f"{name}-{i:05d}.safetensors"
        save_tensors(path, shard, dict(meta, shard=f"{i}/{len(shards)}"))
        paths.append(path)
    for stale in out_dir.glob(f"{name}-*.safetensors"):
        if stale not in paths:
            stale.unlink()
    return paths


def _split_large(tensors: dict[str, torch.Tensor], limit: int) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    """Tensors over ``limit`` bytes -> flat parts ``key#0``, ``key#1`` ...; ``split`` maps key -> [shape, parts]."""
    out: dict[str, torch.Tensor] = {}
    split: dict[str, list] = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        if v.numel() * v.element_size() <= limit:
            out[k] = v
            continue
        per_part = max(1, limit // v.element_size())
        parts = v.reshape(-1).split(per_part)
        split[k] = [list(v.shape), len(parts)]
        out.update({f"{k}#{i}": p.clone() for i, p in enumerate(parts)})
    return out, split


def load_state(out_dir: str | Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """Read a state written by ``save_tensor_state`` (any version); None if there is none."""
    paths = sorted(Path(out_dir).glob(f"{name}-*.safetensors"))
    if not paths:
        return None
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    for path in paths:
        t, m = read_tensors(path)
        if meta and m.get("step") != meta.get("step"):
            raise UserError(f"state {name} in {out_dir} mixes shards of steps {meta.get('step')} and {m.get('step')}")
        tensors.update(t)
        meta = m
    expected = int(meta.get("shard", "0/1").split("/")[1])
    if expected != len(paths):
        raise UserError(f"state {name} in {out_dir} has {len(paths)} shards, expected {expected}")
    for k, (shape, n_parts) in json.loads(meta.get("split", "{}")).items():
        parts = [tensors.pop(f"{k}#{i}") for i in range(n_parts)]
        tensors[k] = torch.cat(parts).reshape(shape)
    return tensors, meta


# ---------------------------------------------------------------- networks
def net_tensors(nets: dict[str, torch.nn.Module], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Every network's state dict under its prefix (``"G."``, ``"ema."``), on the CPU."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, net in nets.items():
        for k, v in unwrap(net).state_dict().items():
            v = v.detach().cpu()
            tensors[f"{prefix}.{k}"] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    return tensors


def save_state(out_dir: str | Path, name: str, nets: dict[str, torch.nn.Module], meta: dict[str, Any],
               dtype: torch.dtype | None = None) -> list[Path]:
    """Weights only: several networks as one sharded state (e.g. to hand a trained net on)."""
    return save_tensor_state(out_dir, name, net_tensors(nets, dtype), meta)


def restore(net: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Load the ``prefix.`` part of a state into ``net`` (strict), casting to the net's dtypes."""
    net = unwrap(net)
    own = net.state_dict()
    part = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    part = {k: v.to(own[k].dtype) if k in own else v for k, v in part.items()}
    net.load_state_dict(part, strict=True)


def parameter_names(nets: dict[str, torch.nn.Module]) -> dict[int, str]:
    """id(parameter) -> ``"{net}.{name}"`` over ``nets``."""
    return {id(p): f"{prefix}.{n}" for prefix, net in nets.items() for n, p in unwrap(net).named_parameters()}


# ---------------------------------------------------------------- optimisers and scalers
def _indexed_names(opt: torch.optim.Optimizer, names: dict[int, str]) -> list[str]:
    """Names of the optimiser's parameters in ``state_dict`` order (its integer keys)."""
    out = [names.get(id(p), "") for group in opt.param_groups for p in group["params"]]
    if "" in out:
        raise ValueError("an optimiser holds a parameter of no network the stage saves")
    return out


def optimizer_tensors(optimizers: dict[str, torch.optim.Optimizer], names: dict[int, str],
                      moments_dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten optimiser state: tensors ``optim.{param}.{slot}`` and JSON-able metadata.

    Moments (floating tensors with dimensions) are cast to ``moments_dtype``; ``exp_avg`` of a group
    with beta1 == 0 is left out (restored as zeros, which the next step overwrites).
    """
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for opt_name, opt in optimizers.items():
        state = opt.state_dict()
        order = _indexed_names(opt, names)
        beta1 = {i: g.get("betas", (1.0,))[0] for g in state["param_groups"] for i in g["params"]}
        scalars: dict[str, Any] = {}
        for idx, slots in state["state"].items():
            for slot, value in slots.items():
                key = f"{order[idx]}.{slot}"
                if not torch.is_tensor(value):
                    scalars[key] = value
                elif not (slot == "exp_avg" and beta1[idx] == 0):
                    cast = value.is_floating_point() and value.dim() > 0
                    tensors[f"optim.{key}"] = value.detach().to("cpu", moments_dtype if cast else value.dtype)
        meta[opt_name] = {"groups": [len(g["params"]) for g in state["param_groups"]], "scalars": scalars,
                          "zero_exp_avg": sorted({order[i] for i, b in beta1.items() if b == 0})}
    return tensors, meta


def restore_optimizers(optimizers: dict[str, torch.optim.Optimizer], names: dict[int, str],
                       tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Load what ``optimizer_tensors`` wrote. Hyperparameters (lr, betas ...) stay the optimiser's
    own, from the config of this run; only the per-parameter state comes from the file."""
    slots: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            param, slot = key[len("optim."):].rsplit(".", 1)
            slots.setdefault(param, {})[slot] = value
    for opt_name, opt in optimizers.items():
        saved = meta.get(opt_name)
        groups = [len(g["params"]) for g in opt.param_groups]
        if saved is None or saved["groups"] != groups:
            raise UserError(f"optimiser {opt_name!r} in the state does not match this run's "
                            f"({saved and saved['groups']} vs {groups} parameters per group)")
        params = [p for g in opt.param_groups for p in g["params"]]
        state: dict[int, dict[str, Any]] = {}
        for idx, (name, p) in enumerate(zip(_indexed_names(opt, names), params)):
            entry: dict[str, Any] = dict(slots.get(name, {}))
            entry.update({k.rsplit(".", 1)[1]: v for k, v in saved["scalars"].items() if k.rsplit(".", 1)[0] == name})
            if entry and name in saved["zero_exp_avg"] and "exp_avg" not in entry:
                entry["exp_avg"] = torch.zeros_like(p)
            if entry:
                state[idx] = entry
        opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def scaler_meta(scalers: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: s.state_dict() for name, s in scalers.items()}


def restore_scalers(scalers: dict[str, Any], meta: dict[str, dict[str, float]]) -> None:
    for name, scaler in scalers.items():
        if name in meta and meta[name]:
            scaler.load_state_dict(meta[name])


# ---------------------------------------------------------------- random number generators
def rng_tensors(data_gen: torch.Generator) -> dict[str, torch.Tensor]:
    """This process's random streams as tensors: torch CPU, CUDA (current device), numpy, python,
    and ``data`` (the generator that draws the batches: the position in the data order)."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "data": data_gen.get_state(),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_extra": torch.tensor([np_state[2], np_state[3], np_state[4]], dtype=torch.float64),
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_extra": torch.tensor([version, math.nan if gauss is None else gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(streams: dict[str, torch.Tensor], data_gen: torch.Generator) -> list[str]:
    """Set every stream ``rng_tensors`` read; returns the names of those the state could not give
    (none saved, or saved on another kind of device), which keep their seeded start."""
    missing = []
    if "torch" in streams:
        torch.set_rng_state(streams["torch"])
        pos, has_gauss, cached = streams["numpy_extra"].tolist()
        np.random.set_state(("MT19937", streams["numpy"].numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
        version, gauss = streams["python_extra"].tolist()
        random.setstate((int(version), tuple(streams["python"].tolist()), None if math.isnan(gauss) else gauss))
    else:
        missing.append("random-stream")
    if "data" in streams and streams["data"].numel() == data_gen.get_state().numel():
        data_gen.set_state(streams["data"])
    else:
        missing.append("data-order")
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        if "cuda" in streams:
            torch.cuda.set_rng_state(streams["cuda"])
        else:
            missing.append("CUDA random-stream")
    return missing


def rank_streams(tensors: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """The ``rng.{rank}.*`` part of a state ({} if that rank's streams were not saved)."""
    prefix = f"rng.{rank}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
