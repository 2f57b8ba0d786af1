"""Voice mixer cost and latency, measured by calling its audio callback directly.

    OMP_NUM_THREADS=1 python bench/bench_voices.py [--seconds 3] [--blocks 128,256,512]

Reports, per block size at 48 kHz with every voice sounding (32 held, looping notes with pitch
bend moving, two of them struck again every block at changing velocities): the callback's median /
99th-percentile / worst time per block against the block's duration (the time budget; target:
median <= 10 %), and note-on-to-sound latency in blocks, from a fresh voice and from a stolen one.
Each block size runs plain (one sample per key) and with 3 velocity layers x 3 round robins
(distinct sample arrays for the played keys), split by velocity and cross-faded (two voices per
struck note between layers), cycled and in random order, in the same run.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.key_cache import PLAIN, KeySample, VariantKey, Variations  # noqa: E402
from engine.envelope import Envelope  # noqa: E402
from engine.voices import MixerConfig, VoiceMixer  # noqa: E402
from models.units import ALL_KEYS, midi_to_hz  # noqa: E402


def key_cache(sample_rate: int, duration_s: float = 2.0) -> dict[int, KeySample]:
    """88 decaying harmonic keys with a loop in the second half (like rendered keys)."""
    keys = {}
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    for note in ALL_KEYS:
        f0 = midi_to_hz(note)
        wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6) if k * f0 < sample_rate / 2)
        wave = (0.5 * wave * np.exp(-t / 1.5)).astype(np.float32)
        period = max(1, round(sample_rate / f0))
        start = len(t) // 2
        keys[note] = KeySample(wave, sample_rate, note, start, start + period * max(1, (len(t) // 3) // period))
    return keys


PLAYED = range(40, 72)
LAYERED = Variations(round_robins=3, velocity_layers=3)


def variant_cache(keys: dict[int, KeySample], v: Variations) -> dict[VariantKey, KeySample]:
    """A distinct copy of each played key per velocity layer and round robin (as rendered variants are)."""
    return {(n, layer, rr): KeySample(keys[n].samples * (0.9 + 0.01 * rr), keys[n].sample_rate, n,
                                      keys[n].loop_start, keys[n].loop_end)
            for n in PLAYED for layer, rr in v.passes()}


def time_callback(block_size: int, sample_rate: int, seconds: float, keys: dict[int, KeySample],
                  variants: dict | None = None, variations: Variations = PLAIN,
                  random: bool = False, crossfade: bool = True) -> tuple[list[float], list[float]]:
    """Wall and thread-CPU seconds per callback (wall includes preemption by other processes)."""
    mixer = VoiceMixer(MixerConfig(sample_rate=sample_rate, block_size=block_size, n_voices=32,
                                   random_round_robin=random, velocity_crossfade=crossfade), Envelope())
    mixer.set_keys(keys, variants, variations)
    q = mixer.queue(1)
    for note in range(40, 72):
        q.note_on(note, 100)
    out = np.zeros((block_size, 2), np.float32)
    n_blocks = int(seconds * sample_rate / block_size)
    for _ in range(50):
        mixer.callback(out, block_size, None, None)
    wall, cpu = [], []
    gc.disable()  # PortAudio's thread is not paused by the collector of this loop's garbage either
    try:
        for i in range(n_blocks):
            q.pitch_bend(np.sin(i / 20))
            for j in range(2):      # two notes struck again: a new voice, its layer and round robin picked
                q.note_on(40 + (2 * i + j) % 32, 20 + (37 * i + 11 * j) % 107)
            t0, c0 = time.perf_counter(), time.thread_time()
            mixer.callback(out, block_size, None, None)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
    finally:
        gc.enable()
    assert mixer.errors == 0 and len(mixer.active_notes()) >= 30
    return sorted(wall), sorted(cpu)


def latency_blocks(block_size: int, sample_rate: int, keys: dict[int, KeySample], steal: bool) -> int:
    """Callbacks until a note-on pushed between two callbacks sounds (1 = in the very next block)."""
    mixer = VoiceMixer(MixerConfig(sample_rate=sample_rate, block_size=block_size), Envelope(attack_s=0.0))
    mixer.set_keys(keys)
    q = mixer.queue(0)
    out = np.zeros((block_size, 2), np.float32)
    if steal:  # fill all 32 voices first
        for note in range(30, 62):
            q.note_on(note, 100)
        for _ in range(20):
            mixer.callback(out, block_size, None, None)
    q.note_on(100, 127)
    for i in range(1, 20):
        mixer.callback(out, block_size, None, None)
        sounding = [v for v in mixer._ids if mixer._note[v] == 100 and mixer._level[v] > 0.0]
        if sounding and (steal or np.any(out[:, 0])):
            return i
    raise RuntimeError("the note never sounded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="audio time simulated per block size")
    parser.add_argument("--blocks", default="128,256,512")
    parser.add_argument("--sample-rate", type=int, default=48000)
    args = parser.parse_args()
    sr = args.sample_rate
    keys = key_cache(sr)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"load average {os.getloadavg()[0]:.2f}; times per callback in ms (wall includes preemption)")
    variants = variant_cache(keys, LAYERED)
    modes = {"plain": (None, PLAIN, False, False), "3x3 split": (variants, LAYERED, False, False),
             "3x3 xfade": (variants, LAYERED, False, True), "3x3 x rand": (variants, LAYERED, True, True)}
    print("block budget mode       | wall: median   p99  worst  med% | cpu: median   p99  med%  p99% | "
          "latency blocks: fresh stolen")
    for block in (int(b) for b in args.blocks.split(",")):
        budget = block / sr
        p99 = lambda xs: xs[int(0.99 * (len(xs) - 1))]  # noqa: E731
        fresh = latency_blocks(block, sr, keys, steal=False)
        stolen = latency_blocks(block, sr, keys, steal=True)
        for mode, (var, layout, random, crossfade) in modes.items():
            wall, cpu = time_callback(block, sr, args.seconds, keys, var, layout, random, crossfade)
            print(f"{block:5d} {budget * 1e3:6.2f} {mode:10s} | {statistics.median(wall) * 1e3:12.3f} "
                  f"{p99(wall) * 1e3:5.2f} {wall[-1] * 1e3:6.2f} {100 * statistics.median(wall) / budget:5.1f} | "
                  f"{statistics.median(cpu) * 1e3:11.3f} {p99(cpu) * 1e3:5.3f} "
                  f"{100 * statistics.median(cpu) / budget:5.1f} {100 * p99(cpu) / budget:5.1f} | {fresh:20d} {stolen:6d}")


if __name__ == "__main__":
    main()
