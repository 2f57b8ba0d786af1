"""Training pictures: mel grids as PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.images import colourise, write_png


def mel_grid_png(path: str | Path, mels: torch.Tensor, log_min: float, log_max: float = 2.0, gap: int = 2) -> None:
    """Save ``[rows, cols, n_mels, n_frames]`` log-mels as one picture (low frequencies at the bottom)."""
    m = mels.detach().float().cpu().numpy()
    rows, cols, n_mels, n_frames = m.shape
    canvas = np.full((rows * (n_mels + gap), cols * (n_frames + gap)), log_max, np.float32)
    for r in range(rows):
        for c in range(cols):
            y, x = r * (n_mels + gap), c * (n_frames + gap)
            canvas[y:y + n_mels, x:x + n_frames] = m[r, c][::-1]
    write_png(path, colourise(canvas, log_min, log_max))
