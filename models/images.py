"""Pictures a person looks at (contact sheets, training mel grids): colour ramp and a PNG writer.

PNGs are written with zlib alone, so no plotting library is needed anywhere.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# A perceptual dark-to-bright ramp (close to matplotlib's magma), interpolated linearly.
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 253, 191]], np.float32)


def colourise(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values ``[H, W]`` -> RGB uint8 ``[H, W, 3]`` on the ramp, ``lo``..``hi`` mapped to dark..bright."""
    x = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(x.astype(int), len(_RAMP) - 2)
    f = (x - i)[..., None]
    return (_RAMP[i] * (1 - f) + _RAMP[i + 1] * f).astype(np.uint8)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Minimal PNG encoder: 8-bit RGB, no interlace, filter 0 on every row."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)
