"""Round robins and velocity layers from the model: the conditioning of each variation of a key.

A round robin ``i > 0`` is the same timbre struck again: h moves by ``rr_h_scale`` times a seeded
direction (h keeps RMS 1, like f's output) and, optionally, G's noise input moves from 0 to a seeded
z (``rr_z_scale`` > 0; G's mapping normalises z, so its size does not matter, only that it is set).

A velocity layer takes the velocity model learnt from real SoundFont notes played at several
velocities (``assets/velocity_timbre.safetensors``; fitted by ``bench/velocity_timbre.py`` with
``models/train/velocity.py``, described in ``assets/MODEL_CARD.md``). Along one curve ``c(v)``,
continuous and strictly rising over 1..127 (``curve`` at ``velocities``, linear between them): a
spectral tilt ``(c(v) - c(ref)) * tilt_basis`` added to G's mel (``velocity_tilt`` scales it), an
attack ``exp(attack_log_slope * (c(ref) - c(v)))`` times as long (a fade-in on the wave,
engine/onset.py; ``velocity_attack`` scales the log ratio) and, optionally, the mean ``h(v) -
h(reference)`` at the fitted velocities (``offsets``, a move of h, ``velocity_strength``; off by
default: on held-out instruments it changed each instrument in a direction unrelated to its real
change). The offsets of H (and any refinement) are the main variation's: the variations are small
moves of the same sound.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine.key_cache import Variations
from models.errors import CheckpointError
from models.nets.layers import normalize_h
from models.train.velocity import curve_at

if TYPE_CHECKING:
    from engine.instrument import Conditioning, Engine

VELOCITY_FILE = "velocity_timbre.safetensors"
VELOCITY_FORMAT = "hypergan/velocity-timbre/3"
RETIRED_FORMATS = {"hypergan/velocity-timbre/1": "h offsets only", "hypergan/velocity-timbre/2": "a per-velocity table"}


@dataclass(frozen=True)
class VelocityTimbre:
    """The velocity model (see the module docstring): at ``velocities [V]`` (ascending) the curve
    ``[V]`` and h ``offsets [V, h_dim]``; ``tilt_basis [n_mels]`` and ``attack_log_slope``."""

    velocities: np.ndarray
    curve: np.ndarray
    offsets: torch.Tensor
    tilt_basis: torch.Tensor
    attack_log_slope: float
    meta: dict

    def offset(self, velocity: float) -> torch.Tensor:
        """The offset ``[h_dim]`` at ``velocity``, linear between the fitted ones, held beyond them."""
        v = np.clip(float(velocity), self.velocities[0], self.velocities[-1])
        i = int(np.clip(np.searchsorted(self.velocities, v) - 1, 0, len(self.velocities) - 2))
        lo, hi = self.velocities[i], self.velocities[i + 1]
        t = float((v - lo) / (hi - lo)) if hi > lo else 0.0
        return (1 - t) * self.offsets[i] + t * self.offsets[i + 1]

    def shift(self, velocity: float, reference: float) -> torch.Tensor:
        """How h moves from a note at ``reference`` to one at ``velocity`` ``[h_dim]``."""
        return self.offset(velocity) - self.offset(reference)

    def curve_step(self, velocity: float, reference: float) -> float:
        """``c(velocity) - c(reference)``: negative for a softer note."""
        return float(curve_at(velocity, self.velocities, self.curve) - curve_at(reference, self.velocities, self.curve))

    def tilt(self, velocity: float, reference: float) -> torch.Tensor:
        """The log gain per mel bin ``[n_mels]`` from a note at ``reference`` to one at ``velocity``."""
        return self.curve_step(velocity, reference) * self.tilt_basis

    def attack_ratio(self, velocity: float, reference: float) -> float:
        """How many times longer a note's attack is at ``velocity`` than at ``reference``."""
        return math.exp(-self.attack_log_slope * self.curve_step(velocity, reference))


def save_velocity_timbre(path: Path, velocities: np.ndarray, curve: np.ndarray, offsets: torch.Tensor,
                         tilt_basis: torch.Tensor, attack_log_slope: float, meta: dict) -> None:
    """Write the asset (a temp file, then renamed)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tensors = {"velocities": torch.as_tensor(np.asarray(velocities), dtype=torch.float32),
               "offsets": offsets.detach().float().cpu().contiguous(),
               "tilt_basis": torch.as_tensor(tilt_basis).detach().float().cpu().contiguous(),
               "curve": torch.as_tensor(np.asarray(curve), dtype=torch.float32),
               "attack_log_slope": torch.tensor([float(attack_log_slope)])}
    save_file(tensors, str(tmp), metadata={"format": VELOCITY_FORMAT, "meta": json.dumps(meta)})
    tmp.replace(path)


def load_velocity_timbre(path: Path, h_dim: int, n_mels: int | None = None) -> VelocityTimbre:
    """Read the asset; CheckpointError if it is missing, foreign, of an older format or for another
    h or mel size."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"velocity layers need {path.name} beside the weights ({path.parent})")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types on bad files
        raise CheckpointError(f"{path}: not a readable velocity timbre ({exc})") from exc
    fmt = meta.get("format")
    if fmt in RETIRED_FORMATS:
        raise CheckpointError(f"{path}: format {fmt} ({RETIRED_FORMATS[fmt]}) is no longer read; refit it with "
                              f"'python -m bench.velocity_timbre --out DIR --write' (format {VELOCITY_FORMAT})")
    if fmt != VELOCITY_FORMAT:
        raise CheckpointError(f"{path}: format {fmt!r}, expected {VELOCITY_FORMAT}")
    missing = {"velocities", "curve", "offsets", "tilt_basis", "attack_log_slope"} - tensors.keys()
    if missing:
        raise CheckpointError(f"{path}: missing {sorted(missing)}")
    velocities, offsets, basis = tensors["velocities"], tensors["offsets"], tensors["tilt_basis"]
    if offsets.ndim != 2 or offsets.shape != (len(velocities), h_dim) or len(velocities) < 2:
        raise CheckpointError(f"{path}: offsets {tuple(offsets.shape)} do not fit h of size {h_dim}")
    if basis.ndim != 1 or (n_mels is not None and basis.shape[0] != n_mels):
        raise CheckpointError(f"{path}: tilt basis {tuple(basis.shape)} does not fit {n_mels} mel bins")
    knots, curve = velocities.double().numpy(), tensors["curve"].double().numpy()
    slope = float(tensors["attack_log_slope"].reshape(-1)[0])
    if curve.shape != knots.shape or not (np.all(np.diff(knots) > 0) and np.all(np.diff(curve) > 0)):
        raise CheckpointError(f"{path}: the velocity curve must rise strictly at rising velocities")
    if not (math.isfinite(slope) and slope >= 0):
        raise CheckpointError(f"{path}: attack slope {slope} must be finite and >= 0")
    return VelocityTimbre(knots, curve, offsets.float(), basis.float(), slope, json.loads(meta.get("meta", "{}")))


