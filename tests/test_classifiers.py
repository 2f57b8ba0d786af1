"""Evaluation classifiers: shapes, penultimate features, a few training steps, checkpoint round trip."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import checkpoint
from models.nets.classifiers import (InstrumentClassifier, InstrumentClassifierConfig, PitchClassifier,
                                PitchClassifierConfig)
from models.signal.mel import SHIPPED_MEL, TINY_MEL, LogMel
from models.signal.tones import harmonic_tone

torch.set_num_threads(1)
CLASSES = [(PitchClassifier, PitchClassifierConfig, 88), (InstrumentClassifier, InstrumentClassifierConfig, 8)]


@pytest.mark.parametrize("net_cls, cfg_cls, n_out", CLASSES)
def test_tiny_shapes(net_cls, cfg_cls, n_out):
    net = net_cls(cfg_cls.tiny()).eval()
    x = torch.randn(3, TINY_MEL.n_mels, TINY_MEL.n_frames) - 4
    assert net.logits(x).shape == (3, n_out)
    assert net.features(x).shape == (3, net.cfg.feature_dim)
    assert torch.equal(net(x), net.logits(x))


@pytest.mark.parametrize("net_cls, cfg_cls, n_out", CLASSES)
def test_shipped_forward_batch_one(net_cls, cfg_cls, n_out):
    net = net_cls(cfg_cls.shipped(SHIPPED_MEL)).eval()
    with torch.no_grad():
        out = net(torch.randn(1, SHIPPED_MEL.n_mels, SHIPPED_MEL.n_frames) - 4)
    assert out.shape == (1, n_out if net_cls is PitchClassifier else 256)


def test_pitch_classifier_training_steps_lower_the_loss():
    torch.manual_seed(0)
    mel = LogMel(TINY_MEL)
    keys = torch.tensor([45, 52, 57, 64, 69, 76, 81, 88] * 2)
    waves = torch.stack([torch.from_numpy(harmonic_tone(int(k), duration_s=TINY_MEL.num_samples / 16000,
                                                        seed=i)) for i, k in enumerate(keys)])
    x = mel(waves)
    net = PitchClassifier(PitchClassifierConfig.tiny())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.eval()
    with torch.no_grad():
        first = F.cross_entropy(net(x), keys - 21)
    net.train()
    for _ in range(30):
        loss = F.cross_entropy(net(x), keys - 21)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        last = F.cross_entropy(net(x), keys - 21)
    assert last < 0.5 * first


def test_instrument_classifier_training_steps_lower_the_loss():
    g = torch.Generator().manual_seed(0)
    envelopes = torch.randn(4, TINY_MEL.n_mels, 1, generator=g) * 2
    labels = torch.arange(4).repeat_interleave(6)
    x = envelopes[labels] + torch.randn(len(labels), TINY_MEL.n_mels, TINY_MEL.n_frames, generator=g) - 4
    torch.manual_seed(0)
    net = InstrumentClassifier(InstrumentClassifierConfig.tiny(n_instruments=4))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.eval()
    with torch.no_grad():
        first = F.cross_entropy(net(x), labels)
    net.train()
    for _ in range(30):
        loss = F.cross_entropy(net(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        last = F.cross_entropy(net(x), labels)
    assert last < 0.5 * first


@pytest.mark.parametrize("net_cls, cfg_cls, n_out", CLASSES)
def test_checkpoint_round_trip_bitwise(tmp_path, net_cls, cfg_cls, n_out):
    torch.manual_seed(1)
    net = net_cls(cfg_cls.tiny()).eval()
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, net, {"step": 5})
    net2, cfg, _ = checkpoint.load(path, net_cls)
    x = torch.randn(2, TINY_MEL.n_mels, TINY_MEL.n_frames) - 4
    assert cfg == net.cfg and torch.equal(net.features(x), net2.eval().features(x))


def test_pitch_classifier_takes_any_number_of_frames():
    net = PitchClassifier(PitchClassifierConfig.tiny()).eval()
    for frames in (8, 13, TINY_MEL.n_frames):
        assert net(torch.randn(2, TINY_MEL.n_mels, frames) - 4).shape == (2, 88)
