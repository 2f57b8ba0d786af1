"""Multisample packs: 24-bit WAVs plus SFZ, Decent Sampler, SoundFont 2 and Bitwig instruments.

A pack is one folder ``<folder>/<name>/`` holding ``samples/<name>_<midi>.wav`` (each with a
``smpl`` chunk holding its root note and loop) and, per chosen format, ``<name>.sfz``,
``<name>.dspreset``, ``<name>.sf2`` (engine/export_sf2.py: 16-bit copies of the samples inside)
and ``<name>.multisample`` (engine/export_multisample.py: a zip with its own copies of the WAVs).
All map the same keys to the same samples with the same loops. It is written into a hidden
temporary folder beside the target and renamed into place, so a failure leaves no half pack; an
existing pack is replaced only with ``force``. Loop ends in SFZ and dspreset are inclusive sample
indices (KeySample's are exclusive); SF2 and ``.multisample`` loop ends are exclusive.

Velocity layers and round robins (``variants``): each sample is a zone with a velocity range and a
place in its key's round-robin sequence; SFZ writes ``lovel``/``hivel`` and
``seq_length``/``seq_position``, Decent Sampler ``loVel``/``hiVel`` and ``seqMode="round_robin"``
with ``seqLength``/``seqPosition``, Bitwig ``<velocity low high>`` and ``zone-logic="round-robin"``.
SoundFont 2 has no round robins: it writes every velocity layer's first round robin only (see
engine/export_sf2.py). Variants' WAVs are ``samples/<name>_<midi>_v<layer>_rr<n>.wav`` (1-based).
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.export_multisample import write_multisample
from engine.export_sf2 import write_sf2
from engine.key_cache import PLAIN, KeySample, VariantKey, Variations
from models.errors import UserError

FORMATS = ("sfz", "dspreset", "sf2", "multisample", "wav")
ALL = "all"  # check_formats: every format
NAME_PATTERN = re.compile(r"[^A-Za-z0-9_.-]+")


class ExportError(UserError):
    """A pack could not be written (nothing was left behind)."""


class PackExistsError(ExportError):
    """The target pack folder exists and ``force`` was not given."""


@dataclass(frozen=True)
class Zone:
    """One sample's place in the pack: its file, the MIDI range it plays over, and (with velocity
    layers and round robins) its velocity range and place in its round-robin sequence."""

    midi: int
    lokey: int
    hikey: int
    wav: str                     # path relative to the pack folder
    key: KeySample
    lovel: int = 0
    hivel: int = 127
    seq_position: int = 1        # 1-based, as SFZ and Decent Sampler count
    seq_length: int = 1

    @property
    def layered(self) -> bool:
        """Whether the zone is one of several on its keys (a velocity range or a round robin)."""
        return self.seq_length > 1 or (self.lovel, self.hivel) != (0, 127)


def safe_name(name: str) -> str:
    """A file-system and SFZ friendly version of ``name`` (letters, digits, ``_ . -``)."""
    cleaned = NAME_PATTERN.sub("_", name.strip()).strip("._")
    if not cleaned:
        raise ExportError(f"pack name {name!r} has no usable characters")
    return cleaned


def zones(keys: Mapping[int, KeySample], name: str, variants: Mapping[VariantKey, KeySample] | None = None,
          variations: Variations = PLAIN) -> list[Zone]:
    """Map every MIDI note from the lowest to the highest rendered key to exactly one rendered key.

    Gaps between rendered keys are split halfway (the lower half plays the lower key). With
    ``variations``, each key has a zone per velocity layer and round robin it has a sample for (a
    layer without any plays the main sample), each over that layer's velocities.
    """
    notes = sorted(keys)
    out = []
    for i, midi in enumerate(notes):
        lo = midi if i == 0 else (notes[i - 1] + midi) // 2 + 1
        hi = midi if i == len(notes) - 1 else (midi + notes[i + 1]) // 2
        main = Zone(midi, lo, hi, f"samples/{name}_{midi:03d}.wav", keys[midi])
        out += [main] if variations.count == 1 else _layer_zones(main, name, variants or {}, variations)
    return out


def _layer_zones(main: Zone, name: str, variants: Mapping[VariantKey, KeySample], v: Variations) -> list[Zone]:
    """The zones of one key with velocity layers and round robins (see :func:`zones`)."""
    out = []
    for layer in range(v.velocity_layers):
        lovel, hivel = v.layer_range(layer)
        found = [(rr, main.key if (layer, rr) == (v.main_layer, 0) else variants.get((main.midi, layer, rr)))
                 for rr in range(v.round_robins)]
        found = [(rr, k) for rr, k in found if k is not None] or [(0, main.key)]
        for position, (rr, key) in enumerate(found, 1):
            wav = main.wav if key is main.key else f"samples/{name}_{main.midi:03d}_v{layer + 1}_rr{rr + 1}.wav"
            out.append(replace(main, wav=wav, key=key, lovel=lovel, hivel=hivel, seq_position=position,
                               seq_length=len(found)))
    return out


def sfz_text(zones_: Iterable[Zone], name: str, release_s: float) -> str:
    lines = [f"// {name}: generated by hypergan render (HyperGANStrument sampler)", "",
             "<global>", "ampeg_attack=0.001", ""]
    for z in zones_:
        k = z.key
        layered = [f"lovel={z.lovel} hivel={z.hivel}"] if (z.lovel, z.hivel) != (0, 127) else []
        if z.seq_length > 1:
            layered.append(f"seq_length={z.seq_length} seq_position={z.seq_position}")
        lines += [
            "<region>",
            f"sample={z.wav}",
            f"lokey={z.lokey} hikey={z.hikey} pitch_keycenter={k.root_note}",
            *layered,
            f"loop_mode=loop_continuous loop_start={k.loop_start} loop_end={k.loop_end - 1}",
            f"ampeg_release={release_s:g}",
            "",
        ]
    return "\n".join(lines)


def dspreset_text(zones_: Iterable[Zone], release_s: float) -> str:
    root = ET.Element("DecentSampler", minVersion="1.0.0")
    groups = ET.SubElement(root, "groups", attack="0.001", decay="0", sustain="1.0", release=f"{release_s:g}")
    group = ET.SubElement(groups, "group")
    for z in zones_:
        k = z.key
        layered = {}
        if (z.lovel, z.hivel) != (0, 127):
            layered.update(loVel=str(z.lovel), hiVel=str(z.hivel))
        if z.seq_length > 1:
            layered.update(seqMode="round_robin", seqLength=str(z.seq_length), seqPosition=str(z.seq_position))
        ET.SubElement(group, "sample", path=z.wav, rootNote=str(k.root_note), loNote=str(z.lokey),
                      hiNote=str(z.hikey), **layered, loopStart=str(k.loop_start), loopEnd=str(k.loop_end - 1),
                      loopEnabled="true")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """The chosen formats, lower case and without repeats (``all`` stands for every one)."""
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    if ALL in chosen:
        chosen = tuple(dict.fromkeys(f for f in chosen + FORMATS if f != ALL))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise ExportError(f"unknown pack format(s) {unknown or 'none'} (choose from {', '.join(FORMATS)})")
    return chosen


def check_target(folder: str | Path, name: str, force: bool = False) -> Path:
    """The pack folder :func:`export_pack` would write; raise now if it cannot (exists, bad name)."""
    folder = Path(folder)
    target = folder / safe_name(name)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} is not a folder")
    if any(p.exists() and not p.is_dir() for p in folder.parents):
        raise ExportError(f"cannot create {folder}: a parent is not a folder")
    if target.exists() and not force:
        raise PackExistsError(f"{target} already exists (use --force to replace it)")
    return target


def add_loop_chunk(path: Path, key: KeySample) -> None:
    """Append a RIFF ``smpl`` chunk (root note, one forward loop, end inclusive) to a WAV file.

    Samplers that read loops from the WAV itself (Decent Sampler without loop attributes, most DAW
    samplers on drag and drop) then loop like the SFZ.
    """
    period_ns = round(1e9 / key.sample_rate)
    chunk = struct.pack("<9I", 0, 0, period_ns, key.root_note, 0, 0, 0, 1, 0)
    chunk += struct.pack("<6I", 0, 0, key.loop_start, key.loop_end - 1, 0, 0)
    with open(path, "r+b") as fh:
        header = fh.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            raise ExportError(f"{path.name} is not a RIFF WAVE file")
        fh.seek(0, os.SEEK_END)
        if fh.tell() % 2:
            fh.write(b"\0")                      # chunks start on even offsets
        fh.write(b"smpl" + struct.pack("<I", len(chunk)) + chunk)
        size = fh.tell() - 8
        fh.seek(4)
        fh.write(struct.pack("<I", size))


def read_loop_chunk(path: Path) -> tuple[int, int, int] | None:
    """(root note, loop start, loop end inclusive) from a WAV's ``smpl`` chunk, or None."""
    data = Path(path).read_bytes()
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos: pos + 4], struct.unpack("<I", data[pos + 4: pos + 8])[0]
        if tag == b"smpl" and size >= 60:
            fields = struct.unpack("<15I", data[pos + 8: pos + 68])
            return fields[3], fields[11], fields[12]
        pos += 8 + size + (size % 2)
    return None


