"""What the training loop and the stages share: distributed set-up, device and precision, the data
on the device, the wall-clock budget, metrics logging and the EMA update.

The loop itself is ``models/train/loop.py``; resume state is ``models/train/resume.py``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

from models.checkpoint import unwrap
from models.errors import UserError
from models.signal.mel import MelConfig

# ---------------------------------------------------------------- device, precision, distribution
@dataclass(frozen=True)
class Dist:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> Dist:
    """Single process, or DDP under ``torchrun`` (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world_size == 1:
        return Dist(device=torch.device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world_size=world_size, device=dev)


def wrap_ddp(net: torch.nn.Module, d: Dist) -> torch.nn.Module:
    if d.world_size == 1:
        return net
    ids = [d.device.index] if d.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (unless not ``enabled``); fp32 on the CPU (bf16 there is very slow)."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_backends(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


# ---------------------------------------------------------------- configs
def config_json(cfg: Any) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


# ---------------------------------------------------------------- the wall-clock budget
class Budget:
    """Train until ``minutes`` have passed (from construction) or ``max_steps`` steps were taken."""

    def __init__(self, minutes: float, max_steps: int | None = None) -> None:
        self.start = time.monotonic()
        self.seconds = minutes * 60.0
        self.max_steps = max_steps
        self.steps = 0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        """Call once per step: counts the step, then says whether to stop."""
        done = self.elapsed_s >= self.seconds or (self.max_steps is not None and self.steps >= self.max_steps)
        self.steps += 1
        return done


@dataclass(frozen=True)
class RunOptions:
    """What every stage's ``train`` takes besides its data and output folder."""

    minutes: float = 9.0
    max_steps: int | None = None
    tiny: bool = False
    overrides: tuple[str, ...] = ()
    device: str | None = None
    init: str | None = None
    weights: str | None = None
    dry_run: bool = False

    @classmethod
    def from_args(cls, args: Any) -> "RunOptions":
        return cls(minutes=args.minutes, tiny=args.tiny, overrides=tuple(args.set or ()), device=args.device,
                   init=args.init, weights=args.weights, dry_run=args.dry_run)


# ---------------------------------------------------------------- data on the device
class DeviceNotes:
    """A NoteSet's log-mels and labels as tensors on one device, sampled by index.

    The whole set lives in device memory (float16): a 100k-note set of 256x256 mels is ~13 GB, fine
    on the GPU; tests use tiny sets on the CPU.
    """

    def __init__(self, noteset: Any, device: torch.device, splits: tuple[int, ...] = (0,)) -> None:
        keep = np.isin(np.asarray(noteset.split), splits)
        self.index = np.nonzero(keep)[0]
        if len(self.index) == 0:
            raise UserError(f"the dataset has no notes in splits {splits}")
        self.mel_cfg: MelConfig = noteset.mel_cfg
        self.mels = torch.from_numpy(np.ascontiguousarray(np.asarray(noteset.mels)[self.index])).to(device)
        self.pitch = torch.from_numpy(np.asarray(noteset.pitch)[self.index].astype(np.int64)).to(device)
        self.instrument = torch.from_numpy(np.asarray(noteset.instrument)[self.index].astype(np.int64)).to(device)
        self.family = torch.from_numpy(np.asarray(noteset.family)[self.index].astype(np.int64)).to(device)
        self.velocity = torch.from_numpy(np.asarray(noteset.velocity)[self.index].astype(np.int64)).to(device)
        pitched = np.array([bool(i.pitched) for i in noteset.instruments])
        self.pitched = torch.from_numpy(pitched[np.asarray(noteset.instrument)[self.index]]).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.index)

    def x(self, idx: torch.Tensor) -> torch.Tensor:
        """Log-mels ``[B, n_mels, n_frames]`` in float32."""
        return self.mels[idx].float()

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Random note indices ``[batch_size]``, drawn on the generator's device (no host round trip)."""
        return torch.randint(len(self), (batch_size,), generator=generator, device=generator.device).to(self.device)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every note once, in order (evaluation)."""
        for start in range(0, len(self), batch_size):
            yield torch.arange(start, min(start + batch_size, len(self)), device=self.device)


def load_data(root: str | Path) -> Any:
    """Open the dataset at ``root`` (built by ``hypergan data build``)."""
    from models.data.dataset import load_noteset

    root = Path(root)
    if not root.exists():
        raise UserError(f"no dataset at {root}; build one with `hypergan data build --out {root}`")
    return load_noteset(root)


# ---------------------------------------------------------------- metrics
class MetricsLog:
    """Append-only JSONL metrics, one object per line with ``step`` and ``time_s``."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.start = time.monotonic()
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, **values: float) -> dict[str, Any]:
        row = {"step": step, "time_s": round(time.monotonic() - self.start, 2)}
        for k, v in values.items():
            row[k] = float(v) if isinstance(v, (float, int, torch.Tensor, np.floating)) else v
            if isinstance(row[k], float) and math.isfinite(row[k]):
                row[k] = round(row[k], 6)
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)  # the stages run as CLI commands; this is their progress
        return row


class Averager:
    """Running means of scalar losses between log lines (kept on device to avoid syncs)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.counts: dict[str, int] = {}

    def add(self, **values: torch.Tensor | float) -> None:
        """Tensors stay where they are; plain numbers (a learning rate) are summed in Python."""
        for k, v in values.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        """The means since the last pop (one device-to-host copy for all tensors)."""
        tensors = {k: v for k, v in self.sums.items() if isinstance(v, torch.Tensor)}
        sums = {k: v for k, v in self.sums.items() if not isinstance(v, torch.Tensor)}
        if tensors:
            device = next(iter(tensors.values())).device
            sums.update(zip(tensors, torch.stack([v.reshape(()).to(device) for v in tensors.values()]).tolist()))
        out = {k: sums[k] / self.counts[k] for k in self.sums}
        self.sums.clear()
        self.counts.clear()
        return out


# ---------------------------------------------------------------- shared steps
@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * net for the parameters; buffers are copied.

    One multi-tensor kernel per list instead of one per tensor (G has hundreds of them).
    """
    params = [p.detach() for p in unwrap(net).parameters()]
    torch._foreach_lerp_(list(ema.parameters()), params, 1.0 - beta)
    ema_buffers, buffers = list(ema.buffers()), list(unwrap(net).buffers())
    if ema_buffers:
        torch._foreach_copy_(ema_buffers, buffers)


def all_reduce_mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world_size > 1:
        t = t.clone()
        dist.all_reduce(t)
        t /= d.world_size
    return t
