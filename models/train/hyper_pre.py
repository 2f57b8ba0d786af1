"""S3 Hyper-Pre: train H with L_pre while G and f stay frozen (HyperGANStrument §3.2).

For a real note x at pitch p: h = f(x); h_init = f(G(h, 0, p)); offsets = H(h, h_init). On a
``p_augment`` share of notes H and G are conditioned on f of the note as a user might record it
(a room, EQ, a noise floor, a compressor, leading silence: ``augment_log_mel``) while the targets
stay the clean note, so a real recording lands inside what H has seen. With
probability ``p_recon`` the note is rebuilt at its own pitch (x' = x, p' = p) and the mel
reconstruction term counts; otherwise the target is a kNN neighbour's note x' at pitch p' (IC-GAN
sampling over f features) and only the timbre term counts:
    L_pre = lambda_t ||h - f(x_fine)||^2 + lambda_r ||x - x_fine||^2 [own pitch only],
    x_fine = G(h, 0, p'; theta * (1 + offsets)).
The same pieces (batches, loss, probe) serve S4 (models/train/hyper_adv.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models import checkpoint
from models.data.augment import AugmentConfig, augment_log_mel
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.nets.hyper import HyperConfig, HyperNetwork, refine, zero_z
from models.train import common
from models.train.loop import LoopConfig, Run, Stage
from models.train.features import embed
from models.train.knn import build_neighbours
from models.train.plots import mel_grid_png

PROBE_KEYS = (28, 40, 52, 64, 76, 88, 100)


@dataclass(frozen=True)
class HyperPreTrainConfig(LoopConfig):
    batch_size: int = 32
    lr: float = 1e-3              # the paper's 2.5e-3 upset G + H in the first 200 steps (models/README.md)
    beta1: float = 0.9
    beta2: float = 0.99
    p_recon: float = 0.2          # chance of rebuilding the note at its own pitch
    lambda_timbre: float = 1000.0  # the paper's 1 fits its scales; ours (log-mel MSE ~3, relative f error
    lambda_recon: float = 100.0    # ~0.2) need 1000 to keep timbre in play: measured, models/README.md
    timbre_relative: bool = True  # divide ||h - h_fine||^2 by mean ||h||^2 (f's scale is arbitrary)
    knn_k: int = 50
    skip_coarse: int = 2          # G's coarsest modulated layers get no offsets (HyperStyle)
    grad_clip: float = 0.0        # 0 = off
    p_augment: float = 0.0        # share of inputs seen through a random recording chain (0 = clean only;
                                  # at 0.5 the broad-set H lost clean fit, test-split FID and pitch out of set)


@dataclass
class HyperBatch:
    """h of the input notes, their own mels/pitches, and the targets x' / p' (x' = x when ``own``).
    ``h_in`` conditions G and H: f of the note as recorded (``h`` itself when not augmented)."""

    h: torch.Tensor       # [B, h_dim]
    x: torch.Tensor       # [B, n_mels, n_frames]
    p: torch.Tensor       # [B] MIDI
    x_t: torch.Tensor     # [B, n_mels, n_frames]
    p_t: torch.Tensor     # [B] MIDI
    own: torch.Tensor     # [B] bool
    h_in: torch.Tensor | None = None  # [B, h_dim]; None = h

    @property
    def cond(self) -> torch.Tensor:
        return self.h if self.h_in is None else self.h_in


class HyperData:
    """Training notes with their f features and kNN neighbours, sampled IC-GAN style."""

    def __init__(self, notes: common.DeviceNotes, f: nn.Module, knn_k: int,
                 augment: AugmentConfig = AugmentConfig()) -> None:
        self.notes, self.f, self.augment = notes, f, augment
        self.h = embed(f, notes)  # [N, h_dim]
        f.eval()  # embed() leaves f in training mode
        self.neighbours = build_neighbours(self.h, min(knn_k, len(self.h) - 1))  # [N, k]

    def sample(self, batch_size: int, p_recon: float, gen: torch.Generator, p_augment: float = 0.0) -> HyperBatch:
        """Drawn on the generator's device (the notes' device in training: no host round trip); with
        ``p_augment`` > 0 that share of inputs is heard through a random recording chain."""
        dev, gdev = self.notes.device, gen.device
        i = torch.randint(len(self.notes), (batch_size,), generator=gen, device=gdev).to(dev)
        pick = torch.randint(self.neighbours.shape[1], (batch_size,), generator=gen, device=gdev).to(dev)
        own = (torch.rand(batch_size, generator=gen, device=gdev) < p_recon).to(dev)
        j = torch.where(own, i, self.neighbours[i, pick])
        x = self.notes.x(i)
        b = HyperBatch(self.h[i], x, self.notes.pitch[i], torch.where(own[:, None, None], x, self.notes.x(j)),
                       self.notes.pitch[j], own)
        if p_augment > 0:
            heard = augment_log_mel(x, self.notes.mel_cfg, self.augment, gen, p=p_augment)
            with torch.no_grad(), common.autocast(dev):
                b.h_in = self.f(heard).float()
        return b


def pre_loss(h: torch.Tensor, h_fine: torch.Tensor, x: torch.Tensor, x_fine: torch.Tensor, own: torch.Tensor,
             lambda_timbre: float, lambda_recon: float, relative: bool = True) -> dict[str, torch.Tensor]:
    """L_pre per sample, averaged: lambda_t * timbre + lambda_r * recon (recon only where ``own``).

    timbre: mean squared feature error (over ``mean ||h||^2 / h_dim`` when ``relative``); recon:
    mean squared log-mel error. Both are logged unweighted (recon over own-pitch notes only).
    """
    timbre = (h_fine.float() - h.float()).square().mean(1)  # [B]
    if relative:
        timbre = timbre / h.float().square().mean().clamp_min(1e-6)
    recon = (x_fine.float() - x.float()).square().mean((1, 2)) * own.float()  # [B]
    total = (lambda_timbre * timbre + lambda_recon * recon).mean()
    n_own = own.float().sum().clamp_min(1)
    return {"loss_pre": total, "timbre": timbre.mean().detach(), "recon": (recon.sum() / n_own).detach()}


def render_fine(G: nn.Module, f: nn.Module, H: HyperNetwork, b: HyperBatch) -> torch.Tensor:
    """x_fine = G(h, 0, p'; offsets from H at the note's own pitch), ``[B, n_mels, n_frames]``."""
    deltas = refine(G, f, H, b.cond, b.p)
    return G(b.cond, zero_z(G, len(b.h), b.h.device), b.p_t, deltas)


class HyperPreStep:
    def __init__(self, G: nn.Module, f: nn.Module, H: nn.Module, cfg: HyperPreTrainConfig, device: torch.device):
        self.G, self.f, self.H, self.cfg, self.device = G, f, H, cfg, device
        self.opt = torch.optim.Adam(H.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    def __call__(self, b: HyperBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        with common.autocast(self.device):
            x_fine = render_fine(self.G, self.f, self.H, b)
            h_fine = self.f(x_fine)
        losses = pre_loss(b.h, h_fine, b.x, x_fine, b.own, cfg.lambda_timbre, cfg.lambda_recon, cfg.timbre_relative)
        self.opt.zero_grad(set_to_none=True)
        losses["loss_pre"].backward()
        if cfg.grad_clip > 0:
            losses["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.H.parameters(), cfg.grad_clip)
        self.opt.step()
        return {k: v.detach() for k, v in losses.items()}


class HyperProbe:
    """Held-out (valid) instruments: reconstruction and timbre errors of G alone vs G + H (also from
    the notes heard through a recording chain, ``*_heard_*``), pitch
    accuracy of G + H at other keys (if a pitch classifier is given), the cosine of the evaluation
    instrument classifier's features input vs render (if given; f-independent), and a PNG mel grid."""

    def __init__(self, data, f: nn.Module, G: nn.Module, weights: Path, device: torch.device, out: Path,
                 n_notes: int = 256, seed: int = 4321) -> None:
        self.f, self.G, self.device, self.out, self.log_min = f, G, device, Path(out), data.mel_cfg.log_min
        notes = common.DeviceNotes(data, device, splits=(1,))
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(notes), generator=gen)[:n_notes].to(device)
        self.x, self.p, self.pitched = notes.x(idx), notes.pitch[idx], notes.pitched[idx]
        self.p_other = torch.randint(21, 109, (len(idx),), generator=gen).to(device)
        with torch.no_grad(), common.autocast(device):
            self.h = f(self.x).float()
            # the same notes as a user might record them (fixed draws): is the clean note still rebuilt?
            heard = augment_log_mel(self.x, data.mel_cfg, AugmentConfig(), torch.Generator().manual_seed(seed), p=1.0)
            self.h_heard = f(heard).float()
        path = Path(weights) / "pitch_classifier.safetensors"
        self.pitch_net = None
        if path.is_file():
            from models.nets.classifiers import PitchClassifier
            self.pitch_net = checkpoint.load(path, PitchClassifier, device)[0].eval().requires_grad_(False)
        # f-independent timbre: the evaluation classifier's features (H is trained against f's)
        path = Path(weights) / "instrument_classifier.safetensors"
        self.inst_net, self.inst_x = None, None
        if path.is_file():
            from models.nets.classifiers import InstrumentClassifier
            self.inst_net = checkpoint.load(path, InstrumentClassifier, device)[0].eval().requires_grad_(False)
            self.inst_x = self._inst_features(self.x)

    @torch.no_grad()
    def _render(self, H: HyperNetwork | None, h: torch.Tensor, p_ref: torch.Tensor, p: torch.Tensor,
                chunk: int = 64) -> torch.Tensor:
        out = []
        for s in range(0, len(h), chunk):
            hb, rb, pb = h[s:s + chunk], p_ref[s:s + chunk], p[s:s + chunk]
            with common.autocast(self.device):
                deltas = None if H is None else refine(self.G, self.f, H, hb, rb)
                out.append(self.G(hb, zero_z(self.G, len(hb), self.device), pb, deltas).float())
        return torch.cat(out)

    @torch.no_grad()
    def _timbre(self, mels: torch.Tensor) -> float:
        with common.autocast(self.device):
            h_fake = torch.cat([self.f(mels[s:s + 64]).float() for s in range(0, len(mels), 64)])
        return float((h_fake - self.h).square().mean() / self.h.square().mean())

    @torch.no_grad()
    def _inst_features(self, mels: torch.Tensor) -> torch.Tensor:
        with common.autocast(self.device):
            feats = torch.cat([self.inst_net.features(mels[s:s + 64]).float() for s in range(0, len(mels), 64)])
        return nn.functional.normalize(feats, dim=1)

    def _inst_cos(self, mels: torch.Tensor) -> float:
        """Mean cosine of evaluation-classifier features, input note vs render (1 = same timbre)."""
        return float((self._inst_features(mels) * self.inst_x).sum(1).mean())

    @torch.no_grad()
    def __call__(self, H: HyperNetwork, step: int) -> dict[str, float]:
        H.eval()
        metrics: dict[str, float] = {}
        for tag, net in (("g", None), ("gh", H)):
            rec = self._render(net, self.h, self.p, self.p)
            other = self._render(net, self.h, self.p, self.p_other)
            metrics[f"valid_recon_{tag}"] = float((rec - self.x).square().mean())
            heard = self._render(net, self.h_heard, self.p, self.p)
            metrics[f"valid_recon_heard_{tag}"] = float((heard - self.x).square().mean())
            metrics[f"valid_timbre_{tag}"] = self._timbre(rec)
            metrics[f"valid_timbre_other_{tag}"] = self._timbre(other)
            if self.inst_net is not None:
                metrics[f"valid_cls_cos_{tag}"] = self._inst_cos(rec)
                metrics[f"valid_cls_cos_other_{tag}"] = self._inst_cos(other)
                metrics[f"valid_cls_cos_heard_{tag}"] = self._inst_cos(heard)
            if self.pitch_net is not None and self.pitched.any():
                with common.autocast(self.device):
                    pred = self.pitch_net.logits(other[self.pitched]).float().argmax(1) + 21
                metrics[f"valid_pitch_{tag}"] = float((pred == self.p_other[self.pitched]).float().mean())
        self._grid(H, step)
        H.train()
        return metrics

    def _grid(self, H: HyperNetwork, step: int, rows: int = 4) -> None:
        """Per source: real, G recon, G+H recon, then G+H across PROBE_KEYS."""
        keys = torch.tensor(PROBE_KEYS, device=self.device)
        h = self.h[:rows]
        cols = [self.x[:rows], self._render(None, h, self.p[:rows], self.p[:rows]),
                self._render(H, h, self.p[:rows], self.p[:rows])]
        sweep = self._render(H, h.repeat_interleave(len(keys), 0), self.p[:rows].repeat_interleave(len(keys)),
                             keys.repeat(len(h)))
        grid = torch.cat([torch.stack(cols, 1), sweep.view(len(h), len(keys), *sweep.shape[1:])], dim=1)
        mel_grid_png(self.out / "mels_latest.png", grid, self.log_min)
        mel_grid_png(self.out / f"mels_{step:07d}.png", grid, self.log_min)


