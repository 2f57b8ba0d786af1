"""S2: GANStrument — G and D with pitch-invariant instance conditioning (IC-GAN).

For a real note i with feature h_i = f(x_i), a neighbour j is drawn among the k nearest neighbours
of h_i; G makes a note from (h_i, z, p_j) and D compares it with the real (x_j, p_j, h_i).
Non-saturating loss, lazy R1, an EMA copy of G, and a timbre loss through frozen f that keeps G
from ignoring h (in an early probe with the pitch template and no such loss, an unseen instrument was
identified from G's notes 14 % of the time, against 47 % without the template).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models import checkpoint
from models.nets.discriminator import Discriminator, r1_penalty
from models.errors import UserError
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.train.knn import build_neighbours
from models.train import common
from models.train.features import embed
from models.train.loop import LoopConfig, Run, Stage
from models.evaluation.gan_probes import GanProbe


@dataclass(frozen=True)
class GanTrainConfig(LoopConfig):
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
    autocast: bool = True        # bf16 autocast on CUDA (the CPU always runs fp32)
    channels_last: bool = True   # G, D and f in channels_last memory format (CUDA only)
    compile: bool = True         # torch.compile G, D and f on one CUDA device (R1 runs D eagerly: no double backward)
    eval_every: int = 2000


def net_configs(mel, h_dim: int, tiny: bool) -> tuple[Generator.Config, Discriminator.Config]:
    """G's and D's presets for the mel grid and f's feature size."""
    make = "tiny" if tiny else "shipped"
    g_cfg = getattr(Generator.Config, make)(mel)
    d_cfg = getattr(Discriminator.Config, make)(mel)
    return dataclasses.replace(g_cfg, h_dim=h_dim), dataclasses.replace(d_cfg, h_dim=h_dim)


def ema_beta(cfg: GanTrainConfig, step: int) -> float:
    half_life = cfg.ema_kimg * 1000
    if cfg.ema_rampup > 0:
        half_life = min(half_life, step * cfg.batch_size * cfg.ema_rampup)
    return 0.5 ** (cfg.batch_size / max(half_life, 1e-8))


