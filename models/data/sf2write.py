"""A minimal SoundFont writer: one looped tone per preset. For tests and tiny offline fixtures."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data.soundfont import GEN_INSTRUMENT, GEN_KEY_RANGE, GEN_SAMPLE_ID, PAD_POINTS

GEN_SAMPLE_MODES = 54



@dataclass(frozen=True)
class TonePreset:
    """A preset playing a looped harmonic tone of ``n_harmonics`` (1/k amplitudes) on ``key_lo..key_hi``."""

    name: str
    program: int
    bank: int = 0
    n_harmonics: int = 4
    key_lo: int = 0
    key_hi: int = 127


def riff_chunk(cid: bytes, payload: bytes) -> bytes:
    """A RIFF chunk: id, little-endian size, payload, a pad byte to an even length."""
    pad = b"\0" if len(payload) % 2 else b""
    return cid + struct.pack("<I", len(payload)) + payload + pad


def riff_list(kind: bytes, *chunks: bytes) -> bytes:
    """A RIFF ``LIST`` chunk of type ``kind`` holding ``chunks``."""
    return riff_chunk(b"LIST", kind + b"".join(chunks))


def sf2_name(text: str) -> bytes:
    """A 20-byte SF2 name field: latin-1, at most 19 characters, NUL padded."""
    return text.encode("latin-1")[:19].ljust(20, b"\0")


def write_tone_font(path: str | Path, presets: list[TonePreset], sample_rate: int = 44100) -> Path:
    """Write an SF2 whose presets play periodic tones tuned to their key (root key 69 = 441 Hz)."""
    period = sample_rate // 441  # an integer period, so the loop is seamless
    cycles = 40
    t = np.arange(period * cycles)
    smpl, shdr = b"", b""
    for i, p in enumerate(presets):
        wave = sum(np.sin(2 * np.pi * k * t / period) / k for k in range(1, p.n_harmonics + 1))
        pcm = np.round(wave / np.abs(wave).max() * 20000).astype("<i2")
        start = len(smpl) // 2
        smpl += pcm.tobytes() + bytes(2 * PAD_POINTS)
        end = start + len(pcm)
        shdr += struct.pack("<20sIIIIIBbHH", sf2_name(f"tone{i}"), start, end, start + period, start + period * 21,
                            sample_rate, 69, -4, 0, 1)  # -4 cents: 441 Hz sounds as 440 Hz
    shdr += struct.pack("<20sIIIIIBbHH", sf2_name("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0)
    phdr = pbag = pgen = inst = ibag = igen = b""
    for i, p in enumerate(presets):
        phdr += struct.pack("<20sHHHIII", sf2_name(p.name), p.program, p.bank, i, 0, 0, 0)
        pbag += struct.pack("<HH", i, 0)
        pgen += struct.pack("<HH", GEN_INSTRUMENT, i)
        inst += struct.pack("<20sH", sf2_name(p.name), i)
        ibag += struct.pack("<HH", 3 * i, 0)
        igen += struct.pack("<HH", GEN_KEY_RANGE, p.key_lo | (p.key_hi << 8))
        igen += struct.pack("<HH", GEN_SAMPLE_MODES, 1)
        igen += struct.pack("<HH", GEN_SAMPLE_ID, i)
    n = len(presets)
    phdr += struct.pack("<20sHHHIII", sf2_name("EOP"), 0, 0, n, 0, 0, 0)
    pbag += struct.pack("<HH", n, 0)
    pgen += struct.pack("<HH", 0, 0)
    inst += struct.pack("<20sH", sf2_name("EOI"), n)
    ibag += struct.pack("<HH", 3 * n, 0)
    igen += struct.pack("<HH", 0, 0)
    mod_end = bytes(10)
    info = riff_list(b"INFO", riff_chunk(b"ifil", struct.pack("<HH", 2, 1)), riff_chunk(b"isng", b"EMU8000\0"),
                     riff_chunk(b"INAM", b"hypergan test tones\0"))
    sdta = riff_list(b"sdta", riff_chunk(b"smpl", smpl))
    pdta = riff_list(b"pdta", riff_chunk(b"phdr", phdr), riff_chunk(b"pbag", pbag), riff_chunk(b"pmod", mod_end),
                     riff_chunk(b"pgen", pgen), riff_chunk(b"inst", inst), riff_chunk(b"ibag", ibag),
                     riff_chunk(b"imod", mod_end), riff_chunk(b"igen", igen), riff_chunk(b"shdr", shdr))
    body = b"sfbk" + info + sdta + pdta
    path = Path(path)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path
