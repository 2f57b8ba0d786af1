"""Round robins and velocity layers from the model: the conditioning of each variation of a key.

A round robin ``i > 0`` is the same timbre struck again: h moves by ``rr_h_scale`` times a seeded
direction (h keeps RMS 1, like f's output) and, optionally, G's noise input moves from 0 to a seeded
z (``rr_z_scale`` > 0; G's mapping normalises z, so its size does not matter, only that it is set).

A velocity layer takes the velocity timbre learnt from real SoundFont notes played at several
velocities (``assets/velocity_timbre.safetensors``; fitted by ``bench/velocity_timbre.py``, described
in ``assets/MODEL_CARD.md``), per velocity: the mean log gain per mel bin of the real notes over the
same notes at the reference (``mel_gains``, a spectral tilt added to G's mel, ``velocity_tilt``
scales it), and the mean ``h(velocity) - h(reference)`` (``offsets``, a move of h, scaled by
``velocity_strength``). The tilt is on by default and the move of h off: on held-out instruments the
tilt follows the real notes' mean centroid and never takes the wrong direction where the real note
changes, while the move of h changes each instrument in a direction unrelated to its real change.
The offsets of H (and any refinement) are the main variation's: the variations are small moves of
the same sound.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine.key_cache import Variations
from models.errors import CheckpointError
from models.nets.layers import normalize_h

if TYPE_CHECKING:
    from engine.instrument import Conditioning, Engine

VELOCITY_FILE = "velocity_timbre.safetensors"
VELOCITY_FORMAT = "hypergan/velocity-timbre/2"
VELOCITY_FORMATS = ("hypergan/velocity-timbre/1", VELOCITY_FORMAT)   # /1: offsets only, no mel gains


@dataclass(frozen=True)
class VelocityTimbre:
    """Per velocity ``velocities [V]`` (ascending): h offsets ``[V, h_dim]`` and mel gains ``[V, n_mels]``.

    ``offsets[i]`` is the mean of ``h(velocities[i]) - h(reference)`` over the fitting presets;
    ``mel_gains[i]`` the mean natural-log gain per mel bin of their notes over the reference note
    (None in a format /1 asset: no tilt).
    """

    velocities: np.ndarray
    offsets: torch.Tensor
    meta: dict
    mel_gains: torch.Tensor | None = None

    def offset(self, velocity: float) -> torch.Tensor:
        """The offset ``[h_dim]`` at ``velocity``, linear between the fitted ones, held beyond them."""
        return self._at(self.offsets, velocity)

    def _at(self, rows: torch.Tensor, velocity: float) -> torch.Tensor:
        v = np.clip(float(velocity), self.velocities[0], self.velocities[-1])
        i = int(np.clip(np.searchsorted(self.velocities, v) - 1, 0, len(self.velocities) - 2))
        lo, hi = self.velocities[i], self.velocities[i + 1]
        t = float((v - lo) / (hi - lo)) if hi > lo else 0.0
        return (1 - t) * rows[i] + t * rows[i + 1]

    def shift(self, velocity: float, reference: float) -> torch.Tensor:
        """How h moves from a note at ``reference`` to one at ``velocity`` ``[h_dim]``."""
        return self.offset(velocity) - self.offset(reference)

    def tilt(self, velocity: float, reference: float) -> torch.Tensor | None:
        """The log gain per mel bin ``[n_mels]`` from a note at ``reference`` to one at ``velocity``."""
        if self.mel_gains is None:
            return None
        return self._at(self.mel_gains, velocity) - self._at(self.mel_gains, reference)


def save_velocity_timbre(path: Path, velocities: np.ndarray, offsets: torch.Tensor, meta: dict,
                         mel_gains: torch.Tensor) -> None:
    """Write the asset (a temp file, then renamed)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tensors = {"velocities": torch.as_tensor(np.asarray(velocities), dtype=torch.float32),
               "offsets": offsets.detach().float().cpu().contiguous(),
               "mel_gains": mel_gains.detach().float().cpu().contiguous()}
    save_file(tensors, str(tmp), metadata={"format": VELOCITY_FORMAT, "meta": json.dumps(meta)})
    tmp.replace(path)


def load_velocity_timbre(path: Path, h_dim: int, n_mels: int | None = None) -> VelocityTimbre:
    """Read the asset; CheckpointError if it is missing, foreign or for another h or mel size."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"velocity layers need {path.name} beside the weights ({path.parent})")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
            velocities, offsets = fh.get_tensor("velocities"), fh.get_tensor("offsets")
            mel_gains = fh.get_tensor("mel_gains") if "mel_gains" in fh.keys() else None
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types on bad files
        raise CheckpointError(f"{path}: not a readable velocity timbre ({exc})") from exc
    if meta.get("format") not in VELOCITY_FORMATS:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected {VELOCITY_FORMAT}")
    if offsets.ndim != 2 or offsets.shape != (len(velocities), h_dim) or len(velocities) < 2:
        raise CheckpointError(f"{path}: offsets {tuple(offsets.shape)} do not fit h of size {h_dim}")
    if mel_gains is not None and (mel_gains.ndim != 2 or len(mel_gains) != len(velocities)
                                  or (n_mels is not None and mel_gains.shape[1] != n_mels)):
        raise CheckpointError(f"{path}: mel gains {tuple(mel_gains.shape)} do not fit {n_mels} mel bins")
    return VelocityTimbre(velocities.double().numpy(), offsets.float(), json.loads(meta.get("meta", "{}")),
                          None if mel_gains is None else mel_gains.float())


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
    h, correction = cond.h, cond.mel_correction
    move = torch.zeros_like(h)
    if layer != v.main_layer and velocity is not None:
        at, ref = v.layer_velocity(layer), v.reference_velocity
        if v.velocity_strength != 0:
            move = move + v.velocity_strength * velocity.shift(at, ref).to(h)
        tilt = velocity.tilt(at, ref)
        if v.velocity_tilt != 0 and tilt is not None:
            tilt = v.velocity_tilt * tilt.to(h)                      # [n_mels]
            if correction is None:
                correction = tilt
            else:                                                    # refinement's [n_mels] or [n_mels, n_frames]
                correction = correction + (tilt if correction.dim() == 1 else tilt[:, None])
    z = None
    if rr > 0:
        z_rr, u_rr = seeded_noise(v.seed, rr, z_dim, h.shape[1])
        z = (v.rr_z_scale * z_rr).to(h) if v.rr_z_scale != 0 else None
        move = move + v.rr_h_scale * u_rr.to(h)
    return replace(cond, h=normalize_h(h + move) if bool(move.any()) else h, z=z, mel_correction=correction)


def velocity_timbre_for(engine: Engine, v: Variations) -> VelocityTimbre | None:
    """What ``v``'s velocity layers need from ``engine``'s weights folder (None: no layers); raises
    CheckpointError early, before any rendering, when the asset is missing or does not fit f."""
    if v.velocity_layers == 1 or (v.velocity_strength == 0 and v.velocity_tilt == 0):
        return None
    return find_velocity_timbre(engine.weights_dir, engine.nets.f.cfg.h_dim, engine.mel_cfg.n_mels)


def variant_conditionings(engine: Engine, cond: Conditioning, v: Variations) -> dict[tuple[int, int], Conditioning]:
    """``{(layer, rr): Conditioning}`` of every variation but the main one, in render order."""
    velocity = velocity_timbre_for(engine, v)
    return {(layer, rr): variant(cond, layer, rr, v, velocity, engine.nets.z_dim) for layer, rr in v.passes()}
