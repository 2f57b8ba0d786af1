"""Where instruments come from: the General MIDI SoundFonts, the procedural family, a user's folder.

``plan_instruments`` turns a list of source names into ``InstrumentSpec``s (what to render, which
keys and velocities) without rendering anything, so that a build knows its whole plan up front.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from models.data import families as fam
from models.data.render import distinct_velocities
from models.data.soundfont import FontError, FontInfo, Preset, read_font
from models.units import ALL_KEYS



@dataclass(frozen=True)
class FontSource:
    """A General MIDI SoundFont from a Debian package."""

    name: str
    filename: str
    package: str
    licence: str


FONT_SOURCES: dict[str, FontSource] = {s.name: s for s in (
    FontSource("musescore", "MuseScore_General_Lite.sf3", "musescore-general-soundfont-small",
               "MIT (parts public domain / CC0): S. Christian Collins, Michael Cowgill, Frank Wen (Fluid R3)"),
    FontSource("timgm6mb", "TimGM6mb.sf2", "timgm6mb-soundfont", "GPL-2: Tim Brechbill, 2004"),
    FontSource("gmbank", "sf_GMbank.sf2", "csound-soundfont", "public domain (Debian: 'Public Domain in its licence field')"),
    FontSource("fluidr3", "FluidR3_GM.sf2", "fluid-soundfont-gm", "MIT: Frank Wen, 2000-2002, 2008"),
)}
PROCEDURAL = "procedural"
DEFAULT_SOURCES = ("musescore", "timgm6mb", "gmbank", "fluidr3", PROCEDURAL)
SYSTEM_FONT_DIRS = ("/usr/share/sounds/sf3", "/usr/share/sounds/sf2")


# The out-of-set evaluation (models/evaluation/out_of_set.py) judges the instrument on these Debian
# packages' sounds; training on any of them would make that judgement worthless.
HELD_OUT = {"alsa-utils": "/usr/share/sounds/alsa", "freepats": "/usr/share/midi/freepats",
            "sound-theme-freedesktop": "/usr/share/sounds/freedesktop", "espeak-ng": "espeak-ng-data"}


def held_out_reason(path: str | Path) -> str:
    """Why ``path`` must not feed a training set ("" when it may): it belongs to the out-of-set sounds."""
    resolved = str(Path(path).resolve())
    for package, where in HELD_OUT.items():
        if where in resolved or (package == "freepats" and "freepats" in resolved.lower()):
            return f"{path} belongs to {package}, which the out-of-set evaluation holds out of training"
    return ""


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument to render: its identity, labels and the notes it plays."""

    name: str
    source: str
    preset: str                           # "bank:program" | "recipe#index" | folder path
    family: str
    group: str                            # split group: instruments of one group share a split
    nominal_pitched: bool
    notes: tuple[tuple[int, int], ...]    # (midi key, velocity) pairs
    font_path: str = ""
    bank: int = 0
    program: int = 0
    recipe_index: int = -1
    samples: frozenset = frozenset()      # font sample ids (to group presets that share samples)


def font_dirs(font_dir: str | None = None) -> list[Path]:
    """Folders searched for fonts: only ``font_dir`` (``:``-separated) when given, else
    $HYPERGAN_FONTS, carry/fonts (what travels to the GPU machine), then the system's."""
    dirs = font_dir.split(os.pathsep) if font_dir else [os.environ.get("HYPERGAN_FONTS"), "carry/fonts",
                                                        *SYSTEM_FONT_DIRS]
    return [Path(d) for d in dirs if d]


def font_file_source(path: str) -> FontSource:
    """A font given by its path: the source is named after the file (``MyFont.sf2`` -> ``myfont``)."""
    p = Path(path)
    return FontSource(p.stem.lower(), p.name, "-", "unknown (a font file given by path)")


def source_name(name: str) -> str:
    return font_file_source(name).name if name.lower().endswith((".sf2", ".sf3")) else name


def find_font(source: FontSource, font_dir: str | None = None) -> Path:
    """The source's font file; a slimmed copy may carry the other extension (transcoded to SF3)."""
    stem, ext = os.path.splitext(source.filename)
    names = (source.filename, stem + (".sf3" if ext.lower() == ".sf2" else ".sf2"))
    for d in font_dirs(font_dir):
        for name in names:
            path = d / name
            if path.is_file():
                return path
    searched = ", ".join(str(d) for d in font_dirs(font_dir))
    raise FontError(f"source '{source.name}' needs {source.filename} (Debian package {source.package}); "
                    f"not found in {searched}")


