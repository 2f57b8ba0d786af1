"""Train the evaluation classifiers (separate from f): an 88-way pitch classifier and an instrument
classifier whose penultimate features give the feature MSE and FID of ``hypergan eval``."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from models import checkpoint
from models.nets.classifiers import InstrumentClassifier, PitchClassifier
from models.train import common
from models.train.loop import LoopConfig, Run, Stage
from models.train.features import holdout_mask, jitter_gain


@dataclass(frozen=True)
class ClassifierTrainConfig(LoopConfig):
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    gain_jitter_db: float = 6.0
    holdout_every: int = 20


def pitch_band_accuracy(pred: torch.Tensor, midi: torch.Tensor, band: int = 12) -> dict[str, float]:
    """Exact-key accuracy per band of ``band`` keys from MIDI 21 (e.g. ``pitch_acc_21_32``)."""
    out = {}
    for lo in range(21, 109, band):
        hi = min(lo + band - 1, 108)
        m = (midi >= lo) & (midi <= hi)
        if m.any():
            out[f"pitch_acc_{lo}_{hi}"] = float((pred[m] == midi[m]).float().mean())
    return out


@torch.no_grad()
def predict(net, notes: common.DeviceNotes, mask: torch.Tensor | None = None) -> torch.Tensor:
    net.eval()
    preds = []
    for idx in notes.batches(512):
        with common.autocast(notes.device):
            preds.append(net.logits(notes.x(idx)).float().argmax(1))
    net.train()
    pred = torch.cat(preds)
    return pred if mask is None else pred[mask]


def evaluate(pitch_net, inst_net, train_notes, valid_notes, holdout) -> dict[str, float]:
    metrics: dict[str, float] = {}
    inst_pred = predict(inst_net, train_notes)
    metrics["inst_acc_holdout"] = float((inst_pred == train_notes.instrument)[holdout].float().mean())
    if len(valid_notes) and valid_notes.pitched.any():
        pv = valid_notes.pitched
        pred = predict(pitch_net, valid_notes)[pv] + 21
        midi = valid_notes.pitch[pv]
        metrics["pitch_acc_unseen"] = float((pred == midi).float().mean())
        metrics["pitch_acc_unseen_within1"] = float(((pred - midi).abs() <= 1).float().mean())
        metrics.update(pitch_band_accuracy(pred, midi))
    return metrics



class ClassifiersStep:
    """One step of both classifiers: pitch on pitched fitting notes, instrument on all fitting notes."""

    def __init__(self, pitch_train, inst_train, opt, notes: common.DeviceNotes, fit: torch.Tensor,
                 cfg: ClassifierTrainConfig) -> None:
        self.pitch_train, self.inst_train, self.opt, self.notes, self.cfg = pitch_train, inst_train, opt, notes, cfg
        self.fit_idx = torch.nonzero(fit).squeeze(1)
        self.pitched_idx = torch.nonzero(fit & notes.pitched).squeeze(1)

    def __call__(self, step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        cfg, notes, floor = self.cfg, self.notes, self.notes.mel_cfg.log_min
        B, dev = cfg.batch_size, gen.device
        pi = self.pitched_idx[torch.randint(len(self.pitched_idx), (B,), generator=gen, device=dev).to(notes.device)]
        ii = self.fit_idx[torch.randint(len(self.fit_idx), (B,), generator=gen, device=dev).to(notes.device)]
        with common.autocast(notes.device):  # forward() of the classifiers is logits(); DDP calls forward
            pitch_logits = self.pitch_train(jitter_gain(notes.x(pi), cfg.gain_jitter_db, floor))
            inst_logits = self.inst_train(jitter_gain(notes.x(ii), cfg.gain_jitter_db, floor))
        loss_pitch = F.cross_entropy(pitch_logits.float(), notes.pitch[pi] - 21, label_smoothing=cfg.label_smoothing)
        loss_inst = F.cross_entropy(inst_logits.float(), notes.instrument[ii], label_smoothing=cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        (loss_pitch + loss_inst).backward()
        self.opt.step()
        return {"loss_pitch": loss_pitch.detach(), "loss_inst": loss_inst.detach()}


def export(pitch_net, inst_net, out: Path, meta: dict) -> None:
    checkpoint.save(out / "pitch_classifier.safetensors", pitch_net, meta)
    checkpoint.save(out / "instrument_classifier.safetensors", inst_net, meta)


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) in ``out`` for the budget in ``opts``; returns the final metrics."""
    run = Run(opts, ClassifierTrainConfig())
    cfg, dev = run.cfg, run.device
    make = "tiny" if opts.tiny else "shipped"
    pitch_cfg = run.config(getattr(PitchClassifier.Config, make)(data.mel_cfg), "pitch")
    inst_cfg = run.config(getattr(InstrumentClassifier.Config, make)(data.mel_cfg, len(data.instruments)), "instrument")
    if run.announce("eval-classifiers", cfg, pitch=pitch_cfg, instrument=inst_cfg):
        return {}
    train_notes = common.DeviceNotes(data, dev, splits=(0,))
    valid_notes = common.DeviceNotes(data, dev, splits=(1,))
    holdout = holdout_mask(len(train_notes), cfg.holdout_every, dev)
    pitch_net, inst_net = PitchClassifier(pitch_cfg).to(dev), InstrumentClassifier(inst_cfg).to(dev)
    opt = torch.optim.AdamW(list(pitch_net.parameters()) + list(inst_net.parameters()), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    step = ClassifiersStep(run.wrap(pitch_net), run.wrap(inst_net), opt, train_notes, ~holdout, cfg)
    return run.train(Stage(
        "eval-classifiers", cfg, {"pitch": pitch_net, "instrument": inst_net}, step, {"opt": opt},
        meta={"mel": data.mel_cfg.to_json()}, export=functools.partial(export, pitch_net, inst_net),
        probe=lambda step, final: evaluate(pitch_net, inst_net, train_notes, valid_notes, holdout)), out)
