"""A tiny synthetic NoteSet in memory (instruments differ by harmonic recipe): for smoke runs of the
training stages (bench/resume_check.py) and their tests, without building a data set."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.signal.mel import TINY_MEL, LogMel, MelConfig


@dataclass
class FakeInstrument:
    name: str
    source: str = "synthetic"
    preset: int = 0
    family: str = "a"
    split: int = 0
    pitched: bool = True


@dataclass
class FakeNoteSet:
    """Same fields as models.data.dataset.NoteSet, built in memory."""

    mels: np.ndarray
    audio: np.ndarray | None
    pitch: np.ndarray
    velocity: np.ndarray
    instrument: np.ndarray
    family: np.ndarray
    split: np.ndarray
    instruments: list = field(default_factory=list)
    families: list = field(default_factory=list)
    mel_cfg: MelConfig = TINY_MEL


def tiny_noteset(n_instruments: int = 6, keys: range = range(45, 81, 3), mel: MelConfig = TINY_MEL,
                 valid_instruments: int = 2, seed: int = 0) -> FakeNoteSet:
    """Instruments = harmonic roll-off x decay recipes; the last ``valid_instruments`` are held out."""
    rng = np.random.default_rng(seed)
    t = np.arange(mel.num_samples) / mel.sample_rate
    waves, rows = [], []
    for inst in range(n_instruments):
        rolloff = 0.3 + 1.7 * inst / max(n_instruments - 1, 1)
        decay = 0.2 + 0.3 * (inst % 3)
        odd_only = inst % 2 == 1
        for key in keys:
            f0 = 440 * 2 ** ((key - 69) / 12)
            wave = np.zeros_like(t)
            for k in range(1, 16):
                if k * f0 >= mel.sample_rate / 2 or (odd_only and k % 2 == 0):
                    continue
                wave += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k ** rolloff
            wave *= np.exp(-t / decay)
            waves.append(wave / np.abs(wave).max() * 0.9)
            rows.append((inst, key))
    audio = torch.tensor(np.stack(waves), dtype=torch.float32)
    mels = LogMel(mel)(audio).numpy().astype(np.float16)
    inst = np.array([r[0] for r in rows], np.int32)
    split = np.where(inst >= n_instruments - valid_instruments, 1, 0).astype(np.int8)
    instruments = [FakeInstrument(f"synth{i}", family="abc"[i % 3], split=int(i >= n_instruments - valid_instruments))
                   for i in range(n_instruments)]
    return FakeNoteSet(mels=mels, audio=(audio.numpy() * 32767).astype(np.int16),
                       pitch=np.array([r[1] for r in rows], np.int16), velocity=np.full(len(rows), 100, np.int16),
                       instrument=inst, family=(inst % 3).astype(np.int16), split=split, instruments=instruments,
                       families=["a", "b", "c"], mel_cfg=mel)


# --set overrides that make every stage tiny and quick (no evaluation or saving between steps).
QUICK = ("log_every=1", "eval_every=1000", "save_every=1000")
TINY_STAGES = {
    "features": ("batch_size=16", "probe_bank=64", "head_reset_every=3", "grl_ramp_steps=4"),
    "eval-classifiers": ("batch_size=16",),
    "gan": ("batch_size=8", "knn_k=5", "r1_every=2"),
    "hyper-pre": ("batch_size=8", "knn_k=5", "p_recon=0.5"),
    "hyper-adv": ("batch_size=8", "knn_k=5", "r1_every=2"),
    "vocoder": ("batch_size=4", "crop_frames=12", "context_frames=4", "eval_notes=2", "final_eval_notes=2",
                "warmup_steps=4", "adv_start=2", "adv_weight=1.0", "fm_weight=1.0"),
    "vocoder-distill": ("dim=16", "intermediate_dim=32", "n_layers=1", "batch_size=8", "eval_batches=1"),
}


def tiny_weights(folder, n_instruments: int, mel: MelConfig = TINY_MEL):
    """Random tiny networks where the later stages look for the earlier stages' weights."""
    from models import checkpoint
    from models.nets.classifiers import InstrumentClassifier, PitchClassifier
    from models.nets.discriminator import Discriminator
    from models.nets.features import FeatureExtractor
    from models.nets.generator import Generator
    from models.nets.hyper import HyperConfig, HyperNetwork
    from models.nets.vocoder import NeuralVocoder, VocoderConfig

    torch.manual_seed(0)
    f = FeatureExtractor(FeatureExtractor.Config.tiny(mel, n_instruments=n_instruments))
    G = Generator(Generator.Config.tiny(mel))
    nets = {"features": f, "generator": G, "discriminator": Discriminator(Discriminator.Config.tiny(mel)),
            "hyper_pre": HyperNetwork(HyperConfig.tiny(G.modulated_layers(), f.cfg.h_dim, skip_coarse=2)),
            "instrument_classifier": InstrumentClassifier(InstrumentClassifier.Config.tiny(mel)),
            "pitch_classifier": PitchClassifier(PitchClassifier.Config.tiny(mel)),
            "vocoder": NeuralVocoder(VocoderConfig.tiny(mel))}
    for name, net in nets.items():
        checkpoint.save(folder / f"{name}.safetensors", net, {"step": 1})
    return folder
