"""Distil the trained vocoder into a narrower backbone (cheaper on the CPU, same inference steps).

The student is a ``NeuralVocoder`` with fewer channels; it learns the teacher's log-magnitude
(network head + mel prior, before the band projection and the phase), L1 over every bin and frame
of the training split's log-mels. Everything after the head holds no weights (locked phase, mel
projections), so a student that matches the head matches the vocoder. The teacher is
``vocoder.safetensors`` in ``--weights`` (default ``assets``), itself trained on the audio
(``models/train/vocoder.py``).

Resumable: the student and the step are saved as ``state-*.safetensors`` every ``save_every``
steps (Adam's moments restart on resume; the learning-rate schedule continues from the step).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from models import checkpoint
from models.errors import UserError
from models.train import common
from models.nets.vocoder import NeuralVocoder, VocoderConfig, load_vocoder


@dataclass(frozen=True)
class DistillConfig:
    dim: int = 96                 # the student's backbone (the teacher: 160 / 480 / 6)
    intermediate_dim: int = 288
    n_layers: int = 6
    batch_size: int = 64          # full clips
    lr: float = 2e-3
    min_lr: float = 2e-5
    schedule_steps: int = 20000   # cosine decay length; training may stop earlier (--minutes)
    weight_decay: float = 0.01
    log_every: int = 100
    eval_every: int = 1000
    save_every: int = 1000
    eval_batches: int = 8
    seed: int = 0


def student_config(teacher: VocoderConfig, cfg: DistillConfig) -> VocoderConfig:
    return dataclasses.replace(teacher, dim=cfg.dim, intermediate_dim=cfg.intermediate_dim, n_layers=cfg.n_layers)


def head_l1(student: NeuralVocoder, teacher: NeuralVocoder, log_mel: torch.Tensor) -> torch.Tensor:
    """Mean |log-magnitude of the student - the teacher's| over bins and frames."""
    log_mel = log_mel.float().clamp_min(teacher.cfg.mel.log_min)
    with torch.no_grad():
        target, _ = teacher.head_outputs(log_mel)
    with common.autocast(log_mel.device):
        got, _ = student.head_outputs(log_mel)
    return (got.float() - target).abs().mean()


def learning_rate(step: int, cfg: DistillConfig) -> float:
    t = min(step, cfg.schedule_steps) / cfg.schedule_steps
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Distil (or resume) in ``out`` for the budget in ``opts``; writes vocoder.safetensors (float16, the
    student with the teacher's inference steps), state shards and metrics.jsonl."""
    cfg = common.apply_overrides(DistillConfig(), opts.overrides)
    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    teacher_path = Path(opts.weights or "assets") / "vocoder.safetensors"
    if not teacher_path.is_file():
        raise UserError(f"no teacher vocoder at {teacher_path} (pass --weights DIR)")
    teacher = load_vocoder(teacher_path, device)
    if teacher.cfg.mel != data.mel_cfg:
        raise UserError(f"the teacher's mel grid {teacher.cfg.mel} differs from the data's {data.mel_cfg}")
    s_cfg = student_config(teacher.cfg, cfg)
    print(f"vocoder-distill: {common.config_json(cfg)}\nstudent: {checkpoint.config_to_json(s_cfg)}")
    if opts.dry_run:
        return {}
    out = Path(out)
    common.seed_everything(cfg.seed)
    common.configure_backends(device)
    train_notes = common.DeviceNotes(data, device, splits=(0,))
    has_valid = bool((data.split == 1).any())  # tiny test sets may have none: then train's own notes
    valid_notes = common.DeviceNotes(data, device, splits=(1,)) if has_valid else train_notes
    student = NeuralVocoder(s_cfg).to(device)
    step = 0
    state = common.load_state(out, "state")
    if state is not None:
        tensors, meta = state
        common.restore(student, tensors, "S")
        step = int(meta["step"])
    elif opts.init:
        student.load_state_dict(checkpoint.load(opts.init, NeuralVocoder)[0].state_dict())
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate(step, cfg), weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + step)
    eval_gen = torch.Generator().manual_seed(12345)
    eval_idx = [valid_notes.sample(cfg.batch_size, eval_gen) for _ in range(cfg.eval_batches)]
    log = common.MetricsLog(out / "metrics.jsonl")
    avg = common.Averager()
    budget = common.Budget(opts.minutes, opts.max_steps)
    start_step = step
    meta_base = {"stage": "vocoder-distill", "train_config": common.config_json(cfg), "mel": data.mel_cfg.to_json(),
                 "teacher": str(teacher_path), "teacher_digest": checkpoint.weights_digest(teacher)}

    def evaluate() -> dict[str, float]:
        student.eval()
        with torch.no_grad():
            loss = sum(float(head_l1(student, teacher, valid_notes.x(i))) for i in eval_idx) / len(eval_idx)
        student.train()
        return {"valid_head_l1": loss}

    def save() -> None:
        meta = dict(meta_base, step=step)
        common.save_state(out, "state", {"S": student}, meta)
        checkpoint.save(out / "vocoder.safetensors", student, meta, dtype=torch.float16)

    student.train()
    while not budget.expired():
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        loss = head_l1(student, teacher, train_notes.x(train_notes.sample(cfg.batch_size, gen)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg.add(head_l1=loss.detach())
        step += 1
        if step % cfg.log_every == 0:
            log.write(step, **avg.pop(), lr=learning_rate(step, cfg), s_per_step=budget.elapsed_s / (step - start_step))
        if step % cfg.eval_every == 0:
            log.write(step, **evaluate())
        if step % cfg.save_every == 0:
            save()
    save()
    final = evaluate()
    log.write(step, final=1, **final)
    return final
