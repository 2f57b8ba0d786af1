"""Train the evaluation classifiers (separate from f): an 88-way pitch classifier and an instrument
classifier whose penultimate features give the feature MSE and FID of ``hypergan eval``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from models import checkpoint
from models.nets.classifiers import InstrumentClassifier, PitchClassifier
from models.train import common
from models.train.features import holdout_mask, jitter_gain


@dataclass(frozen=True)
class ClassifierTrainConfig:
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    gain_jitter_db: float = 6.0
    holdout_every: int = 20
    log_every: int = 100
    eval_every: int = 1000
    save_every: int = 2000
    seed: int = 0


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



def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) in ``out`` for the budget in ``opts``; returns the final metrics."""
    d = common.setup_distributed(opts.device)
    cfg = common.apply_overrides(ClassifierTrainConfig(), opts.overrides)
    n_inst = len(data.instruments)
    make = "tiny" if opts.tiny else "shipped"
    pitch_cfg = common.apply_overrides(getattr(PitchClassifier.Config, make)(data.mel_cfg), opts.overrides, "pitch")
    inst_cfg = getattr(InstrumentClassifier.Config, make)(data.mel_cfg, n_inst)
    inst_cfg = common.apply_overrides(inst_cfg, opts.overrides, "instrument")
    if d.is_main:
        print(f"eval-classifiers: {common.config_json(cfg)}\npitch: {common.config_json(pitch_cfg)}\n"
              f"instrument: {common.config_json(inst_cfg)}")
    if opts.dry_run:
        return {}
    out = Path(out)
    common.seed_everything(cfg.seed + d.rank)
    common.configure_backends(d.device)
    train_notes = common.DeviceNotes(data, d.device, splits=(0,))
    valid_notes = common.DeviceNotes(data, d.device, splits=(1,))
    holdout = holdout_mask(len(train_notes), cfg.holdout_every, d.device)
    fit = ~holdout
    fit_idx = torch.nonzero(fit).squeeze(1)
    pitched_idx = torch.nonzero(fit & train_notes.pitched).squeeze(1)
    pitch_net = PitchClassifier(pitch_cfg).to(d.device)
    inst_net = InstrumentClassifier(inst_cfg).to(d.device)
    step = 0
    state = common.load_state(out, "state")
    if state is not None:
        common.restore(pitch_net, state[0], "pitch")
        common.restore(inst_net, state[0], "instrument")
        step = int(state[1]["step"])
    pitch_train, inst_train = common.wrap_ddp(pitch_net, d), common.wrap_ddp(inst_net, d)
    opt = torch.optim.AdamW(list(pitch_net.parameters()) + list(inst_net.parameters()), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    log = common.MetricsLog(out / "metrics.jsonl", enabled=d.is_main)
    avg = common.Averager()
    budget = common.Budget(opts.minutes, opts.max_steps)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank + step)
    meta = {"stage": "eval-classifiers", "train_config": common.config_json(cfg), "mel": data.mel_cfg.to_json()}

    def save() -> None:
        if d.is_main:
            common.save_state(out, "state", {"pitch": pitch_net, "instrument": inst_net}, dict(meta, step=step))
            checkpoint.save(out / "pitch_classifier.safetensors", pitch_net, dict(meta, step=step))
            checkpoint.save(out / "instrument_classifier.safetensors", inst_net, dict(meta, step=step))

    floor = data.mel_cfg.log_min
    while not budget.expired():
        pi = pitched_idx[torch.randint(len(pitched_idx), (cfg.batch_size,), generator=gen).to(d.device)]
        ii = fit_idx[torch.randint(len(fit_idx), (cfg.batch_size,), generator=gen).to(d.device)]
        with common.autocast(d.device):  # forward() of the classifiers is logits(); DDP calls forward
            pitch_logits = pitch_train(jitter_gain(train_notes.x(pi), cfg.gain_jitter_db, floor))
            inst_logits = inst_train(jitter_gain(train_notes.x(ii), cfg.gain_jitter_db, floor))
        loss_pitch = F.cross_entropy(pitch_logits.float(), train_notes.pitch[pi] - 21, label_smoothing=cfg.label_smoothing)
        loss_inst = F.cross_entropy(inst_logits.float(), train_notes.instrument[ii], label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        (loss_pitch + loss_inst).backward()
        opt.step()
        avg.add(loss_pitch=loss_pitch, loss_inst=loss_inst)
        step += 1
        if step % cfg.log_every == 0 and d.is_main:
            log.write(step, **avg.pop())
        if step % cfg.eval_every == 0 and d.is_main:
            log.write(step, **evaluate(pitch_net, inst_net, train_notes, valid_notes, holdout))
        if step % cfg.save_every == 0:
            save()
    save()
    final = evaluate(pitch_net, inst_net, train_notes, valid_notes, holdout) if d.is_main else {}
    log.write(step, final=1, **final)
    return final
