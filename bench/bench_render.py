"""Render timings at the shipped configs (random-init weights: cost does not depend on training).

    python bench/bench_render.py [--repeats 3] [--device auto] [--threads N] [--iters 32] [--vocoder neural]

Prints medians: time to the first playable key and to all 88 keys (cold cache and cached sample),
each stage alone (f, the f->G->f->H offsets, G per batch, inversion, per-key finishing) and peak
memory. Timings, not tests: nothing here asserts.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.device import cpu_cores  # noqa: E402
from engine.instrument import Engine, EngineConfig  # noqa: E402
from engine.keys import finish_key  # noqa: E402
from models.units import ALL_KEYS, OUTPUT_SAMPLE_RATE  # noqa: E402
from models.signal.audio import Audio  # noqa: E402
from models.checkpoint import save  # noqa: E402
from models.nets.features import FeatureConfig, FeatureExtractor  # noqa: E402
from models.nets.generator import Generator, GeneratorConfig  # noqa: E402
from models.nets.hyper import HyperConfig, HyperNetwork, refine  # noqa: E402
from models.signal.mel import SHIPPED_MEL  # noqa: E402
from models.nets.vocoder import NeuralVocoder, VocoderConfig  # noqa: E402


def write_shipped_weights(folder: Path, vocoder: bool = False) -> None:
    torch.manual_seed(0)
    f = FeatureExtractor(FeatureConfig.shipped(SHIPPED_MEL))
    G = Generator(GeneratorConfig.shipped(SHIPPED_MEL))
    H = HyperNetwork(HyperConfig.shipped(G.modulated_layers(), h_dim=f.cfg.h_dim))
    nets = [("features", f), ("generator", G), ("hyper", H)]
    if vocoder:
        nets.append(("vocoder", NeuralVocoder(VocoderConfig.shipped(SHIPPED_MEL))))
    meta = {"mel": SHIPPED_MEL.to_json()}
    for name, net in nets:
        save(folder / f"{name}.safetensors", net, meta, dtype=torch.float16)


def tone(midi: float, seed: int) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(SHIPPED_MEL.num_samples) / SHIPPED_MEL.sample_rate
    f0 = 440 * 2 ** ((midi - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 10)) * np.exp(-t / 0.7)
    return Audio((0.8 * wave / np.abs(wave).max()).astype(np.float32), SHIPPED_MEL.sample_rate)


def timed(fn, repeats: int) -> tuple[tuple[float, float], object]:
    """((median wall s, median process CPU s), last result)."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return (statistics.median(walls), statistics.median(cpus)), out


