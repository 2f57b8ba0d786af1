"""Where inference runs: device choice and thread counts, set when an Engine is built (never on import)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def available_device() -> str:
    """The fastest device present: ``"cuda"``, then ``"mps"``, else ``"cpu"``."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> :func:`available_device`; anything else is checked to exist."""
    from models.errors import UserError

    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device(available_device())
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or mps)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available")
    if device.type == "mps" and available_device() != "mps":
        raise UserError("device 'mps' requested but MPS is not available")
    return device


def cpu_cores() -> int:
    """Cores this process may run on (respects affinity masks and containers' CPU sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op thread count (default: one per usable core) and return it.

    Process-wide: PyTorch has one intra-op pool. One thread per core avoids the oversubscription
    that torch's default (all logical CPUs, hyper-threads included) causes next to an audio thread.
    """
    n = cpu_cores() if num_threads is None else max(1, int(num_threads))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextmanager
def intra_op_threads(num_threads: int) -> Iterator[None]:
    """Torch's intra-op thread count set to ``num_threads`` inside the block, restored after.

    For one long sequential job (refinement's Adam steps) that nothing else runs beside: the
    render workers each use one thread, so refinement alone would leave the other cores idle.
    """
    previous = torch.get_num_threads()
    configure_threads(num_threads)
    try:
        yield
    finally:
        configure_threads(previous)
