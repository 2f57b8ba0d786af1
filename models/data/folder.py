"""``hypergan data build --folder DIR``: a user's one-shots and multisamples in the training format.

Every audio file is one note. Its instrument is its subfolder (files directly in DIR: the file name
without its note and velocity tokens); its pitch comes from the name (``C4``, ``F#3``, ``Bb2``,
``60``) or, failing that, from ``estimate_pitch``; its velocity from ``v100``/``vel100`` tokens.
The same quality filter applies: a named pitch that the sound confidently contradicts is rejected.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from models.signal.audio import Audio, load_audio
from models.data.build import MEL_PRESETS, BuildConfig, _Worker
from models.data.dataset import DatasetError
from models.data.filter import FilterConfig, check_note
from models.data.sources import InstrumentSpec, Plan
from models.errors import AudioFileError
from models.units import HIGHEST_KEY, LOWEST_KEY

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3"}
_NOTE = re.compile(r"(?<![A-Za-z])([A-Ga-g])([#b]?)(-?\d)(?!\d)")
_NUMBER = re.compile(r"(?<![\dA-Za-z])(\d{2,3})(?![\dA-Za-z])")
_VELOCITY = re.compile(r"(?i)(?<![A-Za-z])v(?:el)?(\d{1,3})(?!\d)")
_SEMITONE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
DEFAULT_VELOCITY = 100


@dataclass(frozen=True)
class FolderConfig:
    folder: str
    out: str
    mel: str = "shipped"
    seed: int = 0
    keep_audio: bool = False
    filter: FilterConfig = FilterConfig()


def pitch_from_name(stem: str) -> int | None:
    """MIDI key named in a file name (``C4`` = 60, ``F#3`` = 54, ``Bb2`` = 46, ``060`` = 60), else None."""
    clean = _VELOCITY.sub(" ", stem)
    m = _NOTE.search(clean)
    if m:
        letter, accidental, octave = m.groups()
        shift = {"#": 1, "b": -1}.get(accidental, 0)
        return 12 * (int(octave) + 1) + _SEMITONE[letter.lower()] + shift
    m = _NUMBER.search(clean)
    if m and LOWEST_KEY - 12 <= int(m.group(1)) <= 127:
        return int(m.group(1))
    return None


def velocity_from_name(stem: str) -> int:
    m = _VELOCITY.search(stem)
    return min(127, max(1, int(m.group(1)))) if m else DEFAULT_VELOCITY


def instrument_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) > 1:
        return rel.parts[0]
    stem = _NUMBER.sub(" ", _NOTE.sub(" ", _VELOCITY.sub(" ", path.stem)))
    return re.sub(r"[\s_\-.]+", " ", stem).strip() or "folder"


def _fit(audio: Audio, num_samples: int) -> np.ndarray:
    x = audio.samples[:num_samples]
    return np.pad(x, (0, num_samples - len(x))).astype(np.float32)


def build_folder(cfg: FolderConfig, progress: Callable[[str], None] = lambda _m: None) -> Path:
    """Turn ``cfg.folder`` into a data folder at ``cfg.out`` (see models/data/dataset.py)."""
    from models.data.assemble import assemble

    from models.data.sources import held_out_reason

    root = Path(cfg.folder)
    if held_out_reason(root):
        raise DatasetError(held_out_reason(root))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES) if root.is_dir() else []
    if not files:
        raise DatasetError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {root}")
    bcfg = BuildConfig(out=cfg.out, sources=("folder",), mel=cfg.mel, seed=cfg.seed, keep_audio=cfg.keep_audio,
                       velocities=(), procedural_count=0, filter=cfg.filter)
    mel_cfg = MEL_PRESETS[cfg.mel]
    by_inst: dict[str, list[Path]] = {}
    for f in files:
        by_inst.setdefault(instrument_of(f, root), []).append(f)
    out = Path(cfg.out)
    parts_dir = out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    worker = _Worker(bcfg, str(parts_dir))
    specs = []
    start = time.perf_counter()
    for index, (name, paths) in enumerate(sorted(by_inst.items())):
        spec, part = _instrument_part(name, paths, root, mel_cfg, cfg.filter, worker)
        specs.append(spec)
        np.savez(parts_dir / f"{index:05d}.npz", fingerprint=np.array(bcfg.fingerprint()), **part)
        progress(f"[{index + 1}/{len(by_inst)}] {name}: {len(part['keys'])} notes, "
                 f"{len(part['rejected_keys'])} rejected")
    plan = Plan(specs, {}, {})
    assemble(bcfg, plan, out, "folder", dict(rendered=len(specs), wall_s=time.perf_counter() - start), progress)
    return out


def _instrument_part(name: str, paths: list[Path], root: Path, mel_cfg, fcfg: FilterConfig, worker: _Worker):
    rows, keys, vels, ests, rejected = [], [], [], [], []
    sr = mel_cfg.sample_rate
    for path in paths:
        vel = velocity_from_name(path.stem)
        try:
            audio = load_audio(path, sr, max_duration_s=mel_cfg.num_samples / sr)
        except AudioFileError as exc:
            rejected.append((0, vel, "silent" if "silent" in str(exc).lower() else "unreadable", np.nan))
            continue
        x = _fit(audio, mel_cfg.num_samples)
        named = pitch_from_name(path.stem)
        check = check_note(Audio(x, sr), fcfg)
        label = named if named is not None else (int(round(check.pitch_estimate)) if check.confidence >= fcfg.min_confidence else None)
        reason = check.reason
        if not reason and label is None:
            reason = "unclear_pitch"
        elif not reason and named is not None and check.confidence >= fcfg.min_confidence \
                and abs(check.pitch_estimate - named) > fcfg.tolerance_semitones:
            reason = "mistuned"
        elif not reason and not LOWEST_KEY <= label <= HIGHEST_KEY:
            reason = "out_of_range"
        if reason:
            rejected.append((label or 0, vel, reason, check.pitch_estimate))
            continue
        rows.append(x)
        keys.append(label)
        vels.append(vel)
        ests.append(check.pitch_estimate)
    audio = np.round(np.array(rows, np.float32).reshape(-1, mel_cfg.num_samples) * 32767).astype(np.int16)
    part = dict(name=np.array(name), keys=np.array(keys, np.int16), velocities=np.array(vels, np.int16),
                pitch_estimate=np.array(ests, np.float32), mels=worker.log_mel(audio), pitched=np.array(True),
                agreement=np.array(1.0), rejected_keys=np.array([r[0] for r in rejected], np.int16),
                rejected_velocities=np.array([r[1] for r in rejected], np.int16),
                rejected_reasons=np.array([r[2] for r in rejected], dtype="<U16"),
                rejected_estimates=np.array([r[3] for r in rejected], np.float32))
    if worker.cfg.keep_audio:
        part["audio"] = audio
    spec = InstrumentSpec(name=f"folder/{name}", source="folder", preset=str(root / name), family="unknown",
                          group=f"folder:{name}", nominal_pitched=True,
                          notes=tuple(zip(map(int, keys), map(int, vels))))
    return spec, part
