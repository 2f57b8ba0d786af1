"""Pictures a person looks at during training: mel grids as PNG, written with zlib alone."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def _colormap(v: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8, a dark-blue -> yellow ramp (magma-like)."""
    stops = np.array([[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]],
                     dtype=np.float32)
    pos = np.clip(v, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    t = (pos - lo)[..., None]
    return (stops[lo] * (1 - t) + stops[lo + 1] * t).astype(np.uint8)


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an ``[H, W, 3]`` uint8 image as PNG."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)


def mel_grid_png(path: str | Path, mels: torch.Tensor, log_min: float, log_max: float = 2.0, gap: int = 2) -> None:
    """Save ``[rows, cols, n_mels, n_frames]`` log-mels as one picture (low frequencies at the bottom)."""
    m = mels.detach().float().cpu().numpy()
    rows, cols, n_mels, n_frames = m.shape
    canvas = np.ones((rows * (n_mels + gap), cols * (n_frames + gap)), np.float32)
    for r in range(rows):
        for c in range(cols):
            tile = (m[r, c][::-1] - log_min) / (log_max - log_min)
            canvas[r * (n_mels + gap): r * (n_mels + gap) + n_mels, c * (n_frames + gap): c * (n_frames + gap) + n_frames] = tile
    write_png(path, _colormap(canvas))
