"""S1: train the pitch-invariant feature extractor f.

f learns to name the instrument (and its family) from one note, while a pitch classifier on its
features is trained through a gradient-reversal layer: f is pushed to carry timbre, not pitch.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from models import checkpoint
from models.features import FeatureExtractor
from models.train import common


@dataclass(frozen=True)
class FeaturesTrainConfig:
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pitch_weight: float = 1.0      # weight of the adversarial pitch loss
    grl_scale: float = 1.0         # gradient-reversal strength seen by f
    label_smoothing: float = 0.1
    gain_jitter_db: float = 6.0    # random level offset: log-mel shifts by a constant
    holdout_every: int = 20        # every n-th note of training instruments is held out (instrument accuracy)
    log_every: int = 100
    eval_every: int = 1000
    save_every: int = 2000
    seed: int = 0


def feature_net_config(mel, n_instruments: int, tiny: bool):
    cfg_cls = FeatureExtractor.Config
    return cfg_cls.tiny(mel, n_instruments) if tiny else cfg_cls.shipped(mel, n_instruments)


def holdout_mask(n: int, every: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    mask[::every] = True
    return mask


def jitter_gain(x: torch.Tensor, max_db: float, floor: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Shift log-mels by a random per-note gain (natural-log units), never below the floor."""
    if max_db <= 0:
        return x
    shift = (torch.rand(x.shape[0], 1, 1, device=x.device) * 2 - 1) * (max_db / 20 * 2.302585)
    return torch.maximum(x + shift, torch.full_like(x, floor))


def train_step(f_train, f: FeatureExtractor, opt, x, inst, pitch, cfg: FeaturesTrainConfig,
               device) -> dict[str, torch.Tensor]:
    """One step: instrument CE, plus pitch CE whose gradient reaches f reversed."""
    with common.autocast(device):
        h = f_train(x)
        inst_logits = f.instrument_logits(h)
        pitch_logits = f.pitch_logits(h, cfg.grl_scale)
    loss_inst = F.cross_entropy(inst_logits.float(), inst, label_smoothing=cfg.label_smoothing)
    loss_pitch = F.cross_entropy(pitch_logits.float(), pitch - 21)
    opt.zero_grad(set_to_none=True)
    (loss_inst + cfg.pitch_weight * loss_pitch).backward()
    opt.step()
    return {"loss_inst": loss_inst, "loss_pitch_adv": loss_pitch}


@torch.no_grad()
def embed(f, notes: common.DeviceNotes, batch_size: int = 512) -> torch.Tensor:
    """h for every note of ``notes`` -> [N, h_dim] float32."""
    was_training = f.training
    f.eval()
    out = []
    for idx in notes.batches(batch_size):
        with common.autocast(notes.device):
            out.append(f(notes.x(idx)).float())
    f.train(was_training)
    return torch.cat(out)


def linear_probe_accuracy(h_train: torch.Tensor, y_train: torch.Tensor, h_test: torch.Tensor, y_test: torch.Tensor,
                          n_classes: int, steps: int = 300) -> float:
    """Accuracy of a linear softmax classifier fitted on frozen features (full-batch Adam)."""
    mean, std = h_train.mean(0), h_train.std(0) + 1e-6
    a, b = (h_train - mean) / std, (h_test - mean) / std
    probe = torch.nn.Linear(a.shape[1], n_classes).to(a.device)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(probe(a), y_train)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return float((probe(b).argmax(1) == y_test).float().mean())


