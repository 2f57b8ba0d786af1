"""S2: GANStrument — G and D with pitch-invariant instance conditioning (IC-GAN).

For a real note i with feature h_i = f(x_i), a neighbour j is drawn among the k nearest neighbours
of h_i; G makes a note from (h_i, z, p_j) and D compares it with the real (x_j, p_j, h_i).
Non-saturating loss, lazy R1, an EMA copy of G, and a timbre loss through frozen f that keeps G
from ignoring h (measured in the probe: DESIGN §4).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from models import checkpoint
from models.nets.discriminator import Discriminator, r1_penalty
from models.errors import UserError
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.train.knn import build_neighbours
from models.train import common
from models.train.features import embed
from models.evaluation.gan_probes import GanProbe


@dataclass(frozen=True)
class GanTrainConfig:
    batch_size: int = 64
    g_lr: float = 2e-3
    d_lr: float = 2e-3
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 0.5
    r1_every: int = 16
    ema_kimg: float = 10.0       # EMA half-life in thousands of images
    ema_rampup: float = 0.05     # half-life ramps up over the first steps (fraction of kimg seen)
    knn_k: int = 50
    p_self: float = 0.1          # chance that the "neighbour" is the note itself
    timbre_weight: float = 1.0   # ||f(G(h, z, p')) - h||^2, scaled by 1/||h||^2
    log_every: int = 100
    eval_every: int = 2000
    save_every: int = 2000
    seed: int = 0


def net_configs(mel, h_dim: int, tiny: bool, overrides: list[str]):
    make = "tiny" if tiny else "shipped"
    g_cfg = getattr(Generator.Config, make)(mel)
    d_cfg = getattr(Discriminator.Config, make)(mel)
    if g_cfg.h_dim != h_dim:
        g_cfg = dataclasses.replace(g_cfg, h_dim=h_dim)
    if d_cfg.h_dim != h_dim:
        d_cfg = dataclasses.replace(d_cfg, h_dim=h_dim)
    return common.apply_overrides(g_cfg, overrides, "G"), common.apply_overrides(d_cfg, overrides, "D")


def ema_beta(cfg: GanTrainConfig, step: int) -> float:
    half_life = cfg.ema_kimg * 1000
    if cfg.ema_rampup > 0:
        half_life = min(half_life, step * cfg.batch_size * cfg.ema_rampup)
    return 0.5 ** (cfg.batch_size / max(half_life, 1e-8))


class GanStep:
    """One D update and one G update on a batch of (h_i, x_j, p_j)."""

    def __init__(self, G, D, f, cfg: GanTrainConfig, device: torch.device) -> None:
        self.G, self.D, self.f, self.cfg, self.device = G, D, f, cfg, device
        mb = cfg.r1_every / (cfg.r1_every + 1)  # lazy-regularisation correction (StyleGAN2)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr * mb, betas=(cfg.beta1 ** mb, cfg.beta2 ** mb))

    def z(self, n: int, z_dim: int) -> torch.Tensor:
        return torch.randn(n, z_dim, device=self.device)

    def __call__(self, step: int, h: torch.Tensor, x_real: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        G, D, cfg = self.G, self.D, self.cfg
        z_dim = checkpoint.unwrap(G).cfg.z_dim
        out: dict[str, torch.Tensor] = {}
        # D: real (x_j, p_j, h_i) vs fake G(h_i, z, p_j)
        D.requires_grad_(True)
        with common.autocast(self.device):
            with torch.no_grad():
                fake = G(h, self.z(len(h), z_dim), p)
            d_real = D(x_real, p, h).float()
            d_fake = D(fake.detach(), p, h).float()
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if step % cfg.r1_every == 0 and cfg.r1_gamma > 0:
            r1 = r1_penalty(D, x_real, p, h)
            (r1 * (cfg.r1_gamma / 2) * cfg.r1_every).backward()
            out["r1"] = r1.detach()
        self.opt_d.step()
        # G: fool D, keep the timbre of h (through frozen f)
        D.requires_grad_(False)
        with common.autocast(self.device):
            fake = G(h, self.z(len(h), z_dim), p)
            loss_adv = F.softplus(-D(fake, p, h).float()).mean()
            loss_timbre = torch.zeros((), device=self.device)
            if cfg.timbre_weight > 0:
                h_fake = self.f(fake).float()
                loss_timbre = ((h_fake - h) ** 2).sum(1).mean() / (h ** 2).sum(1).mean().clamp_min(1e-6)
        loss_g = loss_adv + cfg.timbre_weight * loss_timbre
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        out.update(loss_d=loss_d.detach(), loss_g_adv=loss_adv.detach(), loss_timbre=loss_timbre.detach(),
                   d_real=d_real.mean().detach(), d_fake=d_fake.mean().detach())
        return out


def load_frozen_features(path: Path, device: torch.device) -> tuple[FeatureExtractor, str]:
    """f, frozen, and its training step (G is tied to the f it was trained with)."""
    f, _, meta = checkpoint.load(path, FeatureExtractor, device=device)
    f.eval().requires_grad_(False)
    return f, meta.get("step", "unknown")


def check_same_features(state_meta: dict[str, str], features_step: str, out: Path) -> None:
    """Refuse to resume G with another f: its h would mean something else (a float16 copy is fine)."""
    trained_with = state_meta.get("features_step")
    if trained_with is not None and trained_with != features_step:
        raise UserError(f"the GAN state in {out} was trained with f of step {trained_with}, but the f given "
                        f"is of step {features_step}; retrain the GAN in a new folder or pass that f")


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) in ``out`` for the budget in ``opts``; returns the final metrics."""
    d = common.setup_distributed(opts.device)
    cfg = common.apply_overrides(GanTrainConfig(), opts.overrides)
    weights = Path(opts.weights or "assets")
    f, features_step = load_frozen_features(weights / "features.safetensors", d.device)
    train_notes = common.DeviceNotes(data, d.device, splits=(0,))
    h_all = embed(f, train_notes)
    g_cfg, d_cfg = net_configs(data.mel_cfg, h_all.shape[1], opts.tiny, opts.overrides)
    if d.is_main:
        print(f"gan: {common.config_json(cfg)}\nG: {common.config_json(g_cfg)}\nD: {common.config_json(d_cfg)}")
    if opts.dry_run:
        return {}
    out = Path(out)
    common.seed_everything(cfg.seed + d.rank)
    common.configure_backends(d.device)
    G, D = Generator(g_cfg).to(d.device), Discriminator(d_cfg).to(d.device)
    G_ema = Generator(g_cfg).to(d.device).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    step = 0
    state = common.load_state(out, "state")
    if state is not None:
        tensors, meta = state
        check_same_features(meta, features_step, out)
        for name, net in (("G", G), ("D", D), ("ema", G_ema)):
            common.restore(net, tensors, name)
        step = int(meta["step"])
    elif opts.init:
        G.load_state_dict(checkpoint.load(opts.init, Generator)[0].state_dict())
        G_ema.load_state_dict(G.state_dict())
    start_step = step
    neighbours = build_neighbours(h_all, min(cfg.knn_k, len(h_all) - 1))
    trainer = GanStep(common.wrap_ddp(G, d), common.wrap_ddp(D, d), f, cfg, d.device)
    probe = GanProbe(data, f, weights, d.device, out) if d.is_main else None
    log = common.MetricsLog(out / "metrics.jsonl", enabled=d.is_main)
    avg = common.Averager()
    budget = common.Budget(opts.minutes, opts.max_steps)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank + step)
    meta_base = {"stage": "gan", "train_config": common.config_json(cfg), "mel": data.mel_cfg.to_json(),
                 "g_config": checkpoint.config_to_json(g_cfg), "d_config": checkpoint.config_to_json(d_cfg),
                 "features": str(weights / "features.safetensors"), "features_step": features_step}

    def save() -> None:
        if d.is_main:
            meta = dict(meta_base, step=step, kimg=round(step * cfg.batch_size * d.world_size / 1000, 2))
            common.save_state(out, "state", {"G": G, "D": D, "ema": G_ema}, meta)
            checkpoint.save(out / "generator.safetensors", G_ema, meta)
            checkpoint.save(out / "discriminator.safetensors", D, meta)

    while not budget.expired():
        i = torch.randint(len(train_notes), (cfg.batch_size,), generator=gen).to(d.device)
        pick = torch.randint(neighbours.shape[1], (cfg.batch_size,), generator=gen).to(d.device)
        j = neighbours[i, pick]
        self_mask = torch.rand(cfg.batch_size, generator=gen).to(d.device) < cfg.p_self
        j = torch.where(self_mask, i, j)
        losses = trainer(step, h_all[i], train_notes.x(j), train_notes.pitch[j])
        common.ema_update(G_ema, G, ema_beta(cfg, step))
        avg.add(**losses)
        step += 1
        if step % cfg.log_every == 0 and d.is_main:
            kimg = step * cfg.batch_size * d.world_size / 1000
            log.write(step, kimg=kimg, **avg.pop(), s_per_step=budget.elapsed_s / (step - start_step))
        if step % cfg.eval_every == 0 and probe is not None:
            log.write(step, **probe(G_ema, step))
        if step % cfg.save_every == 0:
            save()
    save()
    final = probe(G_ema, step) if probe is not None else {}
    log.write(step, final=1, **final)
    return final
