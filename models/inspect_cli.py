"""``hypergan inspect WEIGHTS``: show what a weights file says about itself."""
from __future__ import annotations

import argparse
import json

from models.checkpoint import read_tensors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="a .safetensors file written by hypergan")


def run(args: argparse.Namespace) -> int:
    tensors, meta = read_tensors(args.weights)
    params = sum(t.numel() for t in tensors.values())
    print(f"{args.weights}: {meta.get('kind', '?')}, {len(tensors)} tensors, {params:,} values")
    for key in sorted(meta):
        value = meta[key]
        try:
            value = json.dumps(json.loads(value), indent=2, sort_keys=True)
        except (json.JSONDecodeError, TypeError):
            pass
        print(f"{key}: {value}")
    return 0