def find_velocity_timbre(weights_dir: Path, h_dim: int, n_mels: int | None = None) -> VelocityTimbre:
    """The velocity timbre beside the weights, else the shipped one if it fits this h (and mel)."""
    from engine.instrument import default_weights_dir

    own = Path(weights_dir) / VELOCITY_FILE
    if own.is_file():
        return load_velocity_timbre(own, h_dim, n_mels)
    return load_velocity_timbre(default_weights_dir() / VELOCITY_FILE, h_dim, n_mels)


def seeded_noise(seed: int, rr: int, z_dim: int, h_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Round robin ``rr``'s fixed z ``[1, z_dim]`` and h direction ``[1, h_dim]`` (unit RMS each)."""
    gen = torch.Generator().manual_seed(1_000_003 * seed + rr)
    z = torch.randn(1, z_dim, generator=gen)
    u = torch.randn(1, h_dim, generator=gen)
    return z, normalize_h(u)


def variant(cond: Conditioning, layer: int, rr: int, v: Variations, velocity: VelocityTimbre | None,
            z_dim: int) -> Conditioning:
    """The Conditioning of ``(layer, rr)`` from the main one ``cond`` (see the module docstring)."""
    move = torch.zeros_like(cond.h)
    if layer != v.main_layer and velocity is not None:
        cond, move = at_velocity(cond, v.layer_velocity(layer), v, velocity)
    z = None
    if rr > 0:
        z_rr, u_rr = seeded_noise(v.seed, rr, z_dim, cond.h.shape[1])
        z = (v.rr_z_scale * z_rr).to(cond.h) if v.rr_z_scale != 0 else None
        move = move + v.rr_h_scale * u_rr.to(cond.h)
    return replace(cond, h=normalize_h(cond.h + move) if bool(move.any()) else cond.h, z=z)


def at_velocity(cond: Conditioning, velocity: float, v: Variations,
                model: VelocityTimbre) -> tuple[Conditioning, torch.Tensor]:
    """``cond`` (a note at ``v.reference_velocity``) moved to ``velocity``: the tilt added to its mel
    correction and its attack slowed, as far as ``v`` says; and the move of h ``[1, h_dim]`` (not yet
    applied: round robins add theirs before h is normalised)."""
    ref, correction, ratio = v.reference_velocity, cond.mel_correction, cond.attack_ratio
    move = v.velocity_strength * model.shift(velocity, ref).to(cond.h)[None]
    far = cond.far
    if v.velocity_tilt != 0:
        tilt = v.velocity_tilt * model.tilt(velocity, ref).to(cond.h)  # [n_mels]
        tilted = lambda c: tilt if c is None else c + (tilt if c.dim() == 1 else tilt[:, None])  # noqa: E731
        correction = tilted(correction)                                # refinement's [n_mels] or [n_mels, n_frames]
        if far is not None:
            far = replace(far, mel_correction=tilted(far.mel_correction))
    if v.velocity_attack != 0:
        ratio = ratio * model.attack_ratio(velocity, ref) ** v.velocity_attack
    return replace(cond, mel_correction=correction, attack_ratio=ratio, far=far), move


def velocity_timbre_for(engine: Engine, v: Variations) -> VelocityTimbre | None:
    """What ``v``'s velocity layers need from ``engine``'s weights folder (None: no layers); raises
    CheckpointError early, before any rendering, when the asset is missing or does not fit f."""
    if v.velocity_layers == 1 or v.velocity_strength == v.velocity_tilt == v.velocity_attack == 0:
        return None
    return find_velocity_timbre(engine.weights_dir, engine.nets.f.cfg.h_dim, engine.mel_cfg.n_mels)


def variant_conditionings(engine: Engine, cond: Conditioning, v: Variations) -> dict[tuple[int, int], Conditioning]:
    """``{(layer, rr): Conditioning}`` of every variation but the main one, in render order."""
    velocity = velocity_timbre_for(engine, v)
    return {(layer, rr): variant(cond, layer, rr, v, velocity, engine.nets.z_dim) for layer, rr in v.passes()}
