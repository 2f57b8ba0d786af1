"""Load the shipped networks once and check that they fit together.

Weights folder layout (the checkout's ``assets/`` folder by default):
``features.safetensors`` (FeatureExtractor f), ``generator.safetensors`` (Generator, the EMA copy),
``hyper.safetensors`` (HyperNetwork H, optional: without it G renders alone) and
``vocoder.safetensors`` (optional neural mel inverter; else Griffin-Lim).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load, weights_digest
from models.errors import CheckpointError, UserError
from models.signal.mel import GriffinLim, MelConfig, MelInverter

FEATURES, GENERATOR, HYPER, VOCODER = ("features.safetensors", "generator.safetensors",
                                      "hyper.safetensors", "vocoder.safetensors")
VOCODER_CHOICES = ("auto", "griffinlim", "neural")


@dataclass(frozen=True)
class NetworkClasses:
    """The classes weights are loaded into (tests and experiments may pass their own)."""

    features: type
    generator: type
    hyper: type | None = None
    vocoder: type | None = None


def default_classes() -> NetworkClasses:
    """The product's network classes, imported only when an engine is built."""
    from models.nets.features import FeatureExtractor
    from models.nets.generator import Generator
    from models.nets.hyper import HyperNetwork
    from models.nets.vocoder import NeuralVocoder

    return NetworkClasses(FeatureExtractor, Generator, HyperNetwork, NeuralVocoder)


@dataclass(frozen=True)
class Networks:
    """f, G (and H) in eval mode on one device, the mel grid they share and the inverter."""

    f: torch.nn.Module
    G: torch.nn.Module
    H: torch.nn.Module | None
    inverter: MelInverter
    mel: MelConfig
    z_dim: int
    device: torch.device
    fingerprint: str           # hash of the weight files: names on-disk caches
    vocoder_name: str          # "griffinlim" or "neural"


def _mel_of(path: Path, meta: dict[str, str]) -> MelConfig | None:
    if "mel" not in meta:
        return None
    try:
        return MelConfig.from_json(meta["mel"])
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid mel config: {exc}") from exc


def _load(path: Path, cls: type, device: torch.device) -> tuple[torch.nn.Module, Any, dict[str, str]]:
    net, cfg, meta = load(path, cls, device=device)
    net.eval().requires_grad_(False)
    return net, cfg, meta


def fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha1()
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _inverter(choice: str | MelInverter, weights: Path, mel: MelConfig, classes: NetworkClasses,
              device: torch.device, griffin_lim: dict[str, Any]) -> tuple[MelInverter, str, list[Path]]:
    if not isinstance(choice, str):
        if choice.cfg != mel:
            raise CheckpointError("the given mel inverter uses another mel grid than the generator")
        return choice, type(choice).__name__, []
    if choice not in VOCODER_CHOICES:
        raise UserError(f"unknown vocoder {choice!r} (choose from {', '.join(VOCODER_CHOICES)})")
    path = weights / VOCODER
    if choice == "neural" or (choice == "auto" and path.is_file() and classes.vocoder is not None):
        if classes.vocoder is None:
            raise CheckpointError("the neural vocoder is not part of this build; use --vocoder griffinlim")
        if not path.is_file():
            raise CheckpointError(f"weights not found: {path} (use --vocoder griffinlim)")
        net, _, meta = _load(path, classes.vocoder, device)
        if _mel_of(path, meta) not in (None, mel):
            raise CheckpointError(f"{path} was trained on another mel grid than {weights / GENERATOR}")
        return net, "neural", [path]
    return GriffinLim(mel, **griffin_lim).to(device), "griffinlim", []


def _check_pair(path: Path, h_meta: dict[str, str], f: torch.nn.Module, G: torch.nn.Module) -> None:
    """H only fits the f and G it was trained with; its header names their digests (when it has them)."""
    for key, net, name in (("features_digest", f, FEATURES), ("generator_digest", G, GENERATOR)):
        if key not in h_meta:
            continue
        digest = weights_digest(net)
        if h_meta[key] != digest:
            raise CheckpointError(f"{path} was trained with another {name} (digest {h_meta[key]}, this one "
                                  f"{digest}): put the H trained for these networks beside them, "
                                  f"or remove {path.name} to render with G alone")


