"""SoundFont (SF2/SF3) headers: presets, the keys and velocities each really covers, and font checks.

Only the ``pdta`` chunk (the instrument tree) and the sizes of the sample chunk are read; samples are
left to the renderer. A file that is not a SoundFont, is truncated or has an inconsistent tree raises
``FontError`` with the reason, so a build can stop clearly before any worker starts.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from models.errors import UserError

PERCUSSION_BANK = 128
# SoundFont generator numbers (SF 2.04, section 8.1.2).
GEN_INSTRUMENT = 41
GEN_KEY_RANGE = 43
GEN_VEL_RANGE = 44
GEN_SAMPLE_ID = 53
SAMPLE_TYPE_ROM = 0x8000


class FontError(UserError):
    """A SoundFont file is missing, truncated, corrupt or not a SoundFont."""


@dataclass(frozen=True)
class Zone:
    """One preset-zone x instrument-zone pair that maps keys/velocities to a sample."""

    key_lo: int
    key_hi: int
    vel_lo: int
    vel_hi: int
    sample: int


@dataclass(frozen=True)
class Preset:
    """A preset of a font: ``bank``/``program`` as MIDI selects it, and its sounding zones."""

    name: str
    bank: int
    program: int
    zones: tuple[Zone, ...]

    def keys(self, velocity: int | None = None) -> list[int]:
        """MIDI keys (0..127) that trigger at least one sample (at ``velocity`` if given)."""
        covered = set()
        for z in self.zones:
            if velocity is None or z.vel_lo <= velocity <= z.vel_hi:
                covered.update(range(z.key_lo, z.key_hi + 1))
        return sorted(covered)

    @property
    def is_percussion(self) -> bool:
        return self.bank == PERCUSSION_BANK


@dataclass(frozen=True)
class FontInfo:
    """Everything the build needs to know about a font file before rendering it."""

    path: str
    sha256: str
    size_bytes: int
    is_sf3: bool
    presets: tuple[Preset, ...]

    def melodic(self) -> list[Preset]:
        """Presets outside the percussion bank, sorted by (program, bank)."""
        return sorted((p for p in self.presets if not p.is_percussion), key=lambda p: (p.program, p.bank))


def _chunks(data: bytes, start: int, end: int, where: str) -> dict[str, tuple[int, int]]:
    """Chunk id -> (offset of payload, size) for the RIFF sub-chunks in ``data[start:end]``."""
    out: dict[str, tuple[int, int]] = {}
    pos = start
    while pos + 8 <= end:
        cid = data[pos:pos + 4].decode("latin-1")
        size = struct.unpack_from("<I", data, pos + 4)[0]
        if pos + 8 + size > end:
            raise FontError(f"{where}: chunk '{cid}' runs past the end of the file (truncated?)")
        key = cid
        if cid == "LIST":
            key = "LIST:" + data[pos + 8:pos + 12].decode("latin-1")
        out[key] = (pos + 8, size)
        pos += 8 + size
        # RIFF pads odd chunks to even length, but some SF3 writers (Polyphone) do not.
        if size & 1 and not _is_chunk_id(data[pos:pos + 4]):
            pos += 1
    return out


def _is_chunk_id(raw: bytes) -> bool:
    return len(raw) == 4 and all(32 < c < 127 for c in raw)


def _records(data: bytes, chunk: tuple[int, int], fmt: str, name: str, where: str) -> list[tuple]:
    offset, size = chunk
    rec = struct.calcsize(fmt)
    if size % rec or size < rec:
        raise FontError(f"{where}: '{name}' chunk has size {size}, not a multiple of {rec}")
    return [struct.unpack_from(fmt, data, offset + i * rec) for i in range(size // rec)]


def _ranges(gens: list[tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int], int | None]:
    """Key range, velocity range and terminal generator value (instrument/sample id) of a zone."""
    key, vel, term = (0, 127), (0, 127), None
    for oper, amount in gens:
        lo, hi = amount & 0xFF, amount >> 8
        if oper == GEN_KEY_RANGE:
            key = (lo, hi)
        elif oper == GEN_VEL_RANGE:
            vel = (lo, hi)
        elif oper in (GEN_INSTRUMENT, GEN_SAMPLE_ID):
            term = amount
    return key, vel, term


def _zones(bags: list[tuple], gens: list[tuple], first: int, last: int, where: str):
    """Zones ``first..last-1`` of a preset or instrument as (key, vel, term, is_global, explicit)."""
    out = []
    for b in range(first, last):
        if b + 1 >= len(bags):
            raise FontError(f"{where}: zone index {b} out of range")
        g0, g1 = bags[b][0], bags[b + 1][0]
        if not 0 <= g0 <= g1 <= len(gens):
            raise FontError(f"{where}: generator indices {g0}..{g1} out of range")
        zone_gens = [(o, a) for o, a in gens[g0:g1]]
        key, vel, term = _ranges(zone_gens)
        explicit = {o for o, _ in zone_gens}
        out.append((key, vel, term, term is None and b == first, explicit))
    return out


def _intersect(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


def _apply_global(zones: list) -> list[tuple[tuple[int, int], tuple[int, int], int]]:
    """Local zones with the global zone's ranges as defaults (SF 2.04, 7.3 and 7.7)."""
    glob_key, glob_vel = (0, 127), (0, 127)
    result = []
    for key, vel, term, is_global, explicit in zones:
        if is_global:
            glob_key, glob_vel = key, vel
            continue
        if term is None:
            continue  # a non-first zone without terminal generator is ignored (spec)
        result.append((key if GEN_KEY_RANGE in explicit else glob_key,
                       vel if GEN_VEL_RANGE in explicit else glob_vel, term))
    return result


