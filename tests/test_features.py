"""f: shapes, h normalisation, gradient reversal, a few training steps, checkpoint round trip."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import checkpoint
from models.nets.features import FeatureConfig, FeatureExtractor
from models.nets.layers import grad_reverse
from models.signal.mel import SHIPPED_MEL, TINY_MEL

torch.set_num_threads(1)


def synthetic_notes(n_classes: int, per_class: int, seed: int = 0):
    """Log-mels on TINY_MEL: a class-specific spectral envelope plus a pitch-like stripe and noise."""
    g = torch.Generator().manual_seed(seed)
    m, f = TINY_MEL.n_mels, TINY_MEL.n_frames
    envelopes = torch.randn(n_classes, m, 1, generator=g) * 2
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    midi = torch.randint(21, 109, (len(labels),), generator=g)
    x = envelopes[labels] + torch.randn(len(labels), m, f, generator=g) * 0.5 - 4
    x[torch.arange(len(labels)), (midi - 21) * m // 88] += 3
    return x, labels, midi


def test_shapes_and_normalised_h():
    f = FeatureExtractor(FeatureConfig.tiny())
    h = f(torch.randn(3, TINY_MEL.n_mels, TINY_MEL.n_frames) - 4)
    assert h.shape == (3, 16)
    assert torch.allclose(h.square().mean(1), torch.ones(3), atol=1e-4)
    assert f.instrument_logits(h).shape == (3, 8)
    assert f.pitch_logits(h).shape == (3, 88)


def test_shipped_forward_batch_one():
    f = FeatureExtractor(FeatureConfig.shipped(SHIPPED_MEL, n_instruments=10))
    with torch.no_grad():
        assert f(torch.randn(1, SHIPPED_MEL.n_mels, SHIPPED_MEL.n_frames) - 4).shape == (1, 256)


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_gradient_reversal_sign_and_scale(scale):
    x = torch.randn(4, 5, requires_grad=True)
    w = torch.randn(4, 5)
    (grad_plain,) = torch.autograd.grad((x * w).sum(), x)
    (grad_rev,) = torch.autograd.grad((grad_reverse(x, scale) * w).sum(), x)
    assert torch.equal(grad_reverse(x, scale), x)
    assert torch.allclose(grad_rev, -scale * grad_plain)


def test_pitch_head_learns_while_f_gets_reversed_gradient():
    torch.manual_seed(0)
    f = FeatureExtractor(FeatureConfig.tiny())
    h = torch.randn(4, 16, requires_grad=True)
    midi = torch.tensor([0, 5, 10, 40])
    F.cross_entropy(f.pitch_logits(h, 1.0), midi).backward()
    grad_rev = h.grad.clone()
    head_grad = f.pitch_head[0].weight.grad.clone()
    h.grad = None
    f.zero_grad()
    F.cross_entropy(f.pitch_head(h), midi).backward()
    assert torch.allclose(grad_rev, -h.grad)
    assert torch.allclose(head_grad, f.pitch_head[0].weight.grad)  # the head itself is not reversed


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    x, labels, midi = synthetic_notes(n_classes=4, per_class=8)
    f = FeatureExtractor(FeatureConfig.tiny(n_instruments=4))
    opt = torch.optim.Adam(f.parameters(), lr=3e-3)

    def loss_fn():
        h = f(x)
        return F.cross_entropy(f.instrument_logits(h), labels), F.cross_entropy(f.pitch_logits(h, 0.1), midi - 21)

    with torch.no_grad():
        first, _ = loss_fn()
    for _ in range(30):
        inst, pitch = loss_fn()
        opt.zero_grad()
        (inst + pitch).backward()
        opt.step()
    with torch.no_grad():
        last, _ = loss_fn()
    assert last < 0.5 * first


def test_checkpoint_round_trip_bitwise(tmp_path):
    torch.manual_seed(1)
    f = FeatureExtractor(FeatureConfig.tiny()).eval()
    checkpoint.save(tmp_path / "f.safetensors", f, {"step": 2})
    f2, cfg, _ = checkpoint.load(tmp_path / "f.safetensors", FeatureExtractor)
    x = torch.randn(2, TINY_MEL.n_mels, TINY_MEL.n_frames) - 4
    assert cfg == f.cfg and torch.equal(f(x), f2.eval()(x))


def test_confusion_trains_head_on_detached_h_and_pushes_f_toward_uniform():
    from models.train.features import FeaturesTrainConfig, pitch_loss

    torch.manual_seed(0)
    f = FeatureExtractor(FeatureConfig.tiny())
    with torch.no_grad():  # a head that already reads pitch a little: its prediction is far from uniform
        f.pitch_head[-1].weight.mul_(20)
    h = torch.randn(6, 16, requires_grad=True)
    key = torch.tensor([0, 5, 10, 40, 60, 87])
    loss, logs = pitch_loss(f, h, key, FeaturesTrainConfig(pitch_objective="confusion", pitch_weight=2.0), 0.5)
    loss.backward()
    assert logs["loss_confusion"] >= torch.log(torch.tensor(88.0)) - 1e-5
    # the head's gradient is that of its own cross-entropy alone
    head_grads = [p.grad.clone() for p in f.pitch_head.parameters()]
    f.zero_grad()
    F.cross_entropy(f.pitch_head(h.detach()), key).backward()
    for got, want in zip(head_grads, [p.grad for p in f.pitch_head.parameters()]):
        assert torch.allclose(got, want, atol=1e-6)
    # f's gradient is 2 * 0.5 times that of the cross-entropy to uniform, and a step against it makes
    # the head less sure (higher entropy), where a step against the plain pitch CE would make it surer
    h2 = h.detach().requires_grad_()
    (-F.log_softmax(f.pitch_head(h2), 1).mean()).backward()
    assert torch.allclose(h.grad, h2.grad, atol=1e-6)

    def entropy(hh):
        with torch.no_grad():
            p = F.softmax(f.pitch_head(hh), 1)
            return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())

    assert entropy(h.detach() - 0.05 * h.grad) > entropy(h.detach())


def test_grl_objective_reverses_the_head_gradient_into_f():
    from models.train.features import FeaturesTrainConfig, pitch_loss

    torch.manual_seed(0)
    f = FeatureExtractor(FeatureConfig.tiny())
    h = torch.randn(4, 16, requires_grad=True)
    key = torch.tensor([0, 5, 10, 40])
    loss, _ = pitch_loss(f, h, key, FeaturesTrainConfig(pitch_objective="grl"), 0.5)
    loss.backward()
    h2 = h.detach().requires_grad_()
    F.cross_entropy(f.pitch_head(h2), key).backward()
    assert torch.allclose(h.grad, -0.5 * h2.grad, atol=1e-6)


def test_reset_pitch_head_is_deterministic_per_seed():
    f1, f2 = FeatureExtractor(FeatureConfig.tiny()), FeatureExtractor(FeatureConfig.tiny())
    f1.reset_pitch_head(torch.Generator().manual_seed(3))
    f2.reset_pitch_head(torch.Generator().manual_seed(3))
    for a, b in zip(f1.pitch_head.parameters(), f2.pitch_head.parameters()):
        assert torch.equal(a, b)
    linear = FeatureExtractor(FeatureConfig(mel=TINY_MEL, h_dim=16, channels=(8, 16), n_instruments=8, pitch_hidden=0))
    assert linear.pitch_logits(torch.randn(2, 16)).shape == (2, 88)


def test_linear_probe_penalty_reads_linear_pitch_and_its_gradient_removes_it():
    from models.train.features import LinearProbePenalty

    g = torch.Generator().manual_seed(0)
    key = torch.randint(0, 88, (4096,), generator=g)
    noise = torch.randn(4096, 128, generator=g)
    code = torch.randn(88, 128, generator=g) * 0.5
    leaky = noise + code[key]  # h = noise + a per-key offset: a linear probe reads the key
    for h, low, high in ((noise, 0.0, 0.06), (leaky, 0.1, 1.0)):
        probe = LinearProbePenalty(128, 4096, torch.device("cpu"))
        probe.push(h, key)
        assert low <= float(probe(h[:256], key[:256])) <= high
    batch = leaky[:256].clone().requires_grad_()
    probe(batch, key[:256]).backward()
    # f is pushed against the per-key offsets: a step along -grad removes part of them
    cos = F.cosine_similarity(-batch.grad, -(code[key[:256]] - code[key[:256]].mean(0)), dim=1)
    assert cos.mean() > 0.5


def notes_with_pitch_stripes(n_classes: int, keys: list[int], reps: int, seed: int):
    """Like ``synthetic_notes``, on a few keys (so that a probe can learn them from few notes)."""
    g = torch.Generator().manual_seed(seed)
    m, f = TINY_MEL.n_mels, TINY_MEL.n_frames
    envelopes = torch.randn(n_classes, m, 1, generator=torch.Generator().manual_seed(0)) * 2
    labels = torch.arange(n_classes).repeat_interleave(len(keys) * reps)
    midi = torch.tensor(keys).repeat_interleave(reps).repeat(n_classes)
    x = envelopes[labels] + torch.randn(len(labels), m, f, generator=g) * 0.5 - 4
    x[torch.arange(len(labels)), (midi - 21) * m // 88] += 3
    return x, labels, midi


@pytest.mark.slow
def test_adversary_lowers_pitch_probe_accuracy_versus_none():
    from models.train import features as stage

    keys = list(range(33, 100, 8))
    x, labels, midi = notes_with_pitch_stripes(6, keys, reps=3, seed=1)
    x_test, labels_test, midi_test = notes_with_pitch_stripes(6, keys, reps=1, seed=2)

    def probe_and_instrument_accuracy(**settings) -> tuple[float, float]:
        torch.manual_seed(0)
        f = FeatureExtractor(FeatureConfig.tiny(n_instruments=6))
        cfg = stage.FeaturesTrainConfig(lr=3e-3, grl_ramp_steps=0, **settings)
        opt = stage.make_optimizer(f, cfg)
        probe = stage.LinearProbePenalty(16, 256, torch.device("cpu")) if cfg.probe_weight > 0 else None
        for _ in range(120):
            idx = torch.randint(len(x), (32,))
            stage.train_step(f, f, opt, x[idx], labels[idx], midi[idx], cfg, torch.device("cpu"), probe=probe)
        with torch.no_grad():
            h, h_test = f(x), f(x_test)
            inst = float((f.instrument_logits(h_test).argmax(1) == labels_test).float().mean())
        return stage.linear_probe_accuracy(h, midi - 21, h_test, midi_test - 21, 88), inst

    none, _ = probe_and_instrument_accuracy(pitch_objective="confusion", pitch_weight=0.0, probe_weight=0.0)
    adv, inst = probe_and_instrument_accuracy(pitch_objective="confusion", probe_weight=1.0)
    assert none > 0.5  # without an adversary the stripes leave pitch in h
    assert adv < 0.6 * none and inst > 0.8
