"""The neural vocoder: log-mel -> wave, trained on the dataset's audio (``--keep-audio``).

Each step takes random crops (``crop_frames`` mel frames, ~0.5 s) of training-split notes at a random
gain, computes their log-mel on the device, corrupts part of the batch (noise, smoothing; stands in
for G's errors), runs the vocoder on each crop with ``context_frames`` of mel on either side and
regresses the crop's audio with mel L1 + multi-resolution STFT losses + an L1 on the synthesised
log-magnitude. Multi-period and multi-resolution critics (hinge loss + feature matching) exist but
are off by default (``adv_weight``, ``fm_weight`` 0): on the GPU they made every held-out metric
worse (models/README.md "Vocoder").
With ``gen_fraction > 0`` that share of each batch takes G's (+ H's) reconstruction of the note as
input instead of the real mel (fine-tuning to G's outputs; needs f and G in ``--weights``).
Evaluation: full held-out notes, vocoder vs Griffin-Lim (``models/evaluation/vocoder_quality.py``).

    hypergan train vocoder --data data/set --out runs/vocoder --minutes 9
    hypergan train vocoder --data data/set --out runs/vocoder --weights assets --set gen_fraction=0.5
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.errors import UserError
from models.signal.mel import GriffinLim, LogMel, MelConfig
from models.train import common
from models.train.loop import LoopConfig, Run, Stage
from models.nets.vocoder import NeuralVocoder
from models.signal.stft import DEFAULT_RESOLUTIONS, stft_magnitude
from models.nets.vocoder_critic import VocoderCritic, feature_matching_loss, hinge_critic_loss, hinge_generator_loss
from models.evaluation.vocoder_quality import VocoderEvalConfig, evaluate_real, load_synth


@dataclass(frozen=True)
class VocoderTrainConfig(LoopConfig):
    batch_size: int = 64
    crop_frames: int = 64         # mel frames per training crop (64 x hop 128 = 0.51 s at 16 kHz)
    context_frames: int = 16      # extra input frames on each side of the crop (losses on the crop only)
    attack_prob: float = 0.25     # share of crops that start at the note onset (the tails are mostly quiet)
    lr: float = 1e-3              # AdamW, betas (0.8, 0.9) as in Vocos (5e-4 there, batch 16)
    critic_lr: float = 5e-4
    beta1: float = 0.8
    beta2: float = 0.9
    weight_decay: float = 0.01
    warmup_steps: int = 200
    mel_weight: float = 15.0      # L1 of natural-log mels on the data's grid
    stft_weight: float = 15.0     # spectral convergence + log-magnitude L1, four resolutions
    mag_weight: float = 15.0      # L1 of the synthesised log-magnitude (before the iSTFT) to the real one
    mag_floor: float = 1e-2       # its floor (a full-scale sine peaks at n_fft / 4 = 512)
    adv_weight: float = 0.0       # critics off: 1.0 / 2.0 from adv_start made every held-out metric worse
    fm_weight: float = 0.0
    adv_start: int = 2000         # reconstruction-only steps before the critics join (when on)
    gain_db: float = 12.0         # random level in [-gain_db, 0] dB (notes are peak-normalised)
    aug_prob: float = 0.25        # share of inputs corrupted like a generator's output
    noise_std: float = 0.3        # max std of additive noise on the log-mel (natural-log units)
    blur_max: float = 0.3         # max side weight of a 3-tap blur along frequency and along time
    gen_fraction: float = 0.0     # share of inputs rendered by G (+ H) from the note (needs --weights)
    eval_notes: int = 256         # held-out notes in the periodic evaluation
    final_eval_notes: int = 512
    eval_every: int = 2000


def net_configs(mel: MelConfig, tiny: bool):
    v_cfg = NeuralVocoder.Config.tiny(mel) if tiny else NeuralVocoder.Config.shipped(mel)
    c_cfg = VocoderCritic.Config.tiny(mel) if tiny else VocoderCritic.Config(mel=mel)
    return v_cfg, c_cfg


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
    """Blur (3-tap, along frequency and time) and add noise to a random ``aug_prob`` share of log-mels
    ``[B, M, F]``. Drawn on the generator's device (the data's in training: no host round trip)."""
    B = x.shape[0]

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=gen.device).to(x.device)

    on = (rand(B) < cfg.aug_prob).float()[:, None, None]
    for dim in (1, 2):
        a = rand(B)[:, None, None] * cfg.blur_max * on
        lo = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, x.shape[dim] - 1)], dim)
        hi = torch.cat([x.narrow(dim, 1, x.shape[dim] - 1), x.narrow(dim, x.shape[dim] - 1, 1)], dim)
        x = x + a * (lo + hi - 2 * x)
    noise = torch.randn(x.shape, generator=gen, device=gen.device).to(x.device) * (rand(B)[:, None, None] * cfg.noise_std * on)
    return (x + noise).clamp_min(log_min)


def crop_frames(x: torch.Tensor, start: torch.Tensor, frames: int) -> torch.Tensor:
    """Frames ``[start, start + frames)`` (per row of ``start [B]``) of ``x [B, C, F]``."""
    f_idx = start[:, None] + torch.arange(frames, device=x.device)  # [B, frames]
    return torch.gather(x, 2, f_idx[:, None, :].expand(-1, x.shape[1], -1))


def crop_samples(wave: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """Samples ``[start, start + length)`` (per row of ``start [B]``) of ``wave [B, T]``."""
    return torch.gather(wave, 1, start[:, None] + torch.arange(length, device=wave.device))


@dataclass
class Crops:
    """A training batch: input windows of ``crop + 2 context`` frames, the real audio under them, and
    for the ``crop`` frames inside each window (from ``offset``) the clean log-mel and the STFT
    magnitude on the vocoder's grid. Losses count only the crop: frames whose analysis window
    reaches a window edge inside the clip depend on how the vocoder starts and on the STFT's reflect
    padding, not on the audio (on 64-frame crops they doubled the mel L1 over a full clip's)."""

    mel: torch.Tensor        # [B, M, W] log-mel input window (possibly corrupted)
    wave: torch.Tensor       # [B, hop * (W - 1)] real audio under the window
    offset: torch.Tensor     # [B] first frame of the crop inside the window
    real_mel: torch.Tensor   # [B, M, crop] the clip's clean log-mel of the crop frames
    magnitude: torch.Tensor  # [B, n_freqs, crop] |STFT| of the real audio on the vocoder's grid

    @property
    def frames(self) -> int:
        return self.real_mel.shape[-1]


def crop_spectral_distance(reference: torch.Tensor, estimate: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                           resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS,
                           floor: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """``multi_resolution_stft`` (pooled) of waves ``[B, T]`` over the STFT frames centred in samples
    ``[lo, hi)`` of each row (``[B]`` each): a crop's frames, analysed with the audio around it."""
    sc = lm = 0.0
    for n_fft, hop in resolutions:
        ref = stft_magnitude(reference, n_fft, hop, floor)  # [B, K, frames]
        est = stft_magnitude(estimate, n_fft, hop, floor)
        centre = torch.arange(ref.shape[-1], device=ref.device) * hop
        mask = ((centre >= lo[:, None]) & (centre < hi[:, None])).to(ref.dtype)[:, None, :]  # [B, 1, frames]
        sc = sc + torch.linalg.vector_norm((ref - est) * mask) / torch.linalg.vector_norm(ref * mask).clamp_min(1e-8)
        lm = lm + ((ref.log() - est.log()).abs() * mask).sum() / (mask.sum() * ref.shape[1]).clamp_min(1)
    return sc / len(resolutions), lm / len(resolutions)


class VocoderStep:
    """One critic update (once adversarial) and one vocoder update on a batch of ``Crops``."""

    def __init__(self, V, C, cfg: VocoderTrainConfig, mel: MelConfig, device: torch.device) -> None:
        self.V, self.C, self.cfg, self.mel, self.device = V, C, cfg, mel, device
        self.log_mel = LogMel(mel).to(device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_v = torch.optim.AdamW(V.parameters(), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
        self.opt_c = torch.optim.AdamW(C.parameters(), lr=cfg.critic_lr, betas=betas, weight_decay=cfg.weight_decay)
        self.first_step: int | None = None  # where the warm-up began: a state without AdamW moments restarts it

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.first_step is None else {"first_step": torch.tensor(self.first_step)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.first_step = int(tensors["first_step"])

    def set_lr(self, step: int) -> None:
        if self.first_step is None:
            self.first_step = step
        ramp = min(1.0, (step - self.first_step + 1) / max(self.cfg.warmup_steps, 1))
        for opt, lr in ((self.opt_v, self.cfg.lr), (self.opt_c, self.cfg.critic_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * ramp

    def adversarial(self, step: int) -> bool:
        return step >= self.cfg.adv_start and (self.cfg.adv_weight > 0 or self.cfg.fm_weight > 0)

    def reconstruction(self, fake: torch.Tensor, magnitude: torch.Tensor, batch: Crops) -> dict[str, torch.Tensor]:
        """Losses over the crop of vocoder windows ``fake [B, T]`` (their magnitude ``[B, n_freqs, W]``)."""
        hop, frames = self.mel.hop_length, batch.frames
        fake_mel = crop_frames(self.log_mel(fake), batch.offset, frames)
        mel_l1 = (fake_mel - batch.real_mel).abs().mean()
        lo = batch.offset * hop
        sc, lm = crop_spectral_distance(batch.wave, fake, lo, lo + hop * (frames - 1))
        floor = self.cfg.mag_floor
        magnitude = crop_frames(magnitude.float(), batch.offset, frames)
        mag_l1 = (torch.log(magnitude.clamp_min(floor)) - torch.log(batch.magnitude.clamp_min(floor))).abs().mean()
        return {"mel_l1": mel_l1, "sc": sc, "log_mag": lm, "mag_l1": mag_l1}

    def __call__(self, step: int, batch: Crops) -> dict[str, torch.Tensor]:
        cfg, C = self.cfg, self.C
        self.set_lr(step)
        adversarial = self.adversarial(step)
        with common.autocast(self.device):
            fake_window, magnitude = self.V(batch.mel, with_magnitude=True)
        fake_window = fake_window.float()
        out: dict[str, torch.Tensor] = {}
        if adversarial:  # the critics see the crops only
            hop, length = self.mel.hop_length, self.mel.hop_length * (batch.frames - 1)
            real = crop_samples(batch.wave, batch.offset * hop, length)
            fake = crop_samples(fake_window, batch.offset * hop, length)
            C.requires_grad_(True)
            with common.autocast(self.device):
                real_logits, _ = C(real)
                fake_logits, _ = C(fake.detach())
            loss_c = hinge_critic_loss(real_logits, fake_logits)
            self.opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            self.opt_c.step()
            out["loss_critic"] = loss_c.detach()
        rec = self.reconstruction(fake_window, magnitude, batch)
        loss = (cfg.mel_weight * rec["mel_l1"] + cfg.stft_weight * (rec["sc"] + rec["log_mag"])
                + cfg.mag_weight * rec["mag_l1"])
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
    """Training batches (``Crops``) of real notes at random gains, partly corrupted or rendered by G."""

    def __init__(self, audio: TrainAudio, cfg: VocoderTrainConfig, mel: MelConfig, synth=None,
                 n_fft: int | None = None) -> None:
        if cfg.crop_frames > mel.n_frames:
            raise UserError(f"crop_frames {cfg.crop_frames} exceeds the clip's {mel.n_frames} frames")
        if cfg.gen_fraction > 0 and synth is None:
            raise UserError("gen_fraction > 0 needs features.safetensors and generator.safetensors in --weights")
        self.audio, self.cfg, self.mel, self.synth = audio, cfg, mel, synth
        self.log_mel = LogMel(mel).to(audio.device)
        # The vocoder head's grid for the magnitude target (the mel's own unless a variant differs).
        self.n_fft = n_fft or mel.n_fft
        self.same_grid = self.n_fft == mel.n_fft == mel.win_length
        self.head_window = torch.hann_window(self.n_fft, device=audio.device)
        # Context that fits the clip on both sides: the window stays inside it.
        self.context = max(0, min(cfg.context_frames, (mel.n_frames - cfg.crop_frames) // 2))

    def _rand(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.rand(n, generator=gen, device=gen.device).to(self.audio.device)

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """|STFT| ``[B, n_freqs, F]`` of ``wave`` on the vocoder head's grid."""
        if self.same_grid:
            return self.log_mel.magnitude(wave)
        spec = torch.stft(wave, self.n_fft, self.mel.hop_length, self.n_fft, self.head_window, center=True,
                          return_complex=True)
        return spec.abs()

    @torch.no_grad()
    def __call__(self, gen: torch.Generator) -> Crops:
        """A batch drawn with ``gen`` (on the data's device in training)."""
        cfg, dev, hop = self.cfg, self.audio.device, self.mel.hop_length
        B = cfg.batch_size
        idx = torch.randint(len(self.audio), (B,), generator=gen, device=gen.device).to(dev)
        n_gen = int(round(B * cfg.gen_fraction)) if self.synth is not None else 0
        gain_db = -self._rand(B, gen) * cfg.gain_db
        gain_db[:n_gen] = 0.0  # G renders at its own level; keep the target at the note's level
        wave = self.audio.waves(idx, gain_db)
        magnitude = self.magnitude(wave)
        mel = self.log_mel.from_magnitude(magnitude) if self.same_grid else self.log_mel(wave)
        clean = mel
        mel = corrupt(mel, cfg, self.mel.log_min, gen)
        if n_gen:
            synth, f = self.synth
            x = self.audio.mels[idx[:n_gen]].float()
            p = self.audio.pitch[idx[:n_gen]]
            with common.autocast(dev):
                mel[:n_gen] = synth(f(x), p, p).float()
        span = self.mel.n_frames - cfg.crop_frames
        start = (self._rand(B, gen) * (span + 1)).long().clamp_max(span)
        start = torch.where(self._rand(B, gen) < cfg.attack_prob, torch.zeros_like(start), start)
        frames = cfg.crop_frames + 2 * self.context
        window = (start - self.context).clamp(0, self.mel.n_frames - frames)
        return Crops(mel=crop_frames(mel, window, frames), wave=crop_samples(wave, window * hop, hop * (frames - 1)),
                     offset=start - window, real_mel=crop_frames(clean, start, cfg.crop_frames),
                     magnitude=crop_frames(magnitude, start, cfg.crop_frames))


class Evaluator:
    """Held-out notes, full clips: the vocoder's mel L1 / MR-STFT (/ pitch) beside Griffin-Lim 32's
    (computed once per setting) and the pitch accuracy of the real audio. The vocoder runs the
    step counts of the device; with ``cpu_steps`` (set on a GPU) also the CPU's (``valid_cpu_*``)."""

    def __init__(self, data, device: torch.device, cpu_steps: bool | None = None) -> None:
        self.data, self.device = data, device
        self.cpu_steps = device.type != "cpu" if cpu_steps is None else cpu_steps
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
        was_training, own = V.training, V.schedule
        V.eval()
        rows = evaluate_real(self.data, {"vocoder": V}, cfg, self.device)
        out = {f"valid_{k}": v for k, v in rows["vocoder"].items() if k not in skip}
        if self.cpu_steps:
            V.schedule = own.with_steps(own.refine_iters, own.coarse_projections, own.mel_projections)
            try:
                rows = evaluate_real(self.data, {"vocoder": V}, cfg, self.device)
            finally:
                V.schedule = own
            out.update({f"valid_cpu_{k}": v for k, v in rows["vocoder"].items() if k not in skip})
        V.train(was_training)
        return {**out, **self.baseline[(notes, pitch)]}


def export(V: NeuralVocoder, out: Path, meta: dict) -> None:
    checkpoint.save(out / "vocoder.safetensors", V, meta, dtype=torch.float16)


def train(data, out: Path, opts: common.RunOptions) -> dict[str, float]:
    """Train (or resume) in ``out`` for the budget in ``opts``; writes vocoder.safetensors (float16),
    state shards and metrics.jsonl; returns the final evaluation."""
    run = Run(opts, VocoderTrainConfig())
    cfg, dev = run.cfg, run.device
    v_cfg, c_cfg = net_configs(data.mel_cfg, opts.tiny)
    v_cfg, c_cfg = run.config(v_cfg, "net"), run.config(c_cfg, "critic")
    if run.announce("vocoder", cfg, net=v_cfg, critic=c_cfg):
        return {}
    audio = TrainAudio(data, dev, with_mels=cfg.gen_fraction > 0)
    V, C = NeuralVocoder(v_cfg).to(dev), VocoderCritic(c_cfg).to(dev)
    if opts.init:
        V.load_state_dict(checkpoint.load(opts.init, NeuralVocoder)[0].state_dict())
    synth = load_synth(run.weights, dev) if cfg.gen_fraction > 0 else None
    trainer = VocoderStep(run.wrap(V), run.wrap(C), cfg, data.mel_cfg, dev)
    batches = Batches(audio, cfg, data.mel_cfg, synth, n_fft=v_cfg.n_fft)
    evaluator = Evaluator(data, dev) if run.d.is_main else None

    def probe(step: int, final: bool) -> dict[str, float]:
        return evaluator(V, cfg.final_eval_notes, pitch=True) if final else evaluator(V, cfg.eval_notes, pitch=False)

    return run.train(Stage(
        "vocoder", cfg, {"V": V, "C": C}, lambda step, gen: trainer(step, batches(gen)),
        {"V": trainer.opt_v, "C": trainer.opt_c}, meta={"mel": data.mel_cfg.to_json(), "v_config": checkpoint.config_to_json(v_cfg)},
        probe=probe, export=functools.partial(export, V), parts={"warmup": trainer}), out)
