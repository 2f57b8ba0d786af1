"""The neural vocoder: log-mel -> wave, trained on the dataset's audio (``--keep-audio``).

Each step takes random crops (``crop_frames`` mel frames, ~0.5 s) of training-split notes at a random
gain, computes their log-mel on the device, corrupts part of the batch (noise, smoothing; stands in
for G's errors) and regresses the audio with mel L1 + multi-resolution STFT losses; after
``adv_start`` steps multi-period and multi-resolution critics (hinge loss + feature matching) join.
With ``gen_fraction > 0`` that share of each batch takes G's (+ H's) reconstruction of the note as
input instead of the real mel (fine-tuning to G's outputs; needs f and G in ``--weights``).
Evaluation: full held-out notes, vocoder vs Griffin-Lim (``models/vocoder_eval.py``).

    hypergan train vocoder --data data/set --out runs/vocoder --minutes 9
    hypergan train vocoder --data data/set --out runs/vocoder --weights assets --set gen_fraction=0.5
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.errors import UserError
from models.mel import GriffinLim, LogMel, MelConfig
from models.train import common
from models.vocoder import NeuralVocoder, multi_resolution_stft
from models.vocoder_critic import VocoderCritic, feature_matching_loss, hinge_critic_loss, hinge_generator_loss
from models.vocoder_eval import VocoderEvalConfig, evaluate_real, load_synth


@dataclass(frozen=True)
class VocoderTrainConfig:
    batch_size: int = 64
    crop_frames: int = 64         # mel frames per training crop (64 x hop 128 = 0.51 s at 16 kHz)
    attack_prob: float = 0.25     # share of crops that start at the note onset (the tails are mostly quiet)
    lr: float = 1e-3              # AdamW, betas (0.8, 0.9) as in Vocos (5e-4 there, batch 16)
    critic_lr: float = 5e-4
    beta1: float = 0.8
    beta2: float = 0.9
    weight_decay: float = 0.01
    warmup_steps: int = 200
    mel_weight: float = 15.0      # L1 of natural-log mels on the data's grid
    stft_weight: float = 15.0     # spectral convergence + log-magnitude L1, four resolutions
    adv_weight: float = 1.0
    fm_weight: float = 2.0
    adv_start: int = 2000         # reconstruction-only steps before the critics join
    gain_db: float = 12.0         # random level in [-gain_db, 0] dB (notes are peak-normalised)
    aug_prob: float = 0.25        # share of inputs corrupted like a generator's output
    noise_std: float = 0.3        # max std of additive noise on the log-mel (natural-log units)
    blur_max: float = 0.3         # max side weight of a 3-tap blur along frequency and along time
    gen_fraction: float = 0.0     # share of inputs rendered by G (+ H) from the note (needs --weights)
    log_every: int = 100
    eval_every: int = 2000
    eval_notes: int = 256         # held-out notes in the periodic evaluation
    final_eval_notes: int = 512
    save_every: int = 2000
    seed: int = 0


def net_configs(mel: MelConfig, tiny: bool, overrides: tuple[str, ...]):
    v_cfg = NeuralVocoder.Config.tiny(mel) if tiny else NeuralVocoder.Config.shipped(mel)
    c_cfg = VocoderCritic.Config.tiny(mel) if tiny else VocoderCritic.Config(mel=mel)
    return common.apply_overrides(v_cfg, overrides, "net"), common.apply_overrides(c_cfg, overrides, "critic")


class TrainAudio:
    """Training-split audio (int16) on the device; full clips at a random gain with their log-mels."""

    def __init__(self, data, device: torch.device, splits: tuple[int, ...] = (0,), with_mels: bool = False) -> None:
        if data.audio is None:
            raise UserError("the dataset holds no audio; rebuild it with `hypergan data build --keep-audio`")
        self.index = np.nonzero(np.isin(np.asarray(data.split), splits))[0]
        if len(self.index) == 0:
            raise UserError(f"the dataset has no notes in splits {splits}")
        self.audio = torch.from_numpy(np.ascontiguousarray(np.asarray(data.audio)[self.index])).to(device)
        # The stored mels (what f saw in training) are needed only to render G's inputs.
        self.mels = None
        if with_mels:
            self.mels = torch.from_numpy(np.ascontiguousarray(np.asarray(data.mels)[self.index])).to(device)
        self.pitch = torch.from_numpy(np.asarray(data.pitch)[self.index].astype(np.int64)).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.index)

    def waves(self, idx: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
        """Float waves ``[B, T]`` scaled by ``gain_db [B]``."""
        gain = torch.pow(10.0, gain_db / 20.0)[:, None]
        return self.audio[idx].float() * (gain / 32768.0)


def corrupt(x: torch.Tensor, cfg: VocoderTrainConfig, log_min: float, gen: torch.Generator) -> torch.Tensor:
    """Blur (3-tap, along frequency and time) and add noise to a random ``aug_prob`` share of log-mels ``[B, M, F]``."""
    B = x.shape[0]

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(x.device)

    on = (rand(B) < cfg.aug_prob).float()[:, None, None]
    for dim in (1, 2):
        a = rand(B)[:, None, None] * cfg.blur_max * on
        lo = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, x.shape[dim] - 1)], dim)
        hi = torch.cat([x.narrow(dim, 1, x.shape[dim] - 1), x.narrow(dim, x.shape[dim] - 1, 1)], dim)
        x = x + a * (lo + hi - 2 * x)
    noise = torch.randn(x.shape, generator=gen).to(x.device) * (rand(B)[:, None, None] * cfg.noise_std * on)
    return (x + noise).clamp_min(log_min)


def crop(mel: torch.Tensor, wave: torch.Tensor, start: torch.Tensor, frames: int, hop: int):
    """Frames ``[start, start + frames)`` of ``mel [B, M, F]`` and the samples they cover, ``[B, hop * (frames - 1)]``."""
    f_idx = start[:, None] + torch.arange(frames, device=mel.device)  # [B, frames]
    mel = torch.gather(mel, 2, f_idx[:, None, :].expand(-1, mel.shape[1], -1))
    s_idx = start[:, None] * hop + torch.arange(hop * (frames - 1), device=wave.device)
    return mel, torch.gather(wave, 1, s_idx)


class VocoderStep:
    """One critic update (once adversarial) and one vocoder update on a batch of (log-mel, wave) crops."""

    def __init__(self, V, C, cfg: VocoderTrainConfig, mel: MelConfig, device: torch.device) -> None:
        self.V, self.C, self.cfg, self.device = V, C, cfg, device
        self.log_mel = LogMel(mel).to(device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_v = torch.optim.AdamW(V.parameters(), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
        self.opt_c = torch.optim.AdamW(C.parameters(), lr=cfg.critic_lr, betas=betas, weight_decay=cfg.weight_decay)

    def set_lr(self, step: int) -> None:
        ramp = min(1.0, (step + 1) / max(self.cfg.warmup_steps, 1))
        for opt, lr in ((self.opt_v, self.cfg.lr), (self.opt_c, self.cfg.critic_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * ramp

    def reconstruction(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        mel_l1 = (self.log_mel(fake) - self.log_mel(real)).abs().mean()
        sc, lm = multi_resolution_stft(real, fake, pooled=True)
        return {"mel_l1": mel_l1, "sc": sc, "log_mag": lm}

    def __call__(self, step: int, mel: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, C = self.cfg, self.C
        self.set_lr(step)
        adversarial = step >= cfg.adv_start
        with common.autocast(self.device):
            fake = self.V(mel).float()
        out: dict[str, torch.Tensor] = {}
        if adversarial:
            C.requires_grad_(True)
            with common.autocast(self.device):
                real_logits, _ = C(real)
                fake_logits, _ = C(fake.detach())
            loss_c = hinge_critic_loss(real_logits, fake_logits)
            self.opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            self.opt_c.step()
            out["loss_critic"] = loss_c.detach()
        rec = self.reconstruction(fake, real)
        loss = cfg.mel_weight * rec["mel_l1"] + cfg.stft_weight * (rec["sc"] + rec["log_mag"])
        if adversarial:
            C.requires_grad_(False)
            with common.autocast(self.device):
                with torch.no_grad():
                    _, real_feats = C(real)
                fake_logits, fake_feats = C(fake)
            loss_adv = hinge_generator_loss(fake_logits)
            loss_fm = feature_matching_loss(real_feats, fake_feats)
            loss = loss + cfg.adv_weight * loss_adv + cfg.fm_weight * loss_fm
            out.update(loss_adv=loss_adv.detach(), loss_fm=loss_fm.detach())
        self.opt_v.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_v.step()
        out.update({k: v.detach() for k, v in rec.items()}, loss=loss.detach())
        return out


class Batches:
    """Training batches: crops of real notes at random gains, partly corrupted or rendered by G."""

    def __init__(self, audio: TrainAudio, cfg: VocoderTrainConfig, mel: MelConfig, gen: torch.Generator,
                 synth=None) -> None:
        if cfg.crop_frames > mel.n_frames:
            raise UserError(f"crop_frames {cfg.crop_frames} exceeds the clip's {mel.n_frames} frames")
        if cfg.gen_fraction > 0 and synth is None:
            raise UserError("gen_fraction > 0 needs features.safetensors and generator.safetensors in --weights")
        self.audio, self.cfg, self.mel, self.gen, self.synth = audio, cfg, mel, gen, synth
        self.log_mel = LogMel(mel).to(audio.device)

    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.gen).to(self.audio.device)

    @torch.no_grad()
    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-mel crops ``[B, M, crop_frames]``, wave crops ``[B, hop * (crop_frames - 1)]``)."""
        cfg, dev = self.cfg, self.audio.device
        B = cfg.batch_size
        idx = torch.randint(len(self.audio), (B,), generator=self.gen).to(dev)
        n_gen = int(round(B * cfg.gen_fraction)) if self.synth is not None else 0
        gain_db = -self._rand(B) * cfg.gain_db
        gain_db[:n_gen] = 0.0  # G renders at its own level; keep the target at the note's level
        wave = self.audio.waves(idx, gain_db)
        mel = self.log_mel(wave)
        mel = corrupt(mel, cfg, self.mel.log_min, self.gen)
        if n_gen:
            synth, f = self.synth
            x = self.audio.mels[idx[:n_gen]].float()
            p = self.audio.pitch[idx[:n_gen]]
            with common.autocast(dev):
                mel[:n_gen] = synth(f(x), p, p).float()
        span = self.mel.n_frames - cfg.crop_frames
        start = (self._rand(B) * (span + 1)).long().clamp_max(span)
        start = torch.where(self._rand(B) < cfg.attack_prob, torch.zeros_like(start), start)
        return crop(mel, wave, start, cfg.crop_frames, self.mel.hop_length)


