"""Recording-condition augmentation (models/data/augment.py): deterministic, level-preserving, and each
stage does what it says (a reverb tail after the note, silence before it, a noise floor)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.data.augment import AugmentConfig, augment, augment_log_mel, impulse_responses, _draws
from models.signal.tones import harmonic_tone

SR = 16000
T = 32640
OFF = AugmentConfig(p_delay=0.0, p_reverb=0.0, p_tilt=0.0, p_noise=0.0, p_compress=0.0)


@pytest.fixture
def notes() -> torch.Tensor:
    waves = [harmonic_tone(m, duration_s=T / SR, decay_s=d)[:T] for m, d in ((45, 0.8), (60, 0.3), (72, None), (84, 0.5))]
    x = torch.from_numpy(np.stack(waves)).float()
    return x / x.abs().amax(dim=1, keepdim=True) * torch.tensor([[1.0], [0.5], [0.8], [1.0]])


def _burst() -> torch.Tensor:
    """A 0.25 s tone, then silence: [1, T]."""
    x = torch.zeros(1, T)
    x[0, :4000] = torch.from_numpy(harmonic_tone(69, duration_s=0.25)[:4000]).float()
    return x


def test_deterministic_by_seed_and_shape_kept(notes):
    a = augment(notes, AugmentConfig(), seed=7)
    assert a.shape == notes.shape and a.dtype == torch.float32
    assert torch.equal(a, augment(notes, AugmentConfig(), seed=7))
    assert torch.equal(a, augment(notes, AugmentConfig(), seed=torch.Generator().manual_seed(7)))
    assert not torch.equal(a, augment(notes, AugmentConfig(), seed=8))
    assert augment(notes[0], AugmentConfig(), seed=7).shape == (T,)  # a single [T] wave
    assert torch.equal(notes, notes.clone())  # the input is not changed


def test_everything_off_is_the_identity(notes):
    assert torch.allclose(augment(notes, OFF, seed=1), notes, atol=1e-6)


def test_level_is_preserved_within_bounds(notes):
    ref_rms = notes.pow(2).mean(dim=1).sqrt()
    for seed in range(6):
        y = augment(notes, AugmentConfig(p_delay=1, p_reverb=1, p_tilt=1, p_noise=1, p_compress=1), seed=seed)
        assert torch.allclose(y.abs().amax(dim=1), notes.abs().amax(dim=1), rtol=1e-4)  # each row keeps its peak
        change_db = 20 * torch.log10(y.pow(2).mean(dim=1).sqrt() / ref_rms)
        assert change_db.abs().max() < 12.0, change_db
        assert torch.isfinite(y).all()


def test_reverb_leaves_a_tail_after_the_note():
    x = _burst()
    cfg = replace(OFF, p_reverb=1.0, rt60_s=(0.8, 0.8), wet_db=(-6.0, -6.0))
    y = augment(x, cfg, seed=3)
    after = slice(4000 + SR // 10, 4000 + SR // 2)  # 0.1-0.5 s after the note ends
    assert x[0, after].abs().max() == 0
    tail_db = 10 * torch.log10(y[0, after].pow(2).mean() / y[0, :4000].pow(2).mean())
    assert -45 < tail_db < -5, tail_db
    late = slice(4000 + int(1.0 * SR), 4000 + int(1.2 * SR))  # it decays: 1 s later, far quieter
    assert y[0, late].pow(2).mean() < 0.01 * y[0, after].pow(2).mean()


def test_impulse_responses_decay_at_their_rt60():
    cfg = replace(OFF, rt60_s=(0.5, 0.5), wet_db=(0.0, 0.0), predelay_s=(0.0, 0.0))
    ir = impulse_responses(_draws(4, cfg, torch.Generator().manual_seed(0)), cfg, torch.Generator().manual_seed(1))
    assert ir.shape == (4, cfg.max_ir_samples)
    energy = ir[:, 1:].pow(2)
    early = energy[:, int(0.06 * SR):int(0.1 * SR)].mean()
    late = energy[:, int(0.31 * SR):int(0.35 * SR)].mean()  # 0.25 s later: about 30 dB down (low band)
    assert 18 < 10 * torch.log10(early / late) < 45


def test_leading_silence_noise_floor_and_tilt():
    x = _burst()
    y = augment(x, replace(OFF, p_delay=1.0, delay_s=(0.05, 0.05)), seed=0)
    assert y[0, :800].abs().max() == 0 and torch.allclose(y[0, 800:4800], x[0, :4000])
    y = augment(x, replace(OFF, p_noise=1.0, noise_floor_db=(-40.0, -40.0), noise_slope=(0.0, 0.0)), seed=0)
    floor_db = 20 * torch.log10(y[0, 8000:].pow(2).mean().sqrt() / x.abs().max())  # re the peak
    assert abs(floor_db + 40) < 1.5
    y = augment(x, replace(OFF, p_tilt=1.0, tilt_db_per_octave=(3.0, 3.0)), seed=0)
    spec_x, spec_y = torch.fft.rfft(x[0]).abs(), torch.fft.rfft(y[0]).abs()
    freqs = torch.fft.rfftfreq(T, 1 / SR)
    hi = (freqs > 3000) & (spec_x > spec_x.max() * 1e-3)
    lo = (freqs < 600) & (spec_x > spec_x.max() * 1e-3)
    assert (spec_y[hi] / spec_x[hi]).mean() > 2 * (spec_y[lo] / spec_x[lo]).mean()


def test_compression_narrows_the_dynamics():
    x = torch.from_numpy(harmonic_tone(57, duration_s=T / SR, decay_s=0.4)[:T]).float()[None]
    y = augment(x, replace(OFF, p_compress=1.0, threshold_db=(-30.0, -30.0), ratio=(6.0, 6.0)), seed=0)
    def ratio(w):  # level 1.0 s after the onset against the peak, dB
        return 20 * torch.log10(w[0, SR:SR + 1600].pow(2).mean().sqrt() / w.abs().max())
    assert ratio(y) > ratio(x) + 6


# --- the same chain on stored log-mels (augment_log_mel): what training uses ---------------------

def _log_mel(x: torch.Tensor, cfg) -> torch.Tensor:
    from models.signal.mel import LogMel
    return LogMel(cfg)(x)


def _mels(x: torch.Tensor):
    from models.signal.mel import MelConfig
    cfg = MelConfig(n_mels=64, n_frames=T // 128 + 1)
    return _log_mel(x, cfg), cfg


def _only(stage: str, **ranges) -> AugmentConfig:
    return replace(OFF, **{f"p_{stage}": 1.0}, **ranges)


def test_log_mel_chain_is_deterministic_and_skips_rows(notes):
    m, cfg = _mels(notes)
    a = augment_log_mel(m, cfg, gen=torch.Generator().manual_seed(3))
    assert a.shape == m.shape and torch.equal(a, augment_log_mel(m, cfg, gen=torch.Generator().manual_seed(3)))
    assert not torch.equal(a, m)
    assert torch.equal(augment_log_mel(m, cfg, gen=torch.Generator().manual_seed(3), p=0.0), m)
    assert torch.allclose(augment_log_mel(m, cfg, OFF, torch.Generator().manual_seed(3)), m, atol=1e-4)
    # the loudest frame keeps its power
    peak = lambda x: torch.exp(2 * x).sum(1).amax(1)  # noqa: E731
    assert torch.allclose(peak(a), peak(m), rtol=1e-3)


def test_log_mel_delay_and_room_follow_the_wave_chain():
    m, cfg = _mels(_burst())
    frame_s = cfg.hop_length / cfg.sample_rate
    delayed = augment_log_mel(m, cfg, _only("delay", delay_s=(0.064, 0.064)))
    assert torch.allclose(delayed[..., 8:], m[..., :-8], atol=1e-4)
    assert (delayed[..., :8] <= cfg.log_min + 1e-4).all()
    wet = augment_log_mel(m, cfg, _only("reverb", rt60_s=(1.0, 1.0), wet_db=(-6.0, -6.0)))
    energy = lambda x: torch.exp(2 * x).sum(1)[0]  # noqa: E731
    after = int(0.35 / frame_s)  # 0.1 s after the burst ends
    dry_db, wet_db = (10 * torch.log10(energy(x)[after] / energy(x).max()) for x in (m, wet))
    ref = _log_mel(augment(_burst(), _only("reverb", rt60_s=(1.0, 1.0), wet_db=(-6.0, -6.0)), seed=0), cfg)
    ref_db = 10 * torch.log10(energy(ref)[after] / energy(ref).max())
    assert wet_db > dry_db + 20 and abs(float(wet_db - ref_db)) < 8.0


def test_log_mel_tilt_and_noise_floor(notes):
    m, cfg = _mels(notes)
    tilted = augment_log_mel(m, cfg, _only("tilt", tilt_db_per_octave=(3.0, 3.0)))
    wave_tilted = _log_mel(augment(notes, _only("tilt", tilt_db_per_octave=(3.0, 3.0))), cfg)
    loud = m > m.amax((1, 2), keepdim=True) - 3.0  # the harmonics' bins: compare shapes there
    shape = lambda x: x - x.amax((1, 2), keepdim=True)  # noqa: E731
    assert float((shape(tilted) - shape(wave_tilted))[loud].abs().mean()) < 0.35  # nats, ~3 dB
    noisy = augment_log_mel(m, cfg, _only("noise", noise_floor_db=(-40.0, -40.0)))
    quiet = m < m.amax((1, 2), keepdim=True) - 12.0
    assert float((noisy - m)[quiet].mean()) > 0.5  # the silent bins rise to the floor