@torch.inference_mode()
def _check_fit(f: torch.nn.Module, G: torch.nn.Module, H: torch.nn.Module | None, mel: MelConfig,
               z_dim: int, device: torch.device) -> None:
    """One dry run through f -> G -> f -> H: mismatched weights fail here, with a clear message."""
    try:
        x = torch.full((1, mel.n_mels, mel.n_frames), mel.log_min, device=device)
        h = f(x)
        midi = torch.full((1,), 60, dtype=torch.long, device=device)
        x_init = G(h, torch.zeros(1, z_dim, device=device), midi)
        if tuple(x_init.shape) != (1, mel.n_mels, mel.n_frames):
            raise CheckpointError(f"the generator makes mels of shape {tuple(x_init.shape[1:])}, "
                                  f"its mel grid says ({mel.n_mels}, {mel.n_frames})")
        if H is not None:
            deltas = H(h, f(x_init))
            layers = dict(G.modulated_layers())
            for name, delta in deltas.items():
                if name not in layers or tuple(delta.shape[1:]) != tuple(layers[name]):
                    raise CheckpointError(f"the hypernetwork's offset {name!r} {tuple(delta.shape[1:])} "
                                          f"matches no generator layer")
    except CheckpointError:
        raise
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise CheckpointError(f"the networks' weights do not fit together: {exc}") from exc


def load_networks(weights_dir: str | Path, device: torch.device, vocoder: str | MelInverter = "auto",
                  classes: NetworkClasses | None = None, griffin_lim: dict[str, Any] | None = None) -> Networks:
    """Load f, G, optional H and the mel inverter from ``weights_dir``; raise CheckpointError if unusable.

    ``griffin_lim``: keyword arguments for ``models.signal.mel.GriffinLim`` when it is the inverter.
    """
    weights = Path(weights_dir)
    if not weights.is_dir():
        raise CheckpointError(f"weights folder not found: {weights}")
    missing = [name for name in (FEATURES, GENERATOR) if not (weights / name).is_file()]
    if missing:
        raise CheckpointError(f"weights not found in {weights}: {', '.join(missing)} "
                              f"(pass --weights DIR, or train them: hypergan train features / gan)")
    classes = classes or default_classes()
    f, _, f_meta = _load(weights / FEATURES, classes.features, device)
    G, g_cfg, g_meta = _load(weights / GENERATOR, classes.generator, device)
    if device.type == "cpu":  # oneDNN runs G ~8 % faster on channels-last weights (112 -> 103 ms a key, 1 thread)
        G = G.to(memory_format=torch.channels_last)
    mel = _mel_of(weights / GENERATOR, g_meta) or getattr(g_cfg, "mel", None)
    if not isinstance(mel, MelConfig):
        raise CheckpointError(f"{weights / GENERATOR} does not record its mel grid")
    if _mel_of(weights / FEATURES, f_meta) not in (None, mel):
        raise CheckpointError(f"{weights / FEATURES} and {weights / GENERATOR} use different mel grids")
    z_dim = getattr(g_cfg, "z_dim", None)
    if not isinstance(z_dim, int):
        raise CheckpointError(f"{weights / GENERATOR}: its config has no integer z_dim")
    used = [weights / FEATURES, weights / GENERATOR]
    H = None
    if (weights / HYPER).is_file():
        if classes.hyper is None:
            raise CheckpointError(f"{weights / HYPER} exists but this build has no HyperNetwork")
        H, _, h_meta = _load(weights / HYPER, classes.hyper, device)
        _check_pair(weights / HYPER, h_meta, f, G)
        used.append(weights / HYPER)
    _check_fit(f, G, H, mel, z_dim, device)
    inverter, vocoder_name, vocoder_files = _inverter(vocoder, weights, mel, classes, device, griffin_lim or {})
    return Networks(f=f, G=G, H=H, inverter=inverter, mel=mel, z_dim=z_dim, device=device,
                    fingerprint=fingerprint(used + vocoder_files), vocoder_name=vocoder_name)
