"""Pack export cost per format: time and size of a full 88-key pack (2 s keys at 48 kHz).

    OMP_NUM_THREADS=1 python bench/bench_export.py [--seconds 2] [--repeats 3]

Each format is exported on its own (the 24-bit WAVs are always written, so ``wav`` is the
baseline and the other rows include it); the best of ``--repeats`` is reported, with the size of
the format's own file and of the whole pack folder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.export import FORMATS, export_pack  # noqa: E402
from engine.key_cache import KeySample  # noqa: E402
from engine.loops import make_loop  # noqa: E402
from models.signal.audio import Audio  # noqa: E402
from models.signal.tones import harmonic_tone  # noqa: E402
from models.units import ALL_KEYS, midi_to_hz  # noqa: E402


def key_cache(sample_rate: int, duration_s: float) -> dict[int, KeySample]:
    """88 decaying harmonic keys, each with a click-free loop found by the engine."""
    keys = {}
    for midi in ALL_KEYS:
        wave = harmonic_tone(midi, sample_rate=sample_rate, duration_s=duration_s, decay_s=duration_s, seed=midi)
        looped, start, end = make_loop(Audio(wave, sample_rate), midi_to_hz(midi))
        keys[midi] = KeySample(looped.samples, sample_rate, midi, start, end)
    return keys


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keys = key_cache(args.rate, args.seconds)
    print(f"88 keys x {args.seconds:g} s at {args.rate} Hz")
    print(f"{'format':<12} {'time s':>7} {'file MB':>8} {'pack MB':>8}")
    suffix = {"sfz": ".sfz", "dspreset": ".dspreset", "sf2": ".sf2", "multisample": ".multisample"}
    for fmt in (*FORMATS, "all"):
        best, sizes = float("inf"), (0, 0)
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                pack = export_pack(keys, "bench", tmp, formats=(fmt,))
                best = min(best, time.perf_counter() - t0)
                own = pack / f"bench{suffix[fmt]}" if fmt in suffix else pack / "samples"
                sizes = (own.stat().st_size if own.is_file() else folder_bytes(own), folder_bytes(pack))
        print(f"{fmt:<12} {best:7.2f} {sizes[0] / 1e6:8.2f} {sizes[1] / 1e6:8.2f}")


if __name__ == "__main__":
    main()
