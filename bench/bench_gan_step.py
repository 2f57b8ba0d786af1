"""Throughput of the GAN stage's training step (models/train/gan.py) at the shipped configs.

Random init, random log-mels of the data's shape (no dataset needed); the step is the stage's own
``GanBatches`` + ``GanStep`` (kNN draw, D with lazy R1, G with the timbre loss through f, EMA).
Per variant: seconds per step over ``--steps`` steps after a warm-up (one sync at the end, as in
training), kimg per 10 minutes, and a breakdown with a sync around each phase over 16 steps (one
R1): kNN target lookup, data gather, D (+ its Adam step), R1 (per R1 step and per step amortised),
G forward/backward (+ Adam), EMA. A short table is printed last.

    python -m bench.bench_gan_step --device cuda --steps 50
    python -m bench.bench_gan_step --device cuda --variants bf16+cl,bf16+cl+b128,bf16+cl+compile
    OMP_NUM_THREADS=1 python -m bench.bench_gan_step --device cpu --tiny --batch 8 --steps 3 --variants fp32  # smoke

A variant is tokens joined by "+": ``fp32`` or ``bf16`` (autocast), ``cl`` (channels_last),
``compile`` (torch.compile G, D and f), ``bN`` (batch size N, else ``--batch``), ``fused``
(fused Adam kernels). Variants that would start after ``--budget-s`` are skipped; at
``--deadline-s`` the running one is abandoned and the table printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import time
from dataclasses import dataclass

import torch

from models.nets.discriminator import Discriminator
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.signal.mel import SHIPPED_MEL, TINY_MEL, MelConfig
from models.train import common
from models.train.gan import GanBatches, GanStep, GanTrainConfig, ema_beta, prepare
from models.train.knn import build_neighbours

DEFAULT_VARIANTS = "bf16,bf16+cl,bf16+cl+compile,bf16+cl+b128"  # bf16 at --batch: how the stage trains now
PHASES = ("knn", "gather", "D", "R1", "G", "EMA")


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool
    channels_last: bool
    compile: bool
    fused_adam: bool
    batch_size: int

    @classmethod
    def parse(cls, text: str, batch_size: int) -> "Variant":
        tokens = set(text.split("+"))
        sizes = [int(t[1:]) for t in tokens if t.startswith("b") and t[1:].isdigit()]
        known = {"fp32", "bf16", "cl", "compile", "fused"} | {f"b{n}" for n in sizes}
        if tokens - known:
            raise SystemExit(f"unknown variant tokens {sorted(tokens - known)} in {text!r}")
        return cls(text, "bf16" in tokens, "cl" in tokens, "compile" in tokens, "fused" in tokens,
                   sizes[0] if sizes else batch_size)


def synthetic_notes(mel: MelConfig, n: int, device: torch.device, gen: torch.Generator):
    """Random log-mels ``[n, n_mels, n_frames]`` (float16, in the data's range) and keys ``[n]``."""
    mels = (torch.randn(n, mel.n_mels, mel.n_frames, generator=gen) * 2.0 - 4.0).clamp_min(mel.log_min)
    pitch = torch.randint(21, 109, (n,), generator=gen)
    return mels.half().to(device), pitch.to(device)


def build(v: Variant, mel: MelConfig, tiny: bool, notes: int, device: torch.device):
    """Fresh f, G, D, G_ema and the stage's batches and step for one variant (same seed each time)."""
    torch.manual_seed(0)
    make = "tiny" if tiny else "shipped"
    f = FeatureExtractor(getattr(FeatureExtractor.Config, make)(mel)).to(device).eval().requires_grad_(False)
    g_cfg = dataclasses.replace(getattr(Generator.Config, make)(mel), h_dim=f.cfg.h_dim)
    d_cfg = dataclasses.replace(getattr(Discriminator.Config, make)(mel), h_dim=f.cfg.h_dim)
    G, D = Generator(g_cfg).to(device), Discriminator(d_cfg).to(device)
    G_ema = Generator(g_cfg).to(device).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    mels, pitch = synthetic_notes(mel, notes, device, torch.Generator().manual_seed(1))
    with torch.no_grad(), common.autocast(device, v.bf16):
        h = torch.cat([f(mels[s:s + 256].float()).float() for s in range(0, notes, 256)])
    cfg = GanTrainConfig(batch_size=v.batch_size, autocast=v.bf16, channels_last=v.channels_last, compile=v.compile)
    batches = GanBatches(mels, pitch, h, build_neighbours(h, min(cfg.knn_k, notes - 1)), cfg.batch_size, cfg.p_self)
    G_run, D_run, f_run = prepare(G, D, f, cfg)
    step = GanStep(G_run, D_run, f_run, G_ema, cfg, device)
    if v.fused_adam:  # the same Adam, one fused kernel per parameter list
        for name in ("opt_g", "opt_d"):
            group = getattr(step, name).param_groups[0]
            setattr(step, name, torch.optim.Adam(group["params"], lr=group["lr"], betas=group["betas"], fused=True))
    return batches, step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(batches, step, gen, first: int, n: int, device: torch.device) -> float:
    """Seconds per step over ``n`` steps, synchronised once at the end (as training runs)."""
    sync(device)
    start = time.perf_counter()
    for k in range(first, first + n):
        step(k, batches(gen))
    sync(device)
    return (time.perf_counter() - start) / n


def breakdown(batches, step, gen, first: int, device: torch.device, n: int = 16) -> dict[str, float]:
    """Milliseconds per step of each phase, a sync around each, over ``n`` steps from ``first``;
    ``R1_per_call`` is per R1 step."""
    total = dict.fromkeys(PHASES, 0.0)
    r1_calls = 0

    def lap(name: str, t0: float) -> float:
        sync(device)
        t1 = time.perf_counter()
        total[name] += t1 - t0
        return t1

    for k in range(first, first + n):
        sync(device)
        t = time.perf_counter()
        i, j = batches.targets(gen)
        t = lap("knn", t)
        h, x, p = batches.gather(i, j)
        t = lap("gather", t)
        step.discriminator(h, x, p)
        t = lap("D", t)
        if k % step.cfg.r1_every == 0 and step.cfg.r1_gamma > 0:
            step.r1(h, x, p)
            r1_calls += 1
            t = lap("R1", t)
        step.opt_d.step()
        t = lap("D", t)
        step.generator(h, p)
        t = lap("G", t)
        common.ema_update(step.G_ema, step.G, ema_beta(step.cfg, k))
        lap("EMA", t)
    out = {name: 1000 * total[name] / n for name in PHASES}
    out["R1_per_call"] = 1000 * total["R1"] / max(r1_calls, 1)
    return out


def run_variant(v: Variant, args, mel: MelConfig, device: torch.device) -> dict:
    t0 = time.perf_counter()
    batches, step = build(v, mel, args.tiny, args.notes, device)
    gen = torch.Generator(device=device).manual_seed(2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed_steps(batches, step, gen, 0, args.warmup, device)  # cuDNN autotuning, compilation, one R1
    warmup_s = time.perf_counter() - t0
    s_per_step = timed_steps(batches, step, gen, args.warmup, args.steps, device)
    phases = breakdown(batches, step, gen, args.warmup + args.steps, device)  # 16 steps: one R1
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"variant": v.name, "batch": v.batch_size, "s_per_step": s_per_step,
            "kimg_per_10min": v.batch_size * 600 / s_per_step / 1000, "warmup_s": warmup_s, "peak_gib": peak,
            **{f"ms_{k}": ms for k, ms in phases.items()}}


def table(rows: list[dict]) -> str:
    head = ("variant", "batch", "s/step", "kimg/10min", "knn ms", "gather ms", "D ms", "R1 ms/call",
            "R1 ms/step", "G ms", "EMA ms", "warm-up s", "peak GiB")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['variant']} | skipped: {r['skipped']} |")
            continue
        cells = (r["variant"], r["batch"], f"{r['s_per_step']:.4f}", f"{r['kimg_per_10min']:.0f}", f"{r['ms_knn']:.2f}",
                 f"{r['ms_gather']:.2f}", f"{r['ms_D']:.1f}", f"{r['ms_R1_per_call']:.1f}", f"{r['ms_R1']:.1f}",
                 f"{r['ms_G']:.1f}", f"{r['ms_EMA']:.2f}", f"{r['warmup_s']:.0f}", f"{r['peak_gib']:.1f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def run_all(args, mel: MelConfig, device: torch.device) -> list[dict]:
    """Every variant in turn, within ``--budget-s`` (to start) and ``--deadline-s`` (to finish)."""
    start, rows = time.perf_counter(), []

    def deadline(signum, frame):
        raise TimeoutError(f"deadline of {args.deadline_s:.0f} s")

    previous = signal.signal(signal.SIGALRM, deadline)
    signal.alarm(max(1, int(args.deadline_s)))
    try:
        for v in [Variant.parse(text, args.batch) for text in args.variants.split(",")]:
            elapsed = time.perf_counter() - start
            left = args.budget_s - elapsed
            if left <= 0 or (v.compile and left < args.compile_s) or elapsed >= args.deadline_s:
                why = "past the deadline" if elapsed >= args.deadline_s else f"{max(left, 0):.0f} s of the budget left"
                rows.append({"variant": v.name, "skipped": why})
                continue
            try:
                rows.append(run_variant(v, args, mel, device))
            except (RuntimeError, TimeoutError) as exc:  # out of memory, a compile error, the deadline
                rows.append({"variant": v.name, "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"})
            if device.type == "cuda":
                torch.cuda.empty_cache()
            print(json.dumps(rows[-1]), flush=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first (autotuning, compilation, R1)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--notes", type=int, default=2048, help="synthetic notes (kNN index over them)")
    parser.add_argument("--tiny", action="store_true", help="tiny networks and mel grid (CPU smoke run)")
    parser.add_argument("--budget-s", type=float, default=200.0, help="start no variant after this many seconds")
    parser.add_argument("--deadline-s", type=float, default=280.0, help="abandon the running variant then")
    parser.add_argument("--compile-s", type=float, default=100.0, help="a compile variant needs this much budget left")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    common.configure_backends(device)
    mel = TINY_MEL if args.tiny else SHIPPED_MEL
    if device.type == "cuda":
        print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    start = time.perf_counter()
    rows = run_all(args, mel, device)
    print(f"\nGAN step, {'tiny' if args.tiny else 'shipped'} G + D + f, {args.steps} timed steps per variant, "
          f"{time.perf_counter() - start:.0f} s in all")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