def read_font(path: str | Path) -> FontInfo:
    """Parse the preset tree of an SF2/SF3 file. Raises ``FontError`` when it is unusable."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FontError(f"SoundFont not found: {where}")
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise FontError(f"{where}: not a SoundFont (no RIFF 'sfbk' header)")
    riff_size = struct.unpack_from("<I", data, 4)[0]
    if riff_size + 8 > len(data):
        raise FontError(f"{where}: file is truncated ({len(data)} bytes, header says {riff_size + 8})")
    top = _chunks(data, 12, riff_size + 8, where)
    for name in ("LIST:sdta", "LIST:pdta"):
        if name not in top:
            raise FontError(f"{where}: missing '{name[5:]}' list")
    sdta_off, sdta_size = top["LIST:sdta"]
    sdta = _chunks(data, sdta_off + 4, sdta_off + sdta_size, where)
    pdta_off, pdta_size = top["LIST:pdta"]
    pdta = _chunks(data, pdta_off + 4, pdta_off + pdta_size, where)
    need = ("phdr", "pbag", "pgen", "inst", "ibag", "igen", "shdr")
    missing = [n for n in need if n not in pdta]
    if missing:
        raise FontError(f"{where}: missing chunks {missing}")
    phdr = _records(data, pdta["phdr"], "<20sHHHIII", "phdr", where)
    pbag = _records(data, pdta["pbag"], "<HH", "pbag", where)
    pgen = _records(data, pdta["pgen"], "<HH", "pgen", where)
    inst = _records(data, pdta["inst"], "<20sH", "inst", where)
    ibag = _records(data, pdta["ibag"], "<HH", "ibag", where)
    igen = _records(data, pdta["igen"], "<HH", "igen", where)
    shdr = _records(data, pdta["shdr"], "<20sIIIIIBbHH", "shdr", where)
    smpl_size = sdta.get("smpl", (0, 0))[1]
    is_sf3 = any(s[9] & 0x10 for s in shdr[:-1])  # SF3 marks Ogg-compressed samples with bit 4
    if not is_sf3:
        for s in shdr[:-1]:
            if not s[9] & SAMPLE_TYPE_ROM and s[2] * 2 > smpl_size:
                raise FontError(f"{where}: sample '{_name(s[0])}' ends past the sample data (truncated?)")
    presets = []
    for i, (name, program, bank, bag, *_rest) in enumerate(phdr[:-1]):
        pzones = _apply_global(_zones(pbag, pgen, bag, phdr[i + 1][3], where))
        zones = []
        for pkey, pvel, inst_id in pzones:
            if inst_id >= len(inst) - 1:
                raise FontError(f"{where}: preset '{_name(name)}' names missing instrument {inst_id}")
            izones = _apply_global(_zones(ibag, igen, inst[inst_id][1], inst[inst_id + 1][1], where))
            for ikey, ivel, sample_id in izones:
                if sample_id >= len(shdr) - 1:
                    raise FontError(f"{where}: instrument names missing sample {sample_id}")
                if shdr[sample_id][9] & SAMPLE_TYPE_ROM:
                    continue
                key, vel = _intersect(pkey, ikey), _intersect(pvel, ivel)
                if key and vel:
                    zones.append(Zone(key[0], key[1], vel[0], vel[1], sample_id))
        presets.append(Preset(_name(name), bank, program, tuple(zones)))
    return FontInfo(str(path), hashlib.sha256(data).hexdigest(), len(data), is_sf3, tuple(presets))


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()
