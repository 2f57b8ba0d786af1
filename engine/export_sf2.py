"""SoundFont 2 export: the pack's keys as one preset (bank 0, program 0) of one instrument.

``<name>.sf2`` is a RIFF ``sfbk`` file: an ``INFO`` list (``ifil`` 2.01, ``isng``, ``INAM``), the
samples as 16-bit PCM in ``sdta/smpl`` (each followed by the 46 zero points the spec asks for),
and the ``pdta`` tree. The instrument has a global zone holding the release (``releaseVolEnv``, in
timecents, from the pack's release time) and a zone per key: ``keyRange`` (the same ranges as the
SFZ), ``overridingRootKey`` (also the sample header's ``originalPitch``), ``sampleModes`` 1 (loop
continuously) and ``sampleID``. Loop points live in the sample header as absolute indices into the
sample data; ``dwEndloop`` is the first point after the loop (KeySample's exclusive ``loop_end``).
A loop ending within 8 points of the sample's end gets the loop's first points appended, so a
player's interpolation past the loop end reads the loop's start rather than silence.

Velocity layers: a zone per key and layer, ``velRange`` (generator 44) right after ``keyRange``.
SoundFont 2 has no round robins (every zone that matches a note plays at once), so only each
layer's first round robin is written; a sample that serves several zones is stored once.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.data.sf2write import GEN_SAMPLE_MODES, riff_chunk, riff_list, sf2_name
from models.data.soundfont import GEN_INSTRUMENT, GEN_KEY_RANGE, GEN_SAMPLE_ID, GEN_VEL_RANGE, PAD_POINTS

GEN_RELEASE_VOL_ENV = 38
GEN_ROOT_KEY = 58            # overridingRootKey
LOOP_CONTINUOUS = 1
GUARD_POINTS = 8             # points a player may read past a loop's end while interpolating
PHDR, BAG, GEN, INST, SHDR = "<20sHHHIII", "<HH", "<HH", "<20sH", "<20sIIIIIBbHH"
MONO_SAMPLE = 1


def timecents(seconds: float) -> int:
    """An SF2 envelope time (1200·log2(seconds)), clamped to the spec's range [-12000, 8000]."""
    if seconds <= 0.001:
        return -12000
    return int(np.clip(round(1200 * math.log2(seconds)), -12000, 8000))


def _zstr(text: str) -> bytes:
    """An INFO string: latin-1, NUL terminated, padded to an even length."""
    raw = text.encode("latin-1", errors="replace")[:255] + b"\0"
    return raw + b"\0" * (len(raw) % 2)


def _pcm16(samples: np.ndarray, loop_start: int, loop_end: int) -> np.ndarray:
    """int16 points of ``samples`` [T], plus guard points after a loop that ends near the end."""
    x = np.clip(samples, -1.0, 1.0)
    short = GUARD_POINTS - (len(x) - loop_end)
    if short > 0:
        x = np.concatenate([x[:loop_end], x[loop_start: loop_start + GUARD_POINTS]])
    return np.round(x * 32767.0).astype("<i2")


def sf2_bytes(zones_: Sequence, name: str, release_s: float) -> bytes:
    """The whole ``.sf2`` file for ``zones_`` (engine.export.Zone, in key order)."""
    smpl, shdr, igen, ibag = [], [], [], []
    offset = 0
    ibag.append(struct.pack(BAG, 0, 0))                       # global zone: release only
    igen.append(struct.pack(GEN, GEN_RELEASE_VOL_ENV, timecents(release_s) & 0xFFFF))
    sample_ids: dict[str, int] = {}
    for z in (z for z in zones_ if z.seq_position == 1):
        k = z.key
        if z.wav not in sample_ids:
            sample_ids[z.wav] = len(shdr)
            pcm = _pcm16(k.samples, k.loop_start, k.loop_end)
            smpl += [pcm.tobytes(), bytes(2 * PAD_POINTS)]
            shdr.append(struct.pack(SHDR, sf2_name(_sample_name(name, z)), offset, offset + len(pcm),
                                    offset + k.loop_start, offset + k.loop_end, k.sample_rate, k.root_note, 0, 0,
                                    MONO_SAMPLE))
            offset += len(pcm) + PAD_POINTS
        ibag.append(struct.pack(BAG, len(igen), 0))
        igen.append(struct.pack(GEN, GEN_KEY_RANGE, z.lokey | (z.hikey << 8)))   # keyRange must come first
        if (z.lovel, z.hivel) != (0, 127):
            igen.append(struct.pack(GEN, GEN_VEL_RANGE, z.lovel | (z.hivel << 8)))   # ... then velRange
        igen += [struct.pack(GEN, GEN_ROOT_KEY, k.root_note),
                 struct.pack(GEN, GEN_SAMPLE_MODES, LOOP_CONTINUOUS),
                 struct.pack(GEN, GEN_SAMPLE_ID, sample_ids[z.wav])]         # sampleID must come last
    shdr.append(struct.pack(SHDR, sf2_name("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0))
    ibag.append(struct.pack(BAG, len(igen), 0))
    igen.append(bytes(4))
    inst = struct.pack(INST, sf2_name(name), 0) + struct.pack(INST, sf2_name("EOI"), len(ibag) - 1)
    phdr = struct.pack(PHDR, sf2_name(name), 0, 0, 0, 0, 0, 0) + struct.pack(PHDR, sf2_name("EOP"), 0, 0, 1, 0, 0, 0)
    pbag = struct.pack(BAG, 0, 0) + struct.pack(BAG, 1, 0)
    pgen = struct.pack(GEN, GEN_INSTRUMENT, 0) + bytes(4)
    mod_end = bytes(10)
    info = riff_list(b"INFO", riff_chunk(b"ifil", struct.pack("<HH", 2, 1)), riff_chunk(b"isng", _zstr("EMU8000")),
                     riff_chunk(b"INAM", _zstr(name)), riff_chunk(b"ISFT", _zstr("HyperGANStrument")))
    sdta = riff_list(b"sdta", riff_chunk(b"smpl", b"".join(smpl)))
    pdta = riff_list(b"pdta", riff_chunk(b"phdr", phdr), riff_chunk(b"pbag", pbag), riff_chunk(b"pmod", mod_end),
                     riff_chunk(b"pgen", pgen), riff_chunk(b"inst", inst), riff_chunk(b"ibag", b"".join(ibag)),
                     riff_chunk(b"imod", mod_end), riff_chunk(b"igen", b"".join(igen)),
                     riff_chunk(b"shdr", b"".join(shdr)))
    body = b"sfbk" + info + sdta + pdta
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _sample_name(name: str, zone) -> str:
    """A sample header name within SF2's 20 bytes: pack name, key and, for a layer, its suffix."""
    stem = Path(zone.wav).stem
    suffix = stem[stem.index(f"_{zone.midi:03d}"):] if f"_{zone.midi:03d}" in stem else f"_{zone.midi:03d}"
    return f"{name[:19 - len(suffix)]}{suffix}"


def write_sf2(path: Path, zones_: Sequence, name: str, release_s: float) -> None:
    """Write ``<name>.sf2`` to ``path`` (see the module docstring)."""
    Path(path).write_bytes(sf2_bytes(zones_, name, release_s))
