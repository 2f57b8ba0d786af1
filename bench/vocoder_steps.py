"""Quality of one trained vocoder at several inference step counts, beside Griffin-Lim, on held-out notes.

The refine / mel-projection steps hold no weights (``models/nets/vocoder.py``), so the CPU's counts are a
trade of quality against time; this prints the quality side of it (``bench/bench_vocoder.py`` times
it). Real notes of the held-out split(s): mel L1, MR-STFT and pitch accuracy, as ``models.evaluation.vocoder_quality``.

    python -m bench.vocoder_steps --data /work/hgdata --vocoder assets/vocoder.safetensors \\
        --steps 1/2,1/4,2/6 --splits 2 --max-notes 256
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.train.common import load_data
from models.signal.mel import GriffinLim
from models.nets.vocoder import load_vocoder
from models.evaluation.vocoder_quality import VocoderEvalConfig, evaluate_real, markdown_table


def parse_steps(text: str) -> list[tuple[int, int]]:
    """``"1/2,2/6"`` -> ``[(1, 2), (2, 6)]`` (refine iterations / mel projections)."""
    out = []
    for item in text.split(","):
        r, p = item.split("/")
        out.append((int(r), int(p)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--vocoder", required=True)
    parser.add_argument("--steps", default="1/2,1/4,2/4,2/8", help="R/P list")
    parser.add_argument("--splits", type=int, nargs="+", default=[2])
    parser.add_argument("--max-notes", type=int, default=256)
    parser.add_argument("--gl-iters", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    data = load_data(args.data)
    device = torch.device(args.device)
    inverters = {f"vocoder {r}/{p}": load_vocoder(args.vocoder, device, (r, p)) for r, p in parse_steps(args.steps)}
    inverters[f"Griffin-Lim {args.gl_iters}"] = GriffinLim(data.mel_cfg, n_iter=args.gl_iters).to(device)
    cfg = VocoderEvalConfig(splits=tuple(args.splits), max_notes=args.max_notes)
    rows = evaluate_real(data, inverters, cfg, device)
    print(f"{next(iter(rows.values()))['notes']} notes of split(s) {args.splits}, device {device}")
    print(markdown_table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