def _font_instruments(source: FontSource, info: FontInfo, velocities: tuple[int, ...],
                      dropped: dict[str, str]) -> tuple[list[InstrumentSpec], dict[str, list[str]]]:
    """Melodic presets of a font -> specs; also the presets left out, by reason."""
    specs: list[InstrumentSpec] = []
    skipped: dict[str, list[str]] = {"duplicate_samples": [], "reference_mismatch": [], "no_keys": []}
    seen: dict[frozenset, str] = {}
    for preset in sorted(info.melodic(), key=lambda p: (p.bank != 0, p.bank, p.program)):
        tag = f"{preset.bank}:{preset.program}"
        label = f"{tag} {preset.name}"
        signature = frozenset(preset.zones)
        if signature in seen:
            # Same samples on the same keys: near-identical notes under two class labels would
            # teach the instrument classifier a distinction that is not in the sound.
            skipped["duplicate_samples"].append(f"{label} (= {seen[signature]})")
            continue
        seen[signature] = label
        if tag in dropped:
            skipped["reference_mismatch"].append(f"{label}: {dropped[tag]}")
            continue
        notes = _preset_notes(preset, velocities)
        if not notes:
            skipped["no_keys"].append(label)
            continue
        specs.append(InstrumentSpec(
            name=f"{source.name}/{tag} {preset.name}", source=source.name, preset=tag,
            family=fam.family_of(preset.bank, preset.program), group=_gm_group(preset),
            nominal_pitched=fam.nominally_pitched(preset.bank, preset.program), notes=tuple(notes),
            font_path=info.path, bank=preset.bank, program=preset.program,
            samples=frozenset(z.sample for z in preset.zones)))
    return specs, skipped


def _gm_group(preset: Preset) -> str:
    if preset.bank == fam.MT32_BANK:
        return f"mt32:{preset.program}"
    return f"gm:{preset.program}"


def _preset_notes(preset: Preset, velocities: tuple[int, ...]) -> list[tuple[int, int]]:
    notes = []
    for key in ALL_KEYS:
        notes.extend((key, v) for v in distinct_velocities(preset, key, velocities))
    return notes


def procedural_instruments(count: int, seed: int, velocities: tuple[int, ...]) -> list[InstrumentSpec]:
    import numpy as np

    from models.data.procedural import _seed
    from models.data.recipes import recipe_of

    specs = []
    for i in range(count):
        recipe = recipe_of(i)
        # One velocity per key, drawn per instrument: velocity still varies the timbre, while a
        # procedural instrument costs 88 notes like a font preset instead of 88 x len(velocities).
        rng = np.random.default_rng(_seed("velocities", seed, i))
        notes = tuple((k, int(rng.choice(sorted(velocities)))) for k in ALL_KEYS)
        specs.append(InstrumentSpec(
            name=f"procedural/{recipe.name}#{i}", source=PROCEDURAL, preset=f"{recipe.name}#{i}",
            family=recipe.family, group=f"procedural:{i}", nominal_pitched=recipe.pitched, notes=notes,
            recipe_index=i))
    return specs


@dataclass(frozen=True)
class Plan:
    instruments: list[InstrumentSpec]
    fonts: dict[str, FontInfo]                 # source name -> parsed font
    skipped: dict[str, dict[str, list[str]]]   # source name -> reason -> presets


def plan_instruments(sources: list[str], velocities: tuple[int, ...], seed: int, procedural_count: int,
                     font_dir: str | None = None, font_check: dict | None = None) -> Plan:
    """Everything a build will render, in a fixed order. Raises ``FontError`` for unusable fonts."""
    instruments: list[InstrumentSpec] = []
    fonts: dict[str, FontInfo] = {}
    skipped: dict[str, dict[str, list[str]]] = {}
    for name in sources:
        if name == PROCEDURAL:
            instruments.extend(procedural_instruments(procedural_count, seed, velocities))
            continue
        if name.lower().endswith((".sf2", ".sf3")):
            source, path = font_file_source(name), Path(name)
        elif name in FONT_SOURCES:
            source = FONT_SOURCES[name]
            path = find_font(source, font_dir)
        else:
            raise FontError(f"unknown source '{name}' (known: {', '.join([*FONT_SOURCES, PROCEDURAL])}, "
                            f"or a path to an .sf2/.sf3 file)")
        if held_out_reason(path):
            raise FontError(held_out_reason(path))
        info = read_font(path)
        fonts[source.name] = info
        entry = (font_check or {}).get(info.origin_sha256, {})
        dropped = dict(entry.get("drop", {}))
        if info.slimmed:  # what the transcoded copy plays unlike fluidsynth plays the original
            dropped.update({tag: f"slimmed copy: {why}" for tag, why in entry.get("slimmed", {}).get("drop", {}).items()
                            if tag not in dropped})
        specs, skipped[source.name] = _font_instruments(source, info, velocities, dropped)
        instruments.extend(specs)
    return Plan(instruments, fonts, skipped)