class Evaluator:
    """Held-out notes, full clips: the vocoder's mel L1 / MR-STFT (/ pitch) beside Griffin-Lim 32's
    (computed once per setting) and the pitch accuracy of the real audio."""

    def __init__(self, data, device: torch.device) -> None:
        self.data, self.device = data, device
        self.gl = GriffinLim(data.mel_cfg, n_iter=32).to(device)
        self.baseline: dict[tuple[int, bool], dict[str, float]] = {}

    def __call__(self, V: NeuralVocoder, notes: int, pitch: bool) -> dict[str, float]:
        if not np.isin(np.asarray(self.data.split), (1,)).any():
            return {}
        cfg = VocoderEvalConfig(max_notes=notes, pitch=pitch)
        skip = ("notes", "seconds")
        if (notes, pitch) not in self.baseline:
            rows = evaluate_real(self.data, {"gl": self.gl}, cfg, self.device)
            base = {f"valid_gl_{k}": v for k, v in rows["gl"].items() if k not in skip}
            base.update({f"valid_real_{k}": v for k, v in rows.get("real audio", {}).items() if k not in skip})
            self.baseline[(notes, pitch)] = base
        was_training = V.training
        V.eval()
        rows = evaluate_real(self.data, {"vocoder": V}, cfg, self.device)
        V.train(was_training)
        out = {f"valid_{k}": v for k, v in rows["vocoder"].items() if k not in skip}
        return {**out, **self.baseline[(notes, pitch)]}


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) in ``out`` for the budget in ``opts``; writes vocoder.safetensors (float16),
    state shards and metrics.jsonl; returns the final evaluation."""
    d = common.setup_distributed(opts.device)
    cfg = common.apply_overrides(VocoderTrainConfig(), opts.overrides)
    v_cfg, c_cfg = net_configs(data.mel_cfg, opts.tiny, opts.overrides)
    if d.is_main:
        print(f"vocoder: {common.config_json(cfg)}\nnet: {common.config_json(v_cfg)}\ncritic: {common.config_json(c_cfg)}")
    if opts.dry_run:
        return {}
    out = Path(out)
    common.seed_everything(cfg.seed + d.rank)
    common.configure_backends(d.device)
    audio = TrainAudio(data, d.device, with_mels=cfg.gen_fraction > 0)
    V, C = NeuralVocoder(v_cfg).to(d.device), VocoderCritic(c_cfg).to(d.device)
    step = 0
    state = common.load_state(out, "state")
    if state is not None:
        tensors, meta = state
        common.restore(V, tensors, "V")
        common.restore(C, tensors, "C")
        step = int(meta["step"])
    elif opts.init:
        V.load_state_dict(checkpoint.load(opts.init, NeuralVocoder)[0].state_dict())
    synth = None
    if cfg.gen_fraction > 0:
        synth = load_synth(Path(opts.weights or "assets"), d.device)
    start_step = step
    trainer = VocoderStep(common.wrap_ddp(V, d), common.wrap_ddp(C, d), cfg, data.mel_cfg, d.device)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank + step)
    batches = Batches(audio, cfg, data.mel_cfg, gen, synth)
    evaluator = Evaluator(data, d.device) if d.is_main else None
    log = common.MetricsLog(out / "metrics.jsonl", enabled=d.is_main)
    avg = common.Averager()
    budget = common.Budget(opts.minutes, opts.max_steps)
    meta_base = {"stage": "vocoder", "train_config": common.config_json(cfg), "mel": data.mel_cfg.to_json()}

    def save() -> None:
        if d.is_main:
            meta = dict(meta_base, step=step)
            common.save_state(out, "state", {"V": V, "C": C}, meta)
            checkpoint.save(out / "vocoder.safetensors", V, meta, dtype=torch.float16)

    while not budget.expired():
        losses = trainer(step, *batches())
        avg.add(**losses)
        step += 1
        if step % cfg.log_every == 0 and d.is_main:
            log.write(step, **avg.pop(), s_per_step=budget.elapsed_s / (step - start_step))
        if step % cfg.eval_every == 0 and evaluator is not None:
            log.write(step, **evaluator(V, cfg.eval_notes, pitch=False))
        if step % cfg.save_every == 0:
            save()
    save()
    final = evaluator(V, cfg.final_eval_notes, pitch=True) if evaluator is not None else {}
    log.write(step, final=1, **final)
    return final