class GanBatches:
    """Batches (h_i, x_j, p_j), IC-GAN style: j is one of i's k nearest neighbours in f's space
    (i itself with probability ``p_self``). Drawn on the generator's device: no host round trip."""

    def __init__(self, mels: torch.Tensor, pitch: torch.Tensor, h: torch.Tensor, neighbours: torch.Tensor,
                 batch_size: int, p_self: float) -> None:
        self.mels, self.pitch, self.h, self.neighbours = mels, pitch, h, neighbours  # [N, M, F], [N], [N, h_dim], [N, k]
        self.batch_size, self.p_self = batch_size, p_self

    def targets(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The kNN target lookup: note indices i and their targets j, ``[B]`` each."""
        B, dev = self.batch_size, self.h.device
        i = torch.randint(len(self.h), (B,), generator=gen, device=gen.device).to(dev)
        pick = torch.randint(self.neighbours.shape[1], (B,), generator=gen, device=gen.device).to(dev)
        own = torch.rand(B, generator=gen, device=gen.device).to(dev) < self.p_self
        return i, torch.where(own, i, self.neighbours[i, pick])

    def gather(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> h_i ``[B, h_dim]``, x_j ``[B, n_mels, n_frames]`` float32, p_j ``[B]``."""
        return self.h[i], self.mels[j].float(), self.pitch[j]

    def __call__(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.gather(*self.targets(gen))


class GanStep:
    """One D update (with lazy R1) and one G update on a batch of (h_i, x_j, p_j), then G_ema."""

    def __init__(self, G, D, f, G_ema, cfg: GanTrainConfig, device: torch.device) -> None:
        self.G, self.D, self.f, self.G_ema, self.cfg, self.device = G, D, f, G_ema, cfg, device
        self.D_eager = getattr(D, "_orig_mod", D)  # R1's double backward cannot run compiled
        self.z_dim = checkpoint.unwrap(G).cfg.z_dim
        mb = cfg.r1_every / (cfg.r1_every + 1)  # lazy-regularisation correction (StyleGAN2)
        self.opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr * mb, betas=(cfg.beta1 ** mb, cfg.beta2 ** mb))

    def autocast(self):
        return common.autocast(self.device, self.cfg.autocast)

    def z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=self.device)

    def discriminator(self, h: torch.Tensor, x_real: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """D's loss on real (x_j, p_j, h_i) vs fake G(h_i, z, p_j); leaves its gradients."""
        D = self.D
        D.requires_grad_(True)
        with self.autocast():
            with torch.no_grad():
                fake = self.G(h, self.z(len(h)), p)
            d_real = D(x_real, p, h).float()
            d_fake = D(fake.detach(), p, h).float()
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        return {"loss_d": loss_d.detach(), "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}

    def r1(self, h: torch.Tensor, x_real: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adds the lazy R1 gradient (gamma / 2 * R1, times the interval) to D's."""
        cfg = self.cfg
        r1 = r1_penalty(self.D_eager, x_real, p, h)
        (r1 * (cfg.r1_gamma / 2) * cfg.r1_every).backward()
        return {"r1": r1.detach()}

    def generator(self, h: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """G's step: fool D and keep the timbre of h (through frozen f)."""
        cfg = self.cfg
        self.D.requires_grad_(False)
        with self.autocast():
            fake = self.G(h, self.z(len(h)), p)
            loss_adv = F.softplus(-self.D(fake, p, h).float()).mean()
            loss_timbre = torch.zeros((), device=self.device)
            if cfg.timbre_weight > 0:
                h_fake = self.f(fake).float()
                loss_timbre = ((h_fake - h) ** 2).sum(1).mean() / (h ** 2).sum(1).mean().clamp_min(1e-6)
        loss_g = loss_adv + cfg.timbre_weight * loss_timbre
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"loss_g_adv": loss_adv.detach(), "loss_timbre": loss_timbre.detach()}

    def __call__(self, step: int, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        h, x_real, p = batch
        out = self.discriminator(h, x_real, p)
        if step % self.cfg.r1_every == 0 and self.cfg.r1_gamma > 0:
            out.update(self.r1(h, x_real, p))
        self.opt_d.step()
        out.update(self.generator(h, p))
        common.ema_update(self.G_ema, self.G, ema_beta(self.cfg, step))
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


def prepare(G: nn.Module, D: nn.Module, f: nn.Module, cfg: GanTrainConfig,
            world_size: int = 1) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Memory format and compilation as the config asks, on CUDA; returns the callables the step runs.

    On the CPU (tests, smoke runs) both are skipped. Compilation needs one process: R1 takes D
    uncompiled, outside DDP's gradient reduction.
    """
    if next(G.parameters()).device.type != "cuda":
        return G, D, f
    if cfg.channels_last:
        for net in (G, D, f):
            net.to(memory_format=torch.channels_last)
    if cfg.compile and world_size == 1:
        return torch.compile(G), torch.compile(D), torch.compile(f)
    return G, D, f


def export(G_ema: nn.Module, D: nn.Module, out: Path, meta: dict) -> None:
    checkpoint.save(out / "generator.safetensors", G_ema, meta)
    checkpoint.save(out / "discriminator.safetensors", D, meta)


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) in ``out`` for the budget in ``opts``; returns the final metrics."""
    run = Run(opts, GanTrainConfig())
    cfg, dev, weights = run.cfg, run.device, run.weights
    f, features_step = load_frozen_features(weights / "features.safetensors", dev)
    notes = common.DeviceNotes(data, dev, splits=(0,))
    h_all = embed(f, notes)
    g_cfg, d_cfg = net_configs(data.mel_cfg, h_all.shape[1], opts.tiny)
    g_cfg, d_cfg = run.config(g_cfg, "G"), run.config(d_cfg, "D")
    if run.announce("gan", cfg, G=g_cfg, D=d_cfg):
        return {}
    G, D = Generator(g_cfg).to(dev), Discriminator(d_cfg).to(dev)
    if opts.init:
        G.load_state_dict(checkpoint.load(opts.init, Generator)[0].state_dict())
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    batches = GanBatches(notes.mels, notes.pitch, h_all, build_neighbours(h_all, min(cfg.knn_k, len(h_all) - 1)),
                         cfg.batch_size, cfg.p_self)
    G_run, D_run, f_run = prepare(G, D, f, cfg, run.d.world_size)
    trainer = GanStep(run.wrap(G_run), run.wrap(D_run), f_run, G_ema, cfg, dev)
    probe = GanProbe(data, f, weights, dev, out) if run.d.is_main else None
    meta = {"mel": data.mel_cfg.to_json(), "g_config": checkpoint.config_to_json(g_cfg),
            "d_config": checkpoint.config_to_json(d_cfg), "features": str(weights / "features.safetensors"),
            "features_step": features_step}
    return run.train(Stage(
        "gan", cfg, {"G": G, "D": D, "ema": G_ema}, lambda step, gen: trainer(step, batches(gen)),
        {"G": trainer.opt_g, "D": trainer.opt_d}, meta=meta,
        probe=lambda step, final: probe(G_ema, step), export=functools.partial(export, G_ema, D),
        check_resume=lambda state_meta: check_same_features(state_meta, features_step, out)), out)
