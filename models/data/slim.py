"""Slim a SoundFont to the presets a build renders, so the fonts fit the GPU machine's carry budget.

The preset/instrument tree of the kept presets is copied record for record (generators and
modulators unchanged, instrument and sample indices renumbered), and only the samples they use
(plus stereo partners) stay in the sample chunk. SF2 sample points and SF3 Ogg byte ranges are
both handled (SF3 loop points are relative to the sample, SF2 ones absolute). Copied samples
render notes identical to the original's; transcoded ones (``TranscodeConfig``: resampled, Ogg
Vorbis) make the font several times smaller and its notes close to the original's
(``hypergan data check-fonts --slimmed`` measures how close, against fluidsynth).
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

from models.data.soundfont import (GEN_INSTRUMENT, GEN_SAMPLE_ID, PAD_POINTS, SLIM_NOTE, FontError, _chunks,
                                   _records, read_font)
from models.units import LOWEST_KEY
from models.data.sf2write import riff_chunk, riff_list, sf2_name
from models.data.transcode import SampleData, TranscodeConfig, decode_ogg, encode_ogg, resample

GEN_ROOT_KEY = 58  # overridingRootKey (SF 2.04, 8.1.2)
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


def slim_font(src: str | Path, keep: set[tuple[int, int]], dst: str | Path,
              transcode: TranscodeConfig | None = None) -> Path:
    """Write ``dst`` holding only presets ``(bank, program)`` of ``src``. Returns ``dst``.

    With ``transcode`` the kept samples are also resampled and (SF3) Ogg-encoded, see transcode.py.
    """
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
    if transcode is None:
        smpl, new_shdr = _copy_samples(data, smpl_off, shdr, order, sample_map, info.is_sf3)
    else:
        lowest, roots = _lowest_keys(info, keep), _root_keys(r, insts, shdr)
        down = {s: roots.get(s, shdr[s][6]) - lowest.get(s, 127) for s in order}  # deepest transposition
        smpl, new_shdr = _transcode_samples(data, smpl_off, shdr, order, sample_map, down, transcode)
    if len(smpl) % 2:
        # tinysoundfont's RIFF reader ignores pad bytes, so no chunk may need one: even out the data.
        smpl += b"\0"
    sf3 = info.is_sf3 or (transcode is not None and transcode.ogg)
    return _write(dst, data, top, new_phdr, pbag, pgen, pmod, new_inst, ibag, igen, imod, new_shdr, bytes(smpl),
                  info.origin_sha256, sf3)


def _copy_samples(data, smpl_off, shdr, order, sample_map, is_sf3) -> tuple[bytearray, list]:
    """The kept samples' bytes as they are (the notes rendered stay identical)."""
    smpl, new_shdr = bytearray(), []
    point = 1 if is_sf3 else 2  # SF3 offsets count bytes of Ogg data, SF2 offsets count 16-bit points
    for s in order:
        name, start, end, loop_s, loop_e, rate, pitch, corr, link, kind = shdr[s]
        new_start = len(smpl) // point
        smpl += data[smpl_off + start * point: smpl_off + end * point]
        shift = 0 if kind & 0x10 else new_start - start  # compressed samples keep relative loops
        if not kind & 0x10:
            smpl += bytes(PAD_POINTS * 2)
        new_shdr.append((name, new_start, new_start + end - start, loop_s + shift, loop_e + shift, rate, pitch, corr,
                         sample_map.get(link, 0), kind))
    return smpl, new_shdr


def _read_sample(data, smpl_off, record) -> SampleData:
    name, start, end, loop_s, loop_e, rate, *_rest, kind = record
    if kind & 0x10:
        pcm, _ = decode_ogg(data[smpl_off + start: smpl_off + end])
        return SampleData(pcm, rate, (loop_s, loop_e))
    pcm = np.frombuffer(data, "<i2", end - start, smpl_off + 2 * start).astype(np.int16)
    return SampleData(pcm, rate, (loop_s - start, loop_e - start))


def _lowest_keys(info, keep: set[tuple[int, int]]) -> dict[int, int]:
    """Sample id -> the lowest key in LOWEST_KEY..HIGHEST_KEY that plays it in the kept presets."""
    lowest: dict[int, int] = {}
    for p in info.presets:
        if (p.bank, p.program) in keep:
            for z in p.zones:
                if z.key_hi >= LOWEST_KEY:
                    lowest[z.sample] = min(lowest.get(z.sample, 127), max(z.key_lo, LOWEST_KEY))
    return lowest


def _root_keys(r: dict, insts: list[int], shdr: list) -> dict[int, int]:
    """Sample id -> its highest root key in the kept instruments (an instrument zone's overriding root
    key, else the sample's own), so that the deepest transposition of each sample is known."""
    roots: dict[int, int] = {}
    for i in insts:
        first, last = r["inst"][i][1], r["inst"][i + 1][1]
        global_root = None
        for b in range(first, last):
            gens = dict(r["igen"][r["ibag"][b][0]:r["ibag"][b + 1][0]])
            if GEN_SAMPLE_ID not in gens:
                global_root = gens.get(GEN_ROOT_KEY, global_root) if b == first else global_root
                continue
            sample = gens[GEN_SAMPLE_ID]
            root = gens.get(GEN_ROOT_KEY, global_root)
            root = shdr[sample][6] if root is None or root > 127 else root
            roots[sample] = max(roots.get(sample, 0), root)
    return roots


