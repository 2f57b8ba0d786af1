"""``hypergan data build``: render, filter and store the NSynth-like set, in parallel and resumably.

Each instrument is one task: a worker renders its notes, runs the quality filter, computes log-mels
and writes ``parts/NNNNN.npz`` atomically. A crash loses at most the instruments in flight; the next
run skips every finished part whose fingerprint matches. When all parts exist they are assembled
into the memory-mapped arrays of ``models/data/dataset.py``, and the manifest is written last.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import numpy as np

from models.data.dataset import FORMAT, DatasetError
from models.data.filter import FilterConfig, check_note, decide_pitched, final_reasons
from models.data.render import NoteTiming
from models.data.sources import DEFAULT_SOURCES, Plan, plan_instruments, source_name
from models.signal.audio import Audio
from models.signal.mel import PAPER_MEL, SHIPPED_MEL, TINY_MEL, MelConfig

MEL_PRESETS = {"shipped": SHIPPED_MEL, "tiny": TINY_MEL, "paper": PAPER_MEL}
FONT_CHECK_PATH = Path(__file__).with_name("font_check.json")
MEL_CHUNK = 32  # notes per log-mel batch (bounds the STFT's memory per worker)


@dataclass(frozen=True)
class BuildConfig:
    """Settings of one build; everything that changes the notes enters the fingerprint."""

    out: str
    sources: tuple[str, ...] = DEFAULT_SOURCES
    mel: str = "shipped"
    velocities: tuple[int, ...] = (60, 95, 127)
    seed: int = 0
    procedural_count: int = 1000
    limit_instruments: int = 0       # per source, evenly spread over its presets; 0 = all
    workers: int = 1
    keep_audio: bool = False
    keep_parts: bool = False
    font_dir: str | None = None
    use_font_check: bool = True
    hold_fraction: float = 0.75
    filter: FilterConfig = field(default_factory=FilterConfig)

    @property
    def mel_cfg(self) -> MelConfig:
        return MEL_PRESETS[self.mel]

    @property
    def timing(self) -> NoteTiming:
        return NoteTiming(self.mel_cfg.sample_rate, self.mel_cfg.num_samples, self.hold_fraction)

    def fingerprint(self) -> str:
        keys = dict(format=FORMAT, mel=self.mel_cfg.to_json(), velocities=list(self.velocities), seed=self.seed,
                    hold=self.hold_fraction, filter=asdict(self.filter), audio=self.keep_audio)
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def load_font_check(path: Path = FONT_CHECK_PATH) -> dict:
    """Presets to drop per font (sha256), from the fluidsynth reference check (``data check-fonts``)."""
    if not path.is_file():
        return {}
    return json.loads(path.read_text())["fonts"]


def make_plan(cfg: BuildConfig) -> Plan:
    font_check = load_font_check() if cfg.use_font_check else {}
    plan = plan_instruments(list(cfg.sources), cfg.velocities, cfg.seed, cfg.procedural_count,
                            cfg.font_dir, font_check)
    if not cfg.limit_instruments:
        return plan
    kept = []
    for source in map(source_name, cfg.sources):
        specs = [s for s in plan.instruments if s.source == source]
        if len(specs) > cfg.limit_instruments:
            pick = np.unique(np.linspace(0, len(specs) - 1, cfg.limit_instruments).round().astype(int))
            specs = [specs[i] for i in pick]
        kept.extend(specs)
    return Plan(kept, plan.fonts, plan.skipped)


class _Worker:
    """Per-process state: each font is loaded once per worker (the SF3 takes seconds to decode)."""

    def __init__(self, cfg: BuildConfig, parts_dir: str) -> None:
        import torch

        from models.signal.mel import LogMel

        torch.set_num_threads(1)
        self.cfg = cfg
        self.parts_dir = Path(parts_dir)
        self.logmel = LogMel(cfg.mel_cfg)
        self.fonts: dict = {}

    def render(self, spec) -> np.ndarray:
        """All notes of one instrument -> float32 ``[n, num_samples]`` (raw, not normalised)."""
        timing = self.cfg.timing
        if spec.recipe_index >= 0:
            from models.data.procedural import render_note
            from models.data.recipes import make_timbre

            timbre = make_timbre(spec.recipe_index, self.cfg.seed)
            return np.stack([render_note(timbre, k, v, timing) for k, v in spec.notes])
        from models.data.render import FontRenderer

        if spec.font_path not in self.fonts:
            self.fonts[spec.font_path] = FontRenderer(spec.font_path, timing)
        renderer = self.fonts[spec.font_path]
        return np.stack([renderer.note(spec.bank, spec.program, k, v) for k, v in spec.notes])

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(audio), MEL_CHUNK):
                wave = torch.from_numpy(audio[i:i + MEL_CHUNK].astype(np.float32) / 32767.0)
                out.append(self.logmel(wave).numpy().astype(np.float16))  # [B, n_mels, n_frames]
        return np.concatenate(out) if out else np.zeros((0, self.cfg.mel_cfg.n_mels, self.cfg.mel_cfg.n_frames), np.float16)

    def run(self, index: int, spec) -> dict:
        start, cpu_start = time.perf_counter(), time.process_time()
        raw = self.render(spec)
        keys = np.array([k for k, _ in spec.notes], np.int16)
        vels = np.array([v for _, v in spec.notes], np.int16)
        sr = self.cfg.mel_cfg.sample_rate
        checks = [check_note(Audio(x, sr), self.cfg.filter) for x in raw]
        pitched, agreement = decide_pitched(keys, checks, spec.nominal_pitched, self.cfg.filter)
        reasons = np.array(final_reasons(keys, checks, pitched, self.cfg.filter))
        keep = reasons == ""
        peaks = np.abs(raw[keep]).max(axis=1, keepdims=True) if keep.any() else np.ones((0, 1))
        audio = np.round(raw[keep] / peaks * 32767.0).astype(np.int16)  # peak-normalised
        estimates = np.array([c.pitch_estimate for c in checks], np.float32)
        part = dict(name=np.array(spec.name), fingerprint=np.array(self.cfg.fingerprint()),
                    keys=keys[keep], velocities=vels[keep], pitch_estimate=estimates[keep],
                    mels=self.log_mel(audio), pitched=np.array(pitched), agreement=np.array(agreement),
                    rejected_keys=keys[~keep], rejected_velocities=vels[~keep], rejected_reasons=reasons[~keep],
                    rejected_estimates=estimates[~keep])
        if self.cfg.keep_audio:
            part["audio"] = audio
        path = self.parts_dir / f"{index:05d}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **part)
        tmp.replace(path)
        return dict(index=index, name=spec.name, kept=int(keep.sum()), rejected=int((~keep).sum()),
                    seconds=time.perf_counter() - start, cpu_s=time.process_time() - cpu_start)


_WORKER: _Worker | None = None  # set in each pool process by _init_worker, never in the parent


def _init_worker(cfg: BuildConfig, parts_dir: str) -> None:
    global _WORKER
    _WORKER = _Worker(cfg, parts_dir)


def _run_task(index: int, spec) -> dict:
    assert _WORKER is not None
    return _WORKER.run(index, spec)


def part_is_done(path: Path, name: str, fingerprint: str) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as part:
            return str(part["name"]) == name and str(part["fingerprint"]) == fingerprint
    except (OSError, ValueError, KeyError):
        return False  # a damaged part is rendered again


def render_parts(cfg: BuildConfig, plan: Plan, parts_dir: Path, progress: Callable[[str], None]) -> dict:
    """Render every instrument that has no finished part. Returns timing statistics."""
    fp = cfg.fingerprint()
    pending = [(i, s) for i, s in enumerate(plan.instruments)
               if not part_is_done(parts_dir / f"{i:05d}.npz", s.name, fp)]
    total, done = len(plan.instruments), len(plan.instruments) - len(pending)
    if done:
        progress(f"resuming: {done}/{total} instruments already rendered")
    start = time.perf_counter()
    task_seconds, cpu_seconds = 0.0, 0.0
    if not pending:
        return dict(rendered=0, wall_s=0.0, task_s=0.0, cpu_s=0.0)

    def report(result: dict, k: int) -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / k * (len(pending) - k)
        progress(f"[{done + k}/{total}] {result['name']}: {result['kept']} notes, {result['rejected']} "
                 f"rejected, {result['seconds']:.1f} s ({result['cpu_s']:.1f} s CPU)  (eta {eta:.0f} s)")

    if cfg.workers <= 1:
        worker = _Worker(cfg, str(parts_dir))
        for k, (i, spec) in enumerate(pending, 1):
            result = worker.run(i, spec)
            task_seconds += result["seconds"]
            cpu_seconds += result["cpu_s"]
            report(result, k)
    else:
        ctx = get_context("spawn")  # fork after torch is imported is unsafe; spawn re-imports cleanly
        with ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(cfg, str(parts_dir))) as pool:
            futures = [pool.submit(_run_task, i, spec) for i, spec in pending]
            k = 0
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in finished:
                    if fut.exception() is not None:
                        for other in remaining:
                            other.cancel()
                        raise fut.exception()
                    k += 1
                    task_seconds += fut.result()["seconds"]
                    cpu_seconds += fut.result()["cpu_s"]
                    report(fut.result(), k)
    return dict(rendered=len(pending), notes=sum(len(s.notes) for _, s in pending),
                wall_s=time.perf_counter() - start, task_s=task_seconds, cpu_s=cpu_seconds)


def build(cfg: BuildConfig, progress: Callable[[str], None] = lambda _msg: None) -> Path:
    """Build (or finish, or reuse) the set in ``cfg.out``; returns the folder."""
    from models.data.assemble import assemble

    out = Path(cfg.out)
    plan = make_plan(cfg)
    if not plan.instruments:
        raise DatasetError("nothing to build: the chosen sources give no instruments")
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") == cfg.fingerprint() and manifest.get("plan") == plan_digest(plan):
            progress(f"{out}: already complete ({manifest['counts']['notes']} notes); reusing it")
            return out
        raise DatasetError(f"{out} already holds a different finished build; choose another --out or remove it")
    parts_dir = out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    progress(f"plan: {len(plan.instruments)} instruments, {sum(len(s.notes) for s in plan.instruments)} notes, "
             f"mel {cfg.mel} ({cfg.mel_cfg.n_mels}x{cfg.mel_cfg.n_frames}), {cfg.workers} workers")
    timing = render_parts(cfg, plan, parts_dir, progress)
    assemble(cfg, plan, out, plan_digest(plan), timing, progress)
    return out


def plan_digest(plan: Plan) -> str:
    names = [(s.name, s.notes) for s in plan.instruments]
    fonts = sorted((k, v.sha256) for k, v in plan.fonts.items())
    return hashlib.sha256(json.dumps([names, fonts]).encode()).hexdigest()[:16]