def full_render(engine: Engine, sample) -> tuple[tuple[float, float], tuple[float, float]]:
    """((wall, CPU) to the first key, (wall, CPU) to all keys)."""
    t0, c0, first = time.perf_counter(), time.process_time(), []

    def on_key(midi: int, key: object) -> None:
        if not first:
            first.append((time.perf_counter() - t0, time.process_time() - c0))

    engine.render(sample, on_key=on_key)
    return first[0], (time.perf_counter() - t0, time.process_time() - c0)


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--iters", type=int, default=32, help="Griffin-Lim iterations")
    parser.add_argument("--batch", type=int, default=None, help="largest key batch (default: the engine's)")
    parser.add_argument("--no-project", action="store_true", help="Griffin-Lim without its mel projection")
    parser.add_argument("--vocoder", choices=("griffinlim", "neural"), default="griffinlim",
                        help="mel inversion (neural: the shipped vocoder config at its device's step counts)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        write_shipped_weights(Path(tmp), vocoder=args.vocoder == "neural")
        t0, c0 = time.perf_counter(), time.process_time()
        engine = Engine(tmp, device=args.device, vocoder=args.vocoder, num_threads=args.threads,
                        cfg=EngineConfig(griffin_lim_iters=args.iters, max_batch=args.batch,
                                         griffin_lim_project=not args.no_project))
        load_s = (time.perf_counter() - t0, time.process_time() - c0)
    nets, dev = engine.nets, engine.device
    print(f"device {dev} (engine threads {engine.num_threads}, workers {engine.workers}, "
          f"intra-op threads {torch.get_num_threads()}, {cpu_cores()} usable cores), "
          f"mel {SHIPPED_MEL.n_mels}x{SHIPPED_MEL.n_frames} @ {SHIPPED_MEL.sample_rate} Hz, "
          f"{'neural vocoder' if args.vocoder == 'neural' else f'Griffin-Lim {args.iters} iters'}"
          f"{' no projection' if args.no_project and args.vocoder != 'neural' else ''}, output 48 kHz, max batch {args.batch}, repeats {args.repeats}")
    rows = [("load weights + dry run", load_s)]

    with torch.inference_mode():
        x = engine._log_mel(torch.from_numpy(tone(60, 0).samples).to(dev)[None])
        rows.append(("f(x), 1 sample", timed(lambda: nets.f(x), args.repeats)[0]))
        h = nets.f(x)
        midi = torch.full((1,), 60, dtype=torch.long, device=dev)
        rows.append(("H(h, h_init) alone", timed(lambda: nets.H(h, h), args.repeats)[0]))
        rows.append(("offsets: G(h,0,p) -> f -> H", timed(lambda: refine(nets.G, nets.f, nets.H, h, midi),
                                                         args.repeats)[0]))
        cond = engine.conditioning(engine.load_sample(tone(60, 0), midi=60))
        for b in (1, 4, 16):
            notes = list(range(60, 60 + b))
            (wall, cpu), _ = timed(lambda: engine.render_mels(cond, notes), args.repeats)
            rows.append((f"G with offsets, batch {b} (per key)", (wall / b, cpu / b)))
        for b in (1, 4):
            mels = engine.render_mels(cond, list(range(60, 60 + b))).clamp(max=9.0)
            (wall, cpu), _ = timed(lambda: nets.inverter(mels), args.repeats)
            rows.append((f"{nets.vocoder_name}, batch {b} (per key)", (wall / b, cpu / b)))
    waves = engine.render_waves(cond, list(range(60, 76)), OUTPUT_SAMPLE_RATE)
    (wall, cpu), _ = timed(lambda: [finish_key(Audio(w, OUTPUT_SAMPLE_RATE), m) for m, w in zip(range(60, 76), waves)],
                           args.repeats)
    rows.append(("resampled key -> loop, level, fades (per key)", (wall / 16, cpu / 16)))

    cold_first, cold_all, warm_first, warm_all = [], [], [], []
    for i in range(args.repeats):
        sample = engine.load_sample(tone(48 + i, seed=i + 1), midi=48 + i)   # a new sample: cold cache
        a, b = full_render(engine, sample)
        cold_first.append(a)
        cold_all.append(b)
        a, b = full_render(engine, sample)                                   # cached: skips f and H
        warm_first.append(a)
        warm_all.append(b)
    rows += [("first playable key, new sample", median_pair(cold_first)),
             ("all 88 keys, new sample", median_pair(cold_all)),
             ("first playable key, cached sample", median_pair(warm_first)),
             ("all 88 keys, cached sample", median_pair(warm_all))]
    width = max(len(r[0]) for r in rows)
    print(f"{'stage':<{width}}  {'wall ms':>9}  {'CPU ms':>9}   (CPU: all threads of this process)")
    for name, (wall, cpu) in rows:
        print(f"{name:<{width}}  {wall * 1000:9.1f}  {cpu * 1000:9.1f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak resident memory':<{width}}  {peak_mib:9.0f} MiB")
    if dev.type == "cuda":
        print(f"{'peak GPU memory':<{width}}  {torch.cuda.max_memory_allocated() / 2**20:9.0f} MiB")
    print(f"load average during the run: {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}")
    print(f"keys per render: {len(ALL_KEYS)}")


if __name__ == "__main__":
    main()