def _transcode_samples(data, smpl_off, shdr, order, sample_map, down: dict[int, int],
                       cfg: TranscodeConfig) -> tuple[bytearray, list]:
    """The kept samples resampled (``cfg.rate_for``) and, with ``cfg.ogg``, Ogg Vorbis encoded;
    ``down`` gives how many semitones below its root each sample may be played."""
    smpl, new_shdr = bytearray(), []
    for s in order:
        name, start, end, loop_s, loop_e, rate, pitch, corr, link, kind = shdr[s]
        new_rate = cfg.rate_for(rate, down[s])
        if kind & 0x10 and new_rate == rate:  # already Ogg and nothing to resample: kept as it is
            new_shdr.append((name, len(smpl), len(smpl) + end - start, loop_s, loop_e, rate, pitch, corr,
                             sample_map.get(link, 0), kind))
            smpl += data[smpl_off + start: smpl_off + end]
            continue
        sample = resample(_read_sample(data, smpl_off, shdr[s]), new_rate)
        # Played far below its root, a sample's top band (where Vorbis codes coarsely) comes down
        # into the render: such samples may stay PCM (TranscodeConfig.pcm_below_semitones).
        if cfg.ogg and down[s] < cfg.pcm_below_semitones:
            blob = encode_ogg(sample.pcm, sample.rate, cfg.ogg_quality)
            start = len(smpl)
            smpl += blob
            record = (start, start + len(blob), *sample.loop)  # SF3: byte range, loop relative to the sample
            kind = kind | 0x10
        else:
            start = len(smpl) // 2
            if cfg.ogg:  # SF3 positions count bytes; PCM ones need an even start
                smpl += b"\0" * (len(smpl) % 2)
                start = len(smpl)
                smpl += sample.pcm.astype("<i2").tobytes() + bytes(PAD_POINTS * 2)
                record = (start // 2, start // 2 + len(sample.pcm), start // 2 + sample.loop[0], start // 2 + sample.loop[1])
            else:
                smpl += sample.pcm.astype("<i2").tobytes() + bytes(PAD_POINTS * 2)
                record = (start, start + len(sample.pcm), start + sample.loop[0], start + sample.loop[1])
            kind = kind & ~0x10
        new_shdr.append((name, *record, sample.rate, pitch, corr, sample_map.get(link, 0), kind))
    return smpl, new_shdr


def _write(dst, data, top, phdr, pbag, pgen, pmod, inst, ibag, igen, imod, shdr, smpl, origin_sha, sf3) -> Path:
    pack = lambda fmt, rows: b"".join(struct.pack(fmt, *row) for row in rows)  # noqa: E731
    phdr = phdr + [(sf2_name("EOP"), 0, 0, len(pbag), 0, 0, 0)]
    pbag = pbag + [(len(pgen), len(pmod))]
    inst = inst + [(sf2_name("EOI"), len(ibag))]
    ibag = ibag + [(len(igen), len(imod))]
    shdr = shdr + [(sf2_name("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    pdta = riff_list(b"pdta", riff_chunk(b"phdr", pack(PHDR, phdr)), riff_chunk(b"pbag", pack(BAG, pbag)),
                     riff_chunk(b"pmod", pack(MOD, pmod) + bytes(10)),
                     riff_chunk(b"pgen", pack(GEN, pgen) + bytes(4)),
                     riff_chunk(b"inst", pack(INST, inst)), riff_chunk(b"ibag", pack(BAG, ibag)),
                     riff_chunk(b"imod", pack(MOD, imod) + bytes(10)),
                     riff_chunk(b"igen", pack(GEN, igen) + bytes(4)),
                     riff_chunk(b"shdr", pack(SHDR, shdr)))
    info_off, info_size = top["LIST:INFO"]
    note = f"{SLIM_NOTE}{origin_sha}".encode()
    note += b"\0" * (2 - len(note) % 2)  # NUL-terminated and of even length (see the pad note above)
    info = riff_chunk(b"LIST", _info_body(data[info_off:info_off + info_size], sf3) + riff_chunk(b"ISBJ", note))
    body = b"sfbk" + info + riff_list(b"sdta", riff_chunk(b"smpl", smpl)) + pdta
    tmp = Path(dst).with_suffix(".tmp")
    tmp.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    tmp.replace(dst)
    return Path(dst)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _info_body(body: bytes, sf3: bool) -> bytes:
    """The INFO list's payload ("INFO" + sub-chunks), ``ifil`` saying version 3 for an SF3 (readers
    expect Ogg samples only there); an earlier slimming note (ISBJ) is dropped."""
    out, pos = bytearray(body[:4]), 4
    while pos + 8 <= len(body):
        cid, size = body[pos:pos + 4], struct.unpack_from("<I", body, pos + 4)[0]
        payload = body[pos + 8:pos + 8 + size]
        if cid == b"ifil" and sf3 and struct.unpack_from("<H", payload)[0] != 3:
            payload = struct.pack("<HH", 3, 1)
        if cid != b"ISBJ":
            out += riff_chunk(cid, payload)
        pos += 8 + size + (size & 1)
    return bytes(out)
