"""Distil the trained vocoder into a narrower backbone (cheaper on the CPU, same inference steps).

The student is a ``NeuralVocoder`` with fewer channels; it learns the teacher's log-magnitude
(network head + mel prior, before the band projection and the phase), L1 over every bin and frame
of the training split's log-mels. Everything after the head holds no weights (locked phase, mel
projections), so a student that matches the head matches the vocoder. The teacher is
``vocoder.safetensors`` in ``--weights`` (default ``assets``), itself trained on the audio
(``models/train/vocoder.py``).

Resumable like every stage (``models/train/loop.py``): student, AdamW state and step in
``state-*.safetensors`` every ``save_every`` steps; the learning rate follows the step.
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
from models.train.loop import LoopConfig, Run, Stage
from models.nets.vocoder import NeuralVocoder, VocoderConfig, load_vocoder


@dataclass(frozen=True)
class DistillConfig(LoopConfig):
    dim: int = 96                 # the student's backbone (the teacher: 160 / 480 / 6)
    intermediate_dim: int = 288
    n_layers: int = 6
    batch_size: int = 64          # full clips
    lr: float = 2e-3
    min_lr: float = 2e-5
    schedule_steps: int = 20000   # cosine decay length; training may stop earlier (--minutes)
    weight_decay: float = 0.01
    eval_batches: int = 8
    save_every: int = 1000


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


class DistillStep:
    """One AdamW step of the student on the head L1 to the teacher, at the step's cosine learning rate."""

    def __init__(self, student: NeuralVocoder, teacher: NeuralVocoder, notes: common.DeviceNotes,
                 cfg: DistillConfig) -> None:
        self.student, self.teacher, self.notes, self.cfg = student, teacher, notes, cfg
        self.opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def __call__(self, step: int, gen: torch.Generator) -> dict[str, torch.Tensor | float]:
        lr = learning_rate(step, self.cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss = head_l1(self.student, self.teacher, self.notes.x(self.notes.sample(self.cfg.batch_size, gen)))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"head_l1": loss.detach(), "lr": lr}


def load_teacher(weights: Path, data, device: torch.device) -> NeuralVocoder:
    path = weights / "vocoder.safetensors"
    if not path.is_file():
        raise UserError(f"no teacher vocoder at {path} (pass --weights DIR)")
    teacher = load_vocoder(path, device)
    if teacher.cfg.mel != data.mel_cfg:
        raise UserError(f"the teacher's mel grid {teacher.cfg.mel} differs from the data's {data.mel_cfg}")
    return teacher


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Distil (or resume) in ``out`` for the budget in ``opts``; writes vocoder.safetensors (float16, the
    student with the teacher's inference steps), state shards and metrics.jsonl."""
    run = Run(opts, DistillConfig(), single_process="vocoder-distill runs on one GPU")
    cfg, dev = run.cfg, run.device
    teacher = load_teacher(run.weights, data, dev)
    s_cfg = student_config(teacher.cfg, cfg)
    if run.announce("vocoder-distill", cfg, student=s_cfg):
        return {}
    train_notes = common.DeviceNotes(data, dev, splits=(0,))
    has_valid = bool((data.split == 1).any())  # tiny test sets may have none: then train's own notes
    valid_notes = common.DeviceNotes(data, dev, splits=(1,)) if has_valid else train_notes
    student = NeuralVocoder(s_cfg).to(dev).train()
    if opts.init:
        student.load_state_dict(checkpoint.load(opts.init, NeuralVocoder)[0].state_dict())
    eval_gen = torch.Generator().manual_seed(12345)
    eval_idx = [valid_notes.sample(cfg.batch_size, eval_gen) for _ in range(cfg.eval_batches)]

    @torch.no_grad()
    def probe(step: int, final: bool) -> dict[str, float]:
        student.eval()
        loss = sum(float(head_l1(student, teacher, valid_notes.x(i))) for i in eval_idx) / len(eval_idx)
        student.train()
        return {"valid_head_l1": loss}

    trainer = DistillStep(student, teacher, train_notes, cfg)
    meta = {"mel": data.mel_cfg.to_json(), "teacher": str(run.weights / "vocoder.safetensors"),
            "teacher_digest": checkpoint.weights_digest(teacher)}
    return run.train(Stage(
        "vocoder-distill", cfg, {"S": student}, trainer, {"opt": trainer.opt}, meta=meta, probe=probe,
        export=lambda out, meta: checkpoint.save(out / "vocoder.safetensors", student, meta, dtype=torch.float16)), out)
