"""Time to invert one keyboard (88 notes of the shipped mel grid): neural vocoder vs Griffin-Lim.

Random-init weights (the cost does not depend on them); the shipped step counts of the device
(CPU: 0 refine + 9 coarse + 2 mel projections; CUDA: 4 + 0 + 32), or ``--steps R/P`` / ``R/C/P``.
``--half`` runs under autocast (float16 on CUDA, bfloat16 on the CPU; the backbone alone in bfloat16
was no faster overall on an AMX CPU: 1.73-1.80 s vs 1.69-1.71 s in float32). Reports wall time (best of
``--repeats`` after a warm-up) and, on the CPU, the process CPU time, which on a shared machine
says more about the code than the wall clock does; real-time factor = audio seconds / wall seconds.

    OMP_NUM_THREADS=1 python -m bench.bench_vocoder --workers 2     # this 2-core CPU
    python -m bench.bench_vocoder --device cuda
    python -m bench.bench_vocoder --gl-notes 22          # Griffin-Lim on a quarter, scaled to 88
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from models.signal.mel import SHIPPED_MEL, GriffinLim
from models.nets.vocoder import NeuralVocoder, VocoderConfig, VocoderSchedule


def timed(fn: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) over ``repeats`` calls after one warm-up."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        run = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, run)
    return best


def in_workers(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, workers: int) -> Callable[[], None]:
    """Split the notes over ``workers`` Python threads (torch ops release the GIL), as the engine's
    CPU pipeline runs single-threaded workers side by side."""
    parts = list(x.tensor_split(workers))
    if workers == 1:
        return lambda: fn(parts[0])
    pool = ThreadPoolExecutor(workers)
    return lambda: list(pool.map(fn, parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--workers", type=int, default=2, help="notes split over this many worker threads")
    parser.add_argument("--notes", type=int, default=88)
    parser.add_argument("--gl-notes", type=int, default=88, help="Griffin-Lim on this many notes, scaled to --notes")
    parser.add_argument("--gl-iters", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--half", action="store_true",
                        help="the backbone under autocast (float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--steps", help="R/P or R/C/P: refine_iters / (coarse_projections /) mel_projections "
                                        "instead of the device's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    mel = SHIPPED_MEL
    cfg = VocoderConfig.shipped(mel)
    schedule = VocoderSchedule()
    if args.steps:
        schedule = schedule.with_steps(*(int(n) for n in args.steps.split("/")))
    vocoder = NeuralVocoder(cfg, schedule).to(device).eval().requires_grad_(False)
    steps = vocoder.steps(device, recording=False)
    invert = vocoder
    if args.half:  # autocast, not .half(): the vocoder keeps its analytic spectrum steps in float32
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

        def invert(log_mel: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=dtype):
                return vocoder(log_mel)
    gl = GriffinLim(mel, n_iter=args.gl_iters).to(device)
    x = (torch.rand(args.notes, mel.n_mels, mel.n_frames) * 10 + mel.log_min).to(device)
    audio_s = args.notes * mel.duration_s
    params = sum(p.numel() for p in vocoder.parameters())
    print(f"device {device}, {args.workers} workers x {torch.get_num_threads()} threads; {args.notes} notes x {mel.duration_s:.2f} s "
          f"({mel.n_mels} mels x {mel.n_frames} frames, hop {mel.hop_length}); vocoder {params:,} params "
          f"(dim {cfg.dim}, {cfg.n_layers} layers, iSTFT n_fft {cfg.n_fft}; {steps.refine_iters} refine + "
          f"{steps.coarse_projections} coarse (hop x{schedule.coarse_hop_factor}) + {steps.mel_projections} mel "
          f"projections (hop x{steps.mel_hop_factor}))")
    rows = []
    with torch.inference_mode():
        workers = args.workers if device.type == "cpu" else 1
        wall, cpu = timed(in_workers(invert, x, workers), args.repeats, device)
        rows.append(("neural vocoder" + (" (autocast)" if args.half else ""), wall, cpu))
        scale = args.notes / args.gl_notes
        gl_wall, gl_cpu = timed(in_workers(gl, x[:args.gl_notes], workers), max(1, min(args.repeats, 2)), device)
        rows.append((f"Griffin-Lim {args.gl_iters} it", gl_wall * scale, gl_cpu * scale))
    print("| inverter | wall s | CPU s | x real time |\n|---|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {audio_s / wall:.0f} |")


if __name__ == "__main__":
    main()
