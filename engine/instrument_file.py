"""Saved instruments (``.hgi``): the sounds themselves and every setting that makes the instrument,
in one self-contained file.

The file is a zip holding ``manifest.json`` (format name and version, settings, and per sound its
slot, name, detected pitch, root and audio member) and each sound as a 32-bit float WAV at the
model's rate: the exact clip the engine conditions on, so a reopened sound has the same content
hash and its cached refinement is found again. Never pickle. Reading checks everything before it
returns; any problem raises :class:`InstrumentFileError` with one clear line.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from engine.envelope import Envelope
from engine.key_cache import MAX_ROUND_ROBINS, MAX_VELOCITY_LAYERS, PLAIN, Variations
from engine.keys import MAX_NEAR_ROOT
from engine.mix import CORNERS, slot_weights
from models.errors import InstrumentFileError
from models.signal.audio import Audio

FORMAT = "hypergan-instrument"
VERSION = 1
SUFFIX = ".hgi"
MANIFEST = "manifest.json"
MAX_MEMBER_BYTES = 64 << 20     # a 4 s clip is ~0.3 MB; anything near this is not ours


@dataclass(frozen=True)
class SavedSound:
    """One sound of an instrument: mono audio at the model's rate and its pitch."""

    slot: str                   # "A".."D": the pad corner (A and B: the two slider ends)
    name: str
    audio: Audio
    midi: float                 # the detected pitch (fractional MIDI)
    confidence: float           # of the detection
    root: int | None = None     # the root set by hand; None: the detected one


@dataclass(frozen=True)
class SavedInstrument:
    """Everything a saved instrument holds."""

    sounds: tuple[SavedSound, ...]
    alpha: float = 0.0                      # the A <-> B slider (two sounds)
    pad: tuple[float, float] = (0.0, 0.0)   # the morph pad's puck (three or four sounds)
    envelope: Envelope = Envelope()
    volume: float = 0.5
    refine_strength: float = 1.0            # 0: off, 1: the engine's default, up to 2
    near_root: int = 0                      # semitones around each root that play the sound itself
    variations: Variations = PLAIN          # velocity layers and round robins (engine/key_cache.py)

    def weights(self) -> dict[str, float]:
        """Each sound's weight in the mix, by slot."""
        return slot_weights([s.slot for s in self.sounds], self.alpha, self.pad)


