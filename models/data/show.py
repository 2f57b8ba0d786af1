"""``hypergan data show``: contact sheets of log-mels (PNG) and a few WAVs, so a person can look and listen.

PNGs come from models/images.py (no plotting library needed); 16-bit WAVs from stored audio when
the set has it, else from the mel by Griffin-Lim. A
``legend.txt`` names every cell and gives numbers to listen-check by (peak, RMS, measured pitch).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.dataset import NoteSet, load_noteset
from models.images import colourise, write_png

def _cell(mel: np.ndarray, size: int) -> np.ndarray:
    """A log-mel ``[M, F]`` shrunk by an integer factor to at most ``size`` px, low bands at the bottom."""
    step_m, step_f = max(1, -(-mel.shape[0] // size)), max(1, -(-mel.shape[1] // size))
    m = mel[: mel.shape[0] // step_m * step_m, : mel.shape[1] // step_f * step_f].astype(np.float32)
    m = m.reshape(m.shape[0] // step_m, step_m, m.shape[1] // step_f, step_f).mean(axis=(1, 3))
    return m[::-1]


def _grid(cells: list[list[np.ndarray | None]], lo: float, hi: float, pad: int = 2) -> np.ndarray:
    ch, cw = next(c.shape for row in cells for c in row if c is not None)
    rows, cols = len(cells), max(len(r) for r in cells)
    sheet = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            if cell is not None:
                y, x = pad + r * (ch + pad), pad + c * (cw + pad)
                sheet[y:y + ch, x:x + cw] = colourise(cell, lo, hi)
    return sheet


def _pick_instruments(ns: NoteSet, count: int, rng: np.random.Generator) -> list[int]:
    """Up to ``count`` instruments, spread over families (round-robin), in a seeded order."""
    by_family: dict[int, list[int]] = {}
    for i, info in enumerate(ns.instruments):
        by_family.setdefault(ns.families.index(info.family), []).append(i)
    pools = [list(rng.permutation(v)) for _, v in sorted(by_family.items())]
    out: list[int] = []
    while len(out) < count and any(pools):
        for pool in pools:
            if pool and len(out) < count:
                out.append(int(pool.pop()))
    return out


def _row_of(ns: NoteSet, inst: int, key: int) -> int | None:
    """A note of instrument ``inst`` at ``key`` (highest velocity), or None."""
    rows = np.flatnonzero((ns.instrument == inst) & (ns.pitch == key))
    return int(rows[np.argmax(ns.velocity[rows])]) if len(rows) else None


def show(data: str | Path, out: str | Path, seed: int = 0, n_rows: int = 12, n_grid: int = 48,
         n_wavs: int = 8, cell_px: int = 96) -> list[Path]:
    """Write two contact sheets, a few WAVs and legend.txt into ``out``; returns the files written."""
    ns = load_noteset(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lo, hi = ns.mel_cfg.log_min, float(np.percentile(ns.mels[:: max(1, len(ns) // 500)], 99.5))
    legend = [f"{len(ns)} notes, {len(ns.instruments)} instruments; colour range {lo:.1f}..{hi:.1f} (log-mel)", ""]
    keys = list(range(24, 109, 8))
    chosen = _pick_instruments(ns, n_rows, rng)
    legend += ["pitches.png: rows = instruments, columns = MIDI " + " ".join(map(str, keys))]
    cells = []
    for r, inst in enumerate(chosen):
        cells.append([None if (i := _row_of(ns, inst, k)) is None else _cell(ns.mels[i], cell_px) for k in keys])
        info = ns.instruments[inst]
        legend.append(f"  row {r}: {info.name} [{info.family}, split {info.split}, pitched {info.pitched}]")
    files = [out / "pitches.png"]
    write_png(files[0], _grid(cells, lo, hi))
    grid_inst = _pick_instruments(ns, n_grid, rng)
    legend += ["", "instruments.png: MIDI 60 (or the nearest key an instrument has), 8 per row"]
    cells, row = [], []
    for inst in grid_inst:
        rows = np.flatnonzero(ns.instrument == inst)
        i = int(rows[np.argmin(np.abs(ns.pitch[rows].astype(int) - 60))])
        row.append(_cell(ns.mels[i], cell_px))
        legend.append(f"  cell {len(cells)},{len(row) - 1}: {ns.instruments[inst].name} MIDI {ns.pitch[i]}")
        if len(row) == 8:
            cells.append(row)
            row = []
    if row:
        cells.append(row)
    files.append(out / "instruments.png")
    write_png(files[-1], _grid(cells, lo, hi))
    files += _wavs(ns, out, chosen[:n_wavs], legend)
    (out / "legend.txt").write_text("\n".join(legend) + "\n")
    return files + [out / "legend.txt"]


def _wavs(ns: NoteSet, out: Path, instruments: list[int], legend: list[str]) -> list[Path]:
    from models.signal.audio import Audio, save_wav
    from models.signal.pitch import estimate_pitch

    legend += ["", "WAVs (stored audio)" if ns.audio is not None else "WAVs (Griffin-Lim from the mels)"]
    rows = []
    for inst in instruments:
        found = [r for k in (60, 57, 64, 48, 72) if (r := _row_of(ns, inst, k)) is not None]
        if found:
            rows.append(found[0])
    if not rows:
        return []
    if ns.audio is not None:
        waves = [ns.audio[r].astype(np.float32) / 32767.0 for r in rows]
    else:
        import torch

        from models.signal.mel import GriffinLim

        with torch.no_grad():
            waves = list(GriffinLim(ns.mel_cfg)(torch.from_numpy(ns.mels[rows].astype(np.float32))).numpy())
    files = []
    for r, w in zip(rows, waves):
        info = ns.instruments[int(ns.instrument[r])]
        path = out / f"{len(files):02d}_{info.family}_midi{int(ns.pitch[r])}.wav"
        peak = float(np.abs(w).max())
        clip = Audio((w / peak * 0.9 if peak > 0 else w).astype(np.float32), ns.mel_cfg.sample_rate)
        save_wav(path, clip, "PCM_16")
        est = estimate_pitch(clip)
        w = clip.samples
        legend.append(f"  {path.name}: {info.name}; rms {np.sqrt(np.mean(w ** 2)):.3f}, measured MIDI "
                      f"{est.midi:.2f} (confidence {est.confidence:.2f}) for label {int(ns.pitch[r])}")
        files.append(path)
    return files
