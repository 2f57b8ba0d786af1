"""All weight I/O: one ``.safetensors`` per network, its config and provenance in the header.

Header metadata (all JSON strings): ``format`` ("hypergan/1"), ``kind`` (the network's class name),
``config`` (its config dataclass), ``mel`` (the MelConfig it was trained on), ``step``, ``git``,
plus any extra string fields a stage adds. Never pickle.

Migrations: a config field that older headers carry but the current config no longer has is listed
in ``RETIRED_FIELDS`` and dropped when the config is rebuilt (``config_from_dict``).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from models import configs
from models.configs import config_to_json
from models.errors import CheckpointError

FORMAT = "hypergan/1"
T = TypeVar("T")

# Config class name -> fields its older headers hold that the current class no longer has.
RETIRED_FIELDS: dict[str, frozenset[str]] = {
    # The inference step counts left VocoderConfig for VocoderSchedule (they hold no weights, and a
    # schedule is chosen when the vocoder is loaded). The shipped vocoder's header still carries them.
    "VocoderConfig": frozenset({
        "refine_iters", "coarse_projections", "coarse_hop_factor", "coarse_power", "mel_projections",
        "mel_hop_factor", "cuda_refine_iters", "cuda_coarse_projections", "cuda_mel_projections",
        "cuda_mel_hop_factor"}),
}


def config_from_dict(cls: type[T], fields: dict[str, Any]) -> T:
    """``configs.config_from_dict`` of a header's config, after dropping ``RETIRED_FIELDS``."""
    retired = RETIRED_FIELDS.get(cls.__name__, frozenset())
    return configs.config_from_dict(cls, {k: v for k, v in fields.items() if k not in retired})
N = TypeVar("N", bound=torch.nn.Module)


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def unwrap(net: torch.nn.Module) -> torch.nn.Module:
    """Strip DDP / torch.compile wrappers so saved keys never carry their prefixes."""
    while True:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif isinstance(net, torch.nn.parallel.DistributedDataParallel):
            net = net.module
        else:
            return net


def weights_digest(net: torch.nn.Module) -> str:
    """A short hash of a network's weights as float16 (fp32 and shipped fp16 copies of one net agree).

    H records the digests of the f and G it was trained with; the engine refuses an H beside another G.
    """
    digest = hashlib.sha256()
    for name, value in sorted(unwrap(net).state_dict().items()):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.to(torch.float16)
        digest.update(name.encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write tensors + string metadata atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "git": git_revision()}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)


def read_tensors(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and header metadata; clear errors for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"corrupt or unreadable weights file {path}: {exc}") from exc
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: unknown weights format {fmt!r} (expected {FORMAT!r})")
    return tensors, meta


def save(path: str | Path, net: torch.nn.Module, meta: dict[str, Any] | None = None,
         dtype: torch.dtype | None = None) -> None:
    """Save a network with its config (``net.cfg``); ``dtype`` casts floating tensors (e.g. fp16 to ship)."""
    net = unwrap(net)
    state = net.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    header = {"kind": type(net).__name__, "config": config_to_json(net.cfg)}
    header.update(meta or {})
    save_tensors(path, state, header)


def load(path: str | Path, net_cls: type[N], device: str | torch.device = "cpu",
         prefix: str = "") -> tuple[N, Any, dict[str, str]]:
    """Load ``net_cls`` from ``path`` -> (net in fp32 on ``device``, its config, header metadata).

    ``net_cls`` must define ``Config`` (its config dataclass) and take it as sole argument.
    ``prefix`` selects one network inside a resume state (e.g. ``"ema."``).
    """
    tensors, meta = read_tensors(path)
    kind = meta.get("kind")
    if kind != net_cls.__name__:
        raise CheckpointError(f"{path} holds a {kind!r}, not a {net_cls.__name__}")
    try:
        cfg = config_from_dict(net_cls.Config, json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path}: missing or invalid config: {exc}") from exc
    net = net_cls(cfg)
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = net.state_dict()
    state = {k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match {net_cls.__name__}: {exc}") from exc
    return net.to(device), cfg, meta
