"""Slim a SoundFont to the presets a build renders, so the fonts fit the GPU machine's carry budget.

The preset/instrument tree of the kept presets is copied record for record (generators and
modulators unchanged, instrument and sample indices renumbered), and only the samples they use
(plus stereo partners) stay in the sample chunk. SF2 sample points and SF3 Ogg byte ranges are
both handled (SF3 loop points are relative to the sample, SF2 ones absolute). The notes rendered
from a slimmed font are identical to the original's.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from models.data.soundfont import (GEN_INSTRUMENT, GEN_SAMPLE_ID, PAD_POINTS, SLIM_NOTE, FontError, _chunks,
                                   _records, read_font)
from models.data.sf2write import _chunk, _list, _name

PHDR, BAG, GEN, MOD, INST, SHDR = "<20sHHHIII", "<HH", "<HH", "<HHhHH", "<20sH", "<20sIIIIIBbHH"


def _tree(data: bytes, where: str) -> tuple[dict, dict]:
    riff = struct.unpack_from("<I", data, 4)[0]
    top = _chunks(data, 12, riff + 8, where)
    o, size = top["LIST:pdta"]
    pdta = _chunks(data, o + 4, o + size, where)
    rec = {name: _records(data, pdta[name], fmt, name, where) for name, fmt in
           (("phdr", PHDR), ("pbag", BAG), ("pgen", GEN), ("pmod", MOD), ("inst", INST), ("ibag", BAG),
            ("igen", GEN), ("imod", MOD), ("shdr", SHDR))}
    return top, rec


def _copy_zones(bags, gens, mods, first, last, remap_oper, remap):
    """Zones first..last-1 -> (new bag records relative to 0, gens, mods) with one generator remapped."""
    out_bags, out_gens, out_mods = [], [], []
    for b in range(first, last):
        out_bags.append((len(out_gens), len(out_mods)))
        for oper, amount in gens[bags[b][0]:bags[b + 1][0]]:
            out_gens.append((oper, remap[amount] if oper == remap_oper else amount))
        out_mods.extend(mods[bags[b][1]:bags[b + 1][1]])
    return out_bags, out_gens, out_mods


def slim_font(src: str | Path, keep: set[tuple[int, int]], dst: str | Path) -> Path:
    """Write ``dst`` holding only presets ``(bank, program)`` of ``src``. Returns ``dst``."""
    src, dst = Path(src), Path(dst)
    info = read_font(src)
    data = src.read_bytes()
    top, r = _tree(data, str(src))
    sdta_off, sdta_size = top["LIST:sdta"]
    smpl_off, _ = _chunks(data, sdta_off + 4, sdta_off + sdta_size, str(src))["smpl"]
    phdr = r["phdr"]
    kept = [i for i, p in enumerate(phdr[:-1]) if (p[2], p[1]) in keep]
    if len(kept) != len(keep):
        raise FontError(f"{src}: presets {sorted(keep - {(phdr[i][2], phdr[i][1]) for i in kept})} not found")
    insts = sorted({a for i in kept for o, a in r["pgen"][r["pbag"][phdr[i][3]][0]:r["pbag"][phdr[i + 1][3]][0]]
                    if o == GEN_INSTRUMENT})
    inst_map = {old: new for new, old in enumerate(insts)}
    samples = set()
    for i in insts:
        first, last = r["inst"][i][1], r["inst"][i + 1][1]
        samples |= {a for o, a in r["igen"][r["ibag"][first][0]:r["ibag"][last][0]] if o == GEN_SAMPLE_ID}
    shdr = r["shdr"]
    samples |= {shdr[s][8] for s in samples if shdr[s][9] & 0x0E and shdr[s][8] < len(shdr) - 1}  # stereo links
    order = sorted(samples)
    sample_map = {old: new for new, old in enumerate(order)}
    new_phdr, pbag, pgen, pmod = [], [], [], []
    for i in kept:
        bags, gens, mods = _copy_zones(r["pbag"], r["pgen"], r["pmod"], phdr[i][3], phdr[i + 1][3], GEN_INSTRUMENT, inst_map)
        new_phdr.append((phdr[i][0], phdr[i][1], phdr[i][2], len(pbag), *phdr[i][4:]))
        pbag += [(g + len(pgen), m + len(pmod)) for g, m in bags]
        pgen += gens
        pmod += mods
    new_inst, ibag, igen, imod = [], [], [], []
    for i in insts:
        bags, gens, mods = _copy_zones(r["ibag"], r["igen"], r["imod"], r["inst"][i][1], r["inst"][i + 1][1],
                                       GEN_SAMPLE_ID, sample_map)
        new_inst.append((r["inst"][i][0], len(ibag)))
        ibag += [(g + len(igen), m + len(imod)) for g, m in bags]
        igen += gens
        imod += mods
    smpl, new_shdr = bytearray(), []
    point = 1 if info.is_sf3 else 2  # SF3 offsets count bytes of Ogg data, SF2 offsets count 16-bit points
    for s in order:
        name, start, end, loop_s, loop_e, rate, pitch, corr, link, kind = shdr[s]
        new_start = len(smpl) // point
        smpl += data[smpl_off + start * point: smpl_off + end * point]
        shift = 0 if kind & 0x10 else new_start - start  # compressed samples keep relative loops
        if not kind & 0x10:
            smpl += bytes(PAD_POINTS * 2)
        new_shdr.append((name, new_start, new_start + end - start, loop_s + shift, loop_e + shift, rate, pitch, corr,
                         sample_map.get(link, 0), kind))
    if len(smpl) % 2:
        # tinysoundfont's RIFF reader ignores pad bytes, so no chunk may need one: even out the data.
        smpl += b"\0"
    return _write(dst, data, top, new_phdr, pbag, pgen, pmod, new_inst, ibag, igen, imod, new_shdr, bytes(smpl),
                  info.origin_sha256)


def _write(dst, data, top, phdr, pbag, pgen, pmod, inst, ibag, igen, imod, shdr, smpl, origin_sha) -> Path:
    pack = lambda fmt, rows: b"".join(struct.pack(fmt, *row) for row in rows)  # noqa: E731
    phdr = phdr + [(_name("EOP"), 0, 0, len(pbag), 0, 0, 0)]
    pbag = pbag + [(len(pgen), len(pmod))]
    inst = inst + [(_name("EOI"), len(ibag))]
    ibag = ibag + [(len(igen), len(imod))]
    shdr = shdr + [(_name("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    pdta = _list(b"pdta", _chunk(b"phdr", pack(PHDR, phdr)), _chunk(b"pbag", pack(BAG, pbag)),
                 _chunk(b"pmod", pack(MOD, pmod) + bytes(10)), _chunk(b"pgen", pack(GEN, pgen) + bytes(4)),
                 _chunk(b"inst", pack(INST, inst)), _chunk(b"ibag", pack(BAG, ibag)),
                 _chunk(b"imod", pack(MOD, imod) + bytes(10)), _chunk(b"igen", pack(GEN, igen) + bytes(4)),
                 _chunk(b"shdr", pack(SHDR, shdr)))
    info_off, info_size = top["LIST:INFO"]
    note = f"{SLIM_NOTE}{origin_sha}".encode()
    note += b"\0" * (2 - len(note) % 2)  # NUL-terminated and of even length (see the pad note above)
    info = _chunk(b"LIST", data[info_off:info_off + info_size] + _chunk(b"ISBJ", note))
    body = b"sfbk" + info + _list(b"sdta", _chunk(b"smpl", smpl)) + pdta
    tmp = Path(dst).with_suffix(".tmp")
    tmp.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    tmp.replace(dst)
    return Path(dst)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