def _write_pack(tmp: Path, zones_: list[Zone], name: str, formats: tuple[str, ...], release_s: float) -> None:
    (tmp / "samples").mkdir()
    for z in {z.wav: z for z in zones_}.values():   # a main sample standing in for a layer: written once
        samples = np.clip(z.key.samples, -1.0, 1.0)
        sf.write(str(tmp / z.wav), samples, z.key.sample_rate, subtype="PCM_24", format="WAV")
        add_loop_chunk(tmp / z.wav, z.key)
    if "sfz" in formats:
        (tmp / f"{name}.sfz").write_text(sfz_text(zones_, name, release_s), encoding="utf-8")
    if "dspreset" in formats:
        (tmp / f"{name}.dspreset").write_text(dspreset_text(zones_, release_s), encoding="utf-8")
    if "sf2" in formats:
        write_sf2(tmp / f"{name}.sf2", zones_, name, release_s)
    if "multisample" in formats:
        write_multisample(tmp / f"{name}.multisample", tmp, zones_, name)


def _move_into_place(tmp: Path, target: Path, force: bool) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    if not force:
        raise PackExistsError(f"{target} already exists (use --force to replace it)")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old / target.name, target)   # put the previous pack back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this export created (deepest first) if they are still empty."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def export_pack(keys: Mapping[int, KeySample], name: str, folder: str | Path,
                formats: Iterable[str] = ("sfz", "dspreset"), force: bool = False,
                release_s: float = 0.3, variants: Mapping[VariantKey, KeySample] | None = None,
                variations: Variations = PLAIN) -> Path:
    """Write the pack ``<folder>/<name>/`` and return its path (see the module docstring).

    ``formats`` picks the instrument files (``sfz``, ``dspreset``, ``sf2``, ``multisample``, or
    ``all``); the WAVs are always written (``("wav",)`` writes only them). ``variants`` (from
    ``Engine.render_variations``) add velocity layers and round robins laid out by ``variations``.
    Raises ExportError (a UserError) with nothing left behind.
    """
    if not keys:
        raise ExportError("no rendered keys to export")
    formats = check_formats(formats)
    name = safe_name(name)
    target = check_target(folder, name, force)
    zones_ = zones(keys, name, variants, variations)
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=folder))
        os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes it private (0700); a pack is an ordinary folder
    except OSError as exc:
        _remove_empty(created)
        raise ExportError(f"cannot write to {folder}: {exc.strerror or exc}") from exc
    try:
        _write_pack(tmp, zones_, name, formats, release_s)
        _move_into_place(tmp, target, force)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        if isinstance(exc, (OSError, sf.LibsndfileError)):
            reason = getattr(exc, "strerror", None) or exc
            raise ExportError(f"could not write the pack {target}: {reason}") from exc
        raise
    return target


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
