"""Morph smoothness: how the timbre of a mix moves between its corner sounds as the weights change.

    python -m bench.morph                               # shipped weights, CPU, demo sounds
    python -m bench.morph --refine 0 --keys 48,60,72

For a pair (A -> B over the weight of B) and a quad (the pad's A -> D diagonal and its centre), each
mix renders ``--keys`` (all at the model's 16 kHz); the distance of the rendered notes to each
corner's own sound is the Euclidean distance of their MFCC 1-19 mean+std
(``models.evaluation.fidelity.mfcc_stats``), z-scored per dimension by the four corner sounds (as
``identification`` does with its suite), averaged over the keys; and to each corner's instrument
(the corner sound alone, rendered at the same keys), key by key. ``t`` places the notes on the line
from A (0) to B (1): ``(d_A^2 - d_B^2 + d_AB^2) / (2 d_AB^2)``. A smooth morph moves ``t`` step by step. Also timed: a pad move's full 88-key re-render with
every sound's refinement at hand (what the app does after the first render).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from engine.instrument import Engine
from engine.mix import Mix, pad_weights
from engine.refine import DEFAULT_REFINEMENT
from models.evaluation.fidelity import mfcc_stats

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"
PAIR = ("saw_pad", "voice_ah")
QUAD = ("saw_pad", "voice_ah", "fm_bell", "breath_flute")   # corners A, B, C, D
MEAN, STD = 0.0, 1.0    # of the corner sounds' features, set in main()


def features(engine: Engine, mix: Mix, keys: list[int], refine) -> np.ndarray:
    """z-scored MFCC stats of the mix's notes at ``keys`` ``[K, 36]``."""
    cond = engine.conditioning(mix, refine=refine)
    waves = engine.render_waves(cond, keys, engine.mel_cfg.sample_rate)
    return (mfcc_stats(waves, engine.mel_cfg.sample_rate) - MEAN) / STD


def distances(feats: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Mean distance of notes ``[K, d]`` to each corner ``[n, d]`` (its sound) or ``[n, K, d]`` (its notes, key by key)."""
    if corners.ndim == 2:
        corners = np.repeat(corners[:, None], len(feats), axis=1)
    return np.linalg.norm(feats[None] - corners, axis=2).mean(axis=1)


def table(engine: Engine, rows: list[tuple[str, Mix]], own: np.ndarray, notes: np.ndarray, keys: list[int],
          refine) -> None:
    """Per mix: distances to each corner's sound, then to each corner's instrument; t on A -> B for both."""
    d_ab = (float(np.linalg.norm(own[0] - own[1])), float(distances(notes[0], notes[1:2])[0]))
    print("mix            to the sounds: d(A) d(B) ...  t  |  to the corner instruments: d(A) d(B) ...  t")
    for label, mix in rows:
        feats = features(engine, mix, keys, refine)
        d_sound, d_inst = distances(feats, own), distances(feats, notes)
        print(f"{label:14s} " + " ".join(f"{v:5.2f}" for v in d_sound) + f"  {along(d_sound, d_ab[0]):5.2f}  |  "
              + " ".join(f"{v:5.2f}" for v in d_inst) + f"  {along(d_inst, d_ab[1]):5.2f}")


def along(d: np.ndarray, d_ab: float) -> float:
    """Where notes at distances ``d[0]`` from A and ``d[1]`` from B project on the line A (0) -> B (1)."""
    return float((d[0] ** 2 - d[1] ** 2 + d_ab ** 2) / (2 * d_ab ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="48,60,72")
    parser.add_argument("--refine", type=float, default=1.0, help="refinement strength (0: off)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    keys = [int(k) for k in args.keys.split(",")]
    engine = Engine(device="cpu", num_threads=args.threads)
    refine = DEFAULT_REFINEMENT.at_strength(args.refine) if args.refine > 0 else None
    sounds = {name: engine.load_sample(DEMO / f"{name}.wav") for name in QUAD}
    rate = engine.mel_cfg.sample_rate
    start = time.perf_counter()
    if refine is not None:
        for s in sounds.values():
            engine.refined(s, refine)
    print(f"refined 4 sounds in {time.perf_counter() - start:.1f} s" if refine else "no refinement")
    global MEAN, STD
    own = mfcc_stats(np.stack([s.audio.samples for s in sounds.values()]), rate)   # [4, 36]
    MEAN, STD = own.mean(axis=0), own.std(axis=0) + 1e-6
    own = (own - MEAN) / STD
    corners = list(sounds.values())
    notes = np.stack([features(engine, Mix.of([s], [1.0]), keys, refine) for s in corners])   # [4, K, 36]
    pair = [(f"w_B {w:.2f}", Mix.of(corners[:2], [1 - w, w])) for w in (0.0, 0.25, 0.5, 0.75, 1.0)]
    print(f"\npair A={PAIR[0]} B={PAIR[1]}")
    table(engine, pair, own[:2], notes[:2], keys, refine)
    print(f"\nquad A={QUAD[0]} B={QUAD[1]} C={QUAD[2]} D={QUAD[3]} at pad (x, y); t on A -> B")
    spots = [(t, t) for t in (0.0, 0.25, 0.5, 0.75, 1.0)] + [(1.0, 0.0), (0.0, 1.0), (0.5, 0.0), (0.25, 0.75)]
    table(engine, [(f"({x:.2f}, {y:.2f})", Mix.of(corners, list(pad_weights(x, y, "ABCD").values())))
                   for x, y in spots], own, notes, keys, refine)
    for xy in ((0.3, 0.6), (0.7, 0.2)):
        mix = Mix.of(list(sounds.values()), list(pad_weights(*xy, "ABCD").values()))
        first: list[float] = []
        t0 = time.perf_counter()
        keys88 = engine.render(mix, refine=refine, on_key=lambda m, k: first or first.append(time.perf_counter() - t0))
        print(f"pad move to {xy}: first key {first[0]:.2f} s, {len(keys88)} keys in {time.perf_counter() - t0:.1f} s "
              f"({engine.nets.vocoder_name}, {engine.workers} workers)")


if __name__ == "__main__":
    main()
