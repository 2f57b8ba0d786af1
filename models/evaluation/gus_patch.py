"""GUS patches (``.pat``, as freepats ships them): every wave with its loop points and root pitch.

Read by ``models/evaluation/out_of_set.py`` for the freepats one-shots; numpy only.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# GUS patch (GF1PATCH110), little-endian: a 239-byte patch + instrument + layer header, the sample
# count at byte 198, then per sample a 96-byte header followed by its PCM (TiMidity's instrum.c).
GUS_MAGICS = (b"GF1PATCH110\0ID#000002\0", b"GF1PATCH100\0ID#000002\0")
GUS_HEADER_BYTES, GUS_COUNT_OFFSET, GUS_SAMPLE_HEADER_BYTES = 239, 198, 96
GUS_SAMPLE_FIELDS = struct.Struct("<7sBIIIHIIIhB18sB")  # name .. modes; scale freq/factor + 36 reserved follow
MODE_16BIT, MODE_UNSIGNED, MODE_LOOPING, MODE_PINGPONG, MODE_REVERSE = 1, 2, 4, 8, 16


@dataclass(frozen=True)
class GusSample:
    """One wave of a GUS patch: float32 mono samples in [-1, 1], loop points in samples, root in Hz."""

    samples: np.ndarray
    sample_rate: int
    root_hz: float
    loop_start: int
    loop_end: int
    modes: int

    @property
    def looping(self) -> bool:
        return bool(self.modes & MODE_LOOPING)

    @property
    def root_midi(self) -> float:
        return 69.0 + 12.0 * math.log2(self.root_hz / 440.0)


def parse_gus_patch(data: bytes) -> list[GusSample]:
    """Every wave of a GUS ``.pat`` (8/16-bit, signed/unsigned PCM); loop/length fields are bytes on disk."""
    if data[:22] not in GUS_MAGICS:
        raise ValueError("not a GUS patch (no GF1PATCH110/100 header)")
    waves, offset = [], GUS_HEADER_BYTES
    for _ in range(data[GUS_COUNT_OFFSET]):
        (_, _, n_bytes, loop_start, loop_end, rate, _, _, root_mhz, _, _, _,
         modes) = GUS_SAMPLE_FIELDS.unpack_from(data, offset)
        offset += GUS_SAMPLE_HEADER_BYTES
        raw = data[offset:offset + n_bytes]
        if len(raw) != n_bytes:
            raise ValueError(f"GUS patch truncated: wave wants {n_bytes} bytes, {len(raw)} left")
        offset += n_bytes
        width = 2 if modes & MODE_16BIT else 1
        if modes & MODE_UNSIGNED:  # unsigned PCM is centred on 2**(bits - 1)
            pcm = np.frombuffer(raw, "<u2" if width == 2 else "u1").astype(np.int32) - (1 << (8 * width - 1))
        else:
            pcm = np.frombuffer(raw, "<i2" if width == 2 else "i1").astype(np.int32)
        samples = (pcm / float(1 << (8 * width - 1))).astype(np.float32)
        start, end = loop_start // width, loop_end // width
        if modes & MODE_REVERSE:  # played backwards: reverse the wave and mirror the loop (as TiMidity)
            samples, start, end = samples[::-1].copy(), len(samples) - end, len(samples) - start
        waves.append(GusSample(samples, rate, root_mhz / 1000.0, start, end, modes))
    return waves


def unroll_loop(wave: GusSample, min_samples: int) -> np.ndarray:
    """The wave as a held key plays it: up to the loop end, then the loop repeated to ``min_samples``."""
    if not wave.looping or not 0 <= wave.loop_start < wave.loop_end <= len(wave.samples):
        return wave.samples
    loop = wave.samples[wave.loop_start:wave.loop_end]
    if wave.modes & MODE_PINGPONG:
        loop = np.concatenate([loop, loop[::-1]])
    head = wave.samples[:wave.loop_end]
    repeats = max(0, math.ceil((min_samples - len(head)) / len(loop)))
    return np.concatenate([head, np.tile(loop, repeats)])


def pick_gus_wave(path: Path, target_midi: float) -> GusSample:
    """The wave of a patch whose root pitch is nearest ``target_midi``."""
    return min(parse_gus_patch(path.read_bytes()), key=lambda w: abs(w.root_midi - target_midi))