@torch.no_grad()
def evaluate(f: FeatureExtractor, train_notes, valid_notes, holdout, instrument_family: torch.Tensor) -> dict[str, float]:
    """Instrument accuracy on held-out notes of training instruments; family accuracy of unseen
    instruments (the family of the training instrument f names); a linear pitch probe on frozen h
    (near chance 1/88 = pitch-invariant)."""
    h_train = embed(f, train_notes)
    inst_pred = f.instrument_logits(h_train).argmax(1)
    metrics = {"inst_acc_holdout": float((inst_pred == train_notes.instrument)[holdout].float().mean())}
    probe_fit = ~holdout
    if len(valid_notes):
        h_valid = embed(f, valid_notes)
        family_pred = instrument_family[f.instrument_logits(h_valid).argmax(1)]
        metrics["family_acc_unseen"] = float((family_pred == valid_notes.family).float().mean())
        pv = valid_notes.pitched
        if pv.any():
            metrics["pitch_probe_acc"] = linear_probe_accuracy(
                h_train[probe_fit], train_notes.pitch[probe_fit] - 21, h_valid[pv], valid_notes.pitch[pv] - 21, 88)
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:  # flags come from models.train.cli
    pass


def run(args: argparse.Namespace) -> int:
    train(common.load_data(args.data), Path(args.out), common.RunOptions.from_args(args))
    return 0


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) in ``out`` for the budget in ``opts``; returns the final metrics."""
    d = common.setup_distributed(opts.device)
    cfg = common.apply_overrides(FeaturesTrainConfig(), opts.overrides)
    net_cfg = feature_net_config(data.mel_cfg, len(data.instruments), opts.tiny)
    net_cfg = common.apply_overrides(net_cfg, opts.overrides, prefix="net")
    if d.is_main:
        print(f"features: {common.config_json(cfg)}\nnet: {common.config_json(net_cfg)}")
    if opts.dry_run:
        return {}
    out = Path(out)
    common.seed_everything(cfg.seed + d.rank)
    common.configure_backends(d.device)
    train_notes = common.DeviceNotes(data, d.device, splits=(0,))
    valid_notes = common.DeviceNotes(data, d.device, splits=(1,))
    holdout = holdout_mask(len(train_notes), cfg.holdout_every, d.device)
    fit_idx = torch.nonzero(~holdout).squeeze(1)

    f = FeatureExtractor(net_cfg).to(d.device)
    instrument_family = torch.tensor([data.families.index(i.family) for i in data.instruments], device=d.device)
    step = 0
    state = common.load_state(out, "state")
    if state is not None:
        tensors, meta = state
        common.restore(f, tensors, "f")
        step = int(meta["step"])
    elif opts.init:
        f.load_state_dict(checkpoint.load(opts.init, FeatureExtractor)[0].state_dict())
    start_step = step
    f_train = common.wrap_ddp(f, d)
    opt = torch.optim.AdamW(f.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    log = common.MetricsLog(out / "metrics.jsonl", enabled=d.is_main)
    avg = common.Averager()
    budget = common.Budget(opts.minutes, opts.max_steps)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank + step)
    meta_base = {"stage": "features", "train_config": common.config_json(cfg), "mel": data.mel_cfg.to_json()}

    def save() -> None:
        if not d.is_main:
            return
        meta = dict(meta_base, step=step)
        common.save_state(out, "state", {"f": f}, meta)
        checkpoint.save(out / "features.safetensors", f, meta)

    while not budget.expired():
        idx = fit_idx[torch.randint(len(fit_idx), (cfg.batch_size,), generator=gen).to(d.device)]
        x = jitter_gain(train_notes.x(idx), cfg.gain_jitter_db, data.mel_cfg.log_min)
        losses = train_step(f_train, f, opt, x, train_notes.instrument[idx], train_notes.pitch[idx], cfg, d.device)
        avg.add(**losses)
        step += 1
        if step % cfg.log_every == 0 and d.is_main:
            log.write(step, **avg.pop(), notes_per_s=(step - start_step) * cfg.batch_size / max(budget.elapsed_s, 1e-6))
        if step % cfg.eval_every == 0 and d.is_main:
            log.write(step, **evaluate(f, train_notes, valid_notes, holdout, instrument_family))
        if step % cfg.save_every == 0:
            save()
    save()
    final = evaluate(f, train_notes, valid_notes, holdout, instrument_family) if d.is_main else {}
    log.write(step, final=1, **final)
    return final