# -- writing ----------------------------------------------------------------------------------------
def save_instrument(path: str | os.PathLike, inst: SavedInstrument) -> Path:
    """Write ``inst`` to ``path`` atomically (a temp file in the same folder, then a rename)."""
    path = Path(path)
    manifest = _manifest(inst)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InstrumentFileError(f"cannot save {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2))
            for sound in inst.sounds:
                zf.writestr(_member(sound.slot), _wav_bytes(sound.audio))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InstrumentFileError(f"cannot save {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _manifest(inst: SavedInstrument) -> dict[str, Any]:
    return {
        "format": FORMAT, "version": VERSION,
        "sounds": [{"slot": s.slot, "name": s.name, "audio": _member(s.slot), "detected_midi": float(s.midi),
                    "confidence": float(s.confidence), "root": s.root} for s in inst.sounds],
        "mix": {"alpha": float(inst.alpha), "pad": [float(v) for v in inst.pad], "weights": inst.weights()},
        "envelope": asdict(inst.envelope), "volume": float(inst.volume),
        "refine_strength": float(inst.refine_strength), "near_root": int(inst.near_root),
        "variations": asdict(inst.variations),
    }


def load_sound(engine: Any, sound: SavedSound) -> tuple[Any, Any]:
    """The engine's samples of a saved sound: (at its detected pitch, as played: at its root).

    No pitch estimate runs: the saved detection (and its confidence) is taken as it was.
    """
    from dataclasses import replace

    from models.signal.audio import resample

    audio = resample(sound.audio, engine.mel_cfg.sample_rate)    # a file load: one of the two named points
    detected = replace(engine.load_sample(audio, name=sound.name, midi=sound.midi), confidence=sound.confidence)
    if sound.root is None or sound.root == detected.root_note:
        return detected, detected
    return detected, engine.load_sample(detected.audio, name=sound.name, midi=float(sound.root))


def _member(slot: str) -> str:
    return f"sounds/{slot}.wav"


def _wav_bytes(audio: Audio) -> bytes:
    if not audio.is_mono:
        raise InstrumentFileError("a saved sound must be mono")
    buffer = io.BytesIO()
    sf.write(buffer, audio.samples, audio.sample_rate, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


# -- reading ----------------------------------------------------------------------------------------
def open_instrument(path: str | os.PathLike) -> SavedInstrument:
    """Read a saved instrument; raises :class:`InstrumentFileError` (one line naming the file) on any problem."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = _read_manifest(zf)
            return _instrument(manifest, lambda member: _read_member(zf, member))
    except InstrumentFileError as exc:
        raise InstrumentFileError(f"{path.name}: {exc}") from None
    except zipfile.BadZipFile:
        raise InstrumentFileError(f"{path.name}: not a saved instrument (not a zip file) or damaged") from None
    except FileNotFoundError:
        raise InstrumentFileError(f"no such file: {path}") from None
    except OSError as exc:
        raise InstrumentFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_member(zf: zipfile.ZipFile, member: str) -> bytes:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise InstrumentFileError(f"{member} is missing") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise InstrumentFileError(f"{member} is too large ({info.file_size} bytes)")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InstrumentFileError(f"{member} is damaged ({exc})") from None


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(_read_member(zf, MANIFEST).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InstrumentFileError(f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InstrumentFileError("not a HyperGAN instrument (its manifest names another format)")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InstrumentFileError(f"unsupported format version {version!r}")
    if version > VERSION:
        raise InstrumentFileError(f"saved by a newer sampler (format version {version}); this one opens "
                                  f"version {VERSION}: update the sampler")
    if version < VERSION:
        raise InstrumentFileError(f"format version {version} is no longer supported (this sampler opens {VERSION})")
    return manifest


def _instrument(m: dict[str, Any], read: Any) -> SavedInstrument:
    sounds = _list(m, "sounds")
    if not 1 <= len(sounds) <= len(CORNERS):
        raise InstrumentFileError(f"'sounds' must hold 1 to {len(CORNERS)} sounds, not {len(sounds)}")
    parsed = tuple(_sound(entry, read) for entry in sounds)
    slots = [s.slot for s in parsed]
    if len(set(slots)) != len(slots):
        raise InstrumentFileError(f"two sounds share a slot: {slots}")
    mix = _dict(m, "mix")
    pad = mix.get("pad", [0.0, 0.0])
    if not (isinstance(pad, list) and len(pad) == 2):
        raise InstrumentFileError("'mix.pad' must be [x, y]")
    env = _dict(m, "envelope")
    envelope = Envelope(**{name: _number(env, name, 0.0 if name == "sustain" else 1e-4,
                                         1.0 if name == "sustain" else 60.0, default, where="envelope: ")
                           for name, default in asdict(Envelope()).items()})
    return SavedInstrument(
        sounds=parsed, alpha=_number(mix, "alpha", 0.0, 1.0, 0.0),
        pad=(_number({"x": pad[0]}, "x", 0.0, 1.0), _number({"y": pad[1]}, "y", 0.0, 1.0)),
        envelope=envelope, volume=_number(m, "volume", 0.0, 1.0, 0.5),
        refine_strength=_number(m, "refine_strength", 0.0, 2.0, 1.0),
        near_root=int(_number(m, "near_root", 0, MAX_NEAR_ROOT, 0, integer=True)),
        variations=_variations(m.get("variations", {})))


def _sound(entry: Any, read: Any) -> SavedSound:
    if not isinstance(entry, dict):
        raise InstrumentFileError("each entry of 'sounds' must be an object")
    slot = entry.get("slot")
    if slot not in CORNERS:
        raise InstrumentFileError(f"a sound's slot must be one of {', '.join(CORNERS)}, not {slot!r}")
    name, member = entry.get("name"), entry.get("audio")
    if not isinstance(name, str) or not isinstance(member, str):
        raise InstrumentFileError(f"sound {slot}: 'name' and 'audio' must be text")
    root = entry.get("root")
    if root is not None:
        root = int(_number(entry, "root", 21, 108, integer=True, where=f"sound {slot}: "))
    return SavedSound(slot=slot, name=name, audio=_audio(read(member), member),
                      midi=_number(entry, "detected_midi", 0.0, 140.0, where=f"sound {slot}: "),
                      confidence=_number(entry, "confidence", 0.0, 1.0, 1.0, where=f"sound {slot}: "), root=root)


def _audio(data: bytes, member: str) -> Audio:
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise InstrumentFileError(f"{member} is not readable audio ({exc})") from None
    if samples.shape[1] != 1 or samples.shape[0] == 0:
        raise InstrumentFileError(f"{member} must be mono and not empty")
    return Audio(np.ascontiguousarray(samples[:, 0]), int(rate))


# Each Variations field's allowed values (lo, hi, whole numbers only); an absent field takes its default.
VARIATION_LIMITS = {"round_robins": (1, MAX_ROUND_ROBINS, True), "velocity_layers": (1, MAX_VELOCITY_LAYERS, True),
                    "rr_z_scale": (0.0, 10.0, False), "rr_h_scale": (0.0, 10.0, False),
                    "velocity_strength": (0.0, 10.0, False), "velocity_tilt": (0.0, 10.0, False),
                    "velocity_attack": (0.0, 10.0, False),
                    "reference_velocity": (1, 127, True),
                    "seed": (0, 2**31 - 1, True)}


def _variations(section: Any) -> Variations:
    """The velocity layers and round robins of the ``variations`` section.

    An absent section or count means one sample per key (as a file saved before variations existed
    plays); other absent fields take ``Variations``' defaults. Keys this sampler does not know (a later
    one's additions) are skipped.
    """
    if not isinstance(section, dict):
        raise InstrumentFileError("'variations' must be an object")
    values: dict[str, Any] = {"round_robins": PLAIN.round_robins, "velocity_layers": PLAIN.velocity_layers}
    for f in fields(Variations):
        if f.name in section:
            lo, hi, integer = VARIATION_LIMITS[f.name]
            value = _number(section, f.name, lo, hi, integer=integer, where="variations: ")
            values[f.name] = int(value) if integer else value
    return Variations(**values)


def _list(d: dict[str, Any], key: str) -> list[Any]:
    value = d.get(key)
    if not isinstance(value, list):
        raise InstrumentFileError(f"'{key}' must be a list")
    return value


def _dict(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key, {})
    if not isinstance(value, dict):
        raise InstrumentFileError(f"'{key}' must be an object")
    return value


_REQUIRED = object()


def _number(d: dict[str, Any], key: str, lo: float, hi: float, default: Any = _REQUIRED,
            integer: bool = False, where: str = "") -> float:
    """``d[key]``, a number within [lo, hi] (an int when ``integer``), or ``default`` when absent."""
    value = d.get(key, default)
    if value is _REQUIRED:
        raise InstrumentFileError(f"{where}'{key}' is missing")
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or not lo <= value <= hi:
        kind = "a whole number" if integer else "a number"
        raise InstrumentFileError(f"{where}'{key}' must be {kind} from {lo:g} to {hi:g}, not {value!r}")
    return float(value)
