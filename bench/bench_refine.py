"""What refinement adds to a dropped sound's keyboard, on the shipped weights.

    OMP_NUM_THREADS=1 python -m bench.bench_refine [--device cpu] [--sounds a.wav,b.wav] [--steps 30,15] [--far inf,6]
        [--pitch-check 50,inf] [--eager]    # --eager: on a GPU, every refinement step eagerly, not from a CUDA graph

The app plays the quick keys first (H's offsets), then refines in the background and renders all 88
keys again. Per sound and refinement setting: the quick keyboard (88 keys), the refinement alone
(Adam steps and the mel correction), the refined keyboard, and what refinement adds (the last two
together), with the engine's own worker count. Caches are cleared before each timing. Prints a
table with each sound's row and the median; timings, not tests: nothing here asserts.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from engine.instrument import Engine, EngineConfig, default_weights_dir
from engine.refine import DEFAULT_REFINEMENT

DEMOS = ("voice_ah.wav", "saw_pad.wav", "pluck.wav", "breath_flute.wav", "fm_bell.wav")


def sync(engine: Engine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def timed(engine: Engine, fn) -> float:
    sync(engine)
    start = time.perf_counter()
    fn()
    sync(engine)
    return time.perf_counter() - start


def measure(engine: Engine, path: Path, steps: int, far_from: float, check: float) -> dict[str, float]:
    """Seconds for the quick keyboard, the refinement and the refined keyboard of one sound."""
    cfg = replace(DEFAULT_REFINEMENT, steps=steps, far_from=far_from, pitch_check_cents=check)
    sample = engine.load_sample(path)
    engine.cache.clear()
    quick = timed(engine, lambda: engine.render(sample))
    refinement = timed(engine, lambda: engine.refined(sample, cfg))
    refined_keys = timed(engine, lambda: engine.render(sample, refine=cfg))
    return {"quick": quick, "refinement": refinement, "refined_keys": refined_keys,
            "adds": refinement + refined_keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sounds", help="comma-separated audio files (default: the five demo sounds)")
    parser.add_argument("--steps", default=str(DEFAULT_REFINEMENT.steps), help="comma-separated step counts")
    parser.add_argument("--far", default=str(DEFAULT_REFINEMENT.far_from),
                        help="comma-separated far_from values (semitones; inf: refined offsets on every key)")
    parser.add_argument("--pitch-check", default=str(DEFAULT_REFINEMENT.pitch_check_cents),
                        help="comma-separated pitch_check_cents values (inf: refined keys are not checked)")
    parser.add_argument("--eager", action="store_true", help="on a GPU, no CUDA graph for the refinement steps")
    args = parser.parse_args(argv)
    demo = default_weights_dir() / "demo"
    sounds = [Path(s) for s in args.sounds.split(",")] if args.sounds else [demo / name for name in DEMOS]
    engine = Engine(device=args.device, cfg=EngineConfig(cuda_graphs=not args.eager))
    warm = engine.load_sample(sounds[0])
    engine.render(warm, keys=[60, 61], refine=replace(DEFAULT_REFINEMENT, steps=2))    # lazy inits, kernels
    name = torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else f"{os.cpu_count()} CPUs"
    graphs = "eager steps" if args.eager or engine.device.type != "cuda" else "steps from a CUDA graph"
    print(f"{name}, {engine.workers} render worker(s), {graphs}, load {os.getloadavg()[0]:.1f}")
    print("| sound | steps | far keys from | pitch check cents | quick 88 keys s | refinement s | refined 88 keys s "
          "| adds s |\n|---|---|---|---|---|---|---|---|")
    settings = [(int(s), float(f), float(c)) for s in args.steps.split(",") for f in args.far.split(",")
                for c in args.pitch_check.split(",")]
    for steps, far_from, check in settings:
        rows = [(p.stem, measure(engine, p, steps, far_from, check)) for p in sounds]
        for stem, r in rows + [("median", {k: statistics.median(r[k] for _, r in rows) for k in rows[0][1]})]:
            print(f"| {stem} | {steps} | {far_from:g} | {check:g} | {r['quick']:.2f} | {r['refinement']:.2f} | "
                  f"{r['refined_keys']:.2f} | {r['adds']:.2f} |", flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
