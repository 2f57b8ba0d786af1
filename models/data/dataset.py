"""The training set on disk and in memory: ``load_noteset(root) -> NoteSet``.

Layout of a built set (every array a plain ``.npy``, memory-mapped on load; no pickle):
    manifest.json        format, MelConfig, instruments, families, counts, array shapes
    mels.npy             float16 [N, n_mels, n_frames]  natural-log mel (models/signal/mel.py LogMel)
    audio.npy            int16   [N, num_samples]       only with --keep-audio
    pitch.npy, velocity.npy, family.npy (int16), instrument.npy (int32), split.npy (int8)
    pitch_estimate.npy   float32 [N]  measured MIDI pitch (NaN where none was measured)
    DATASET.md           the data card
The manifest is written last, so a folder without one is an unfinished build.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.signal.mel import MelConfig

FORMAT = "hypergan-noteset/1"
SPLITS = ("train", "valid", "test")
LABEL_DTYPES = {"pitch": "int16", "velocity": "int16", "instrument": "int32", "family": "int16",
                "split": "int8", "pitch_estimate": "float32"}


class DatasetError(UserError):
    """A data folder is missing, unfinished, or its files disagree with its manifest."""


@dataclass(frozen=True)
class InstrumentInfo:
    """One instrument (a font preset, a procedural recipe draw, or a user folder)."""

    name: str
    source: str        # musescore | timgm6mb | gmbank | fluidr3 | procedural | folder
    preset: str        # "bank:program" for fonts, "recipe#index" for procedural, the folder otherwise
    family: str        # one of NoteSet.families
    split: int         # 0 train, 1 valid, 2 test
    pitched: bool      # False: notes kept for timbre, excluded from pitch checks


@dataclass(frozen=True)
class NoteSet:
    """All notes of a built set; arrays are memory-mapped, row i is note i."""

    root: Path
    mels: np.ndarray            # float16 [N, n_mels, n_frames]
    audio: np.ndarray | None    # int16 [N, num_samples]
    pitch: np.ndarray           # int16 [N] MIDI 21..108
    velocity: np.ndarray        # int16 [N]
    instrument: np.ndarray      # int32 [N] index into .instruments
    family: np.ndarray          # int16 [N] index into .families
    split: np.ndarray           # int8 [N]
    pitch_estimate: np.ndarray  # float32 [N]
    instruments: list[InstrumentInfo]
    families: list[str]
    mel_cfg: MelConfig
    manifest: dict

    def __len__(self) -> int:
        return int(self.pitch.shape[0])

    def indices(self, split: str | int) -> np.ndarray:
        """Row indices of one split (``"train"``/0, ``"valid"``/1, ``"test"``/2)."""
        code = SPLITS.index(split) if isinstance(split, str) else int(split)
        return np.flatnonzero(self.split == code)


def array_entry(arr: np.ndarray) -> dict:
    return {"shape": list(arr.shape), "dtype": str(arr.dtype)}


def write_manifest(root: Path, manifest: dict) -> None:
    """Write ``manifest.json`` atomically (it marks the build complete)."""
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    tmp.replace(root / "manifest.json")


def read_manifest(root: str | Path) -> dict:
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise DatasetError(f"no data folder at {root}")
    if not path.is_file():
        raise DatasetError(f"{root} holds no finished build (no manifest.json); run `hypergan data build`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: unknown format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def _open(root: Path, name: str, entry: dict) -> np.ndarray:
    path = root / f"{name}.npy"
    if not path.is_file():
        raise DatasetError(f"{root}: {path.name} is missing")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from exc
    if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
        raise DatasetError(f"{path}: shape {arr.shape} {arr.dtype} disagrees with the manifest "
                           f"({entry['shape']} {entry['dtype']})")
    return arr


def load_noteset(root: str | Path) -> NoteSet:
    """Open a built set (memory-mapped). Raises ``DatasetError`` if it is missing or inconsistent."""
    root = Path(root)
    manifest = read_manifest(root)
    arrays = manifest["arrays"]
    opened = {name: _open(root, name, entry) for name, entry in arrays.items()}
    n = manifest["counts"]["notes"]
    for name, arr in opened.items():
        if arr.shape[0] != n:
            raise DatasetError(f"{root}: {name}.npy has {arr.shape[0]} rows, the manifest counts {n} notes")
    instruments = [InstrumentInfo(**d) for d in manifest["instruments"]]
    if n and int(opened["instrument"].max()) >= len(instruments):
        raise DatasetError(f"{root}: instrument index out of range")
    return NoteSet(
        root=root, mels=opened["mels"], audio=opened.get("audio"), pitch=opened["pitch"],
        velocity=opened["velocity"], instrument=opened["instrument"], family=opened["family"],
        split=opened["split"], pitch_estimate=opened["pitch_estimate"], instruments=instruments,
        families=list(manifest["families"]), mel_cfg=MelConfig.from_json(manifest["mel"]), manifest=manifest,
    )


def instrument_dict(info: InstrumentInfo) -> dict:
    return asdict(info)