def load_frozen(weights: Path, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """f and G (the GAN stage's EMA generator) from ``weights``, in eval mode without gradients."""
    f = checkpoint.load(weights / "features.safetensors", FeatureExtractor, device)[0]
    G = checkpoint.load(weights / "generator.safetensors", Generator, device)[0]
    return f.eval().requires_grad_(False), G.eval().requires_grad_(False)


def pair_digests(f: nn.Module, G: nn.Module) -> dict[str, str]:
    """The digests of the f and G an H is trained with (H only fits them; the engine checks)."""
    return {"features_digest": checkpoint.weights_digest(f), "generator_digest": checkpoint.weights_digest(G)}


def hyper_config(G: nn.Module, h_dim: int, skip_coarse: int, tiny: bool) -> HyperConfig:
    """H's architecture for G's modulated layers (all but the ``skip_coarse`` coarsest and the to-mel)."""
    make = HyperConfig.tiny if tiny else HyperConfig.shipped
    return make(G.modulated_layers(), h_dim, skip_coarse)



def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) H in ``out`` for the budget in ``opts``; writes ``hyper_pre.safetensors``."""
    run = Run(opts, HyperPreTrainConfig(), single_process="hyper-pre runs on one GPU (H is small; the cost is G and f)")
    cfg, dev, weights = run.cfg, run.device, run.weights
    f, G = load_frozen(weights, dev)
    notes = common.DeviceNotes(data, dev, splits=(0,))
    with torch.no_grad():
        h_dim = int(f(notes.x(torch.arange(1, device=dev))).shape[1])
    h_cfg = run.config(hyper_config(G, h_dim, cfg.skip_coarse, opts.tiny), "H")
    if run.announce("hyper-pre", cfg, H=h_cfg):
        return {}
    H = HyperNetwork(h_cfg).to(dev)
    if opts.init:
        H.load_state_dict(checkpoint.load(opts.init, HyperNetwork)[0].state_dict())
    hyper_data = HyperData(notes, f, cfg.knn_k)
    trainer = HyperPreStep(G, f, H, cfg, dev)
    probe = HyperProbe(data, f, G, weights, dev, out)
    meta = {"mel": data.mel_cfg.to_json(), "h_config": common.config_json(h_cfg),
            "features": str(weights / "features.safetensors"), "generator": str(weights / "generator.safetensors"),
            **pair_digests(f, G)}
    return run.train(Stage(
        "hyper-pre", cfg, {"H": H}, lambda step, gen: trainer(hyper_data.sample(cfg.batch_size, cfg.p_recon, gen, cfg.p_augment)),
        {"opt": trainer.opt}, meta=meta, probe=lambda step, final: probe(H, step), probe_first=True,
        export=lambda out, meta: checkpoint.save(out / "hyper_pre.safetensors", H, meta)), out)
