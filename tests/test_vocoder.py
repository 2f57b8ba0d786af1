"""The neural vocoder: shapes on every preset, checkpoint round trip, distances, critics, learning."""
from __future__ import annotations

import math

import dataclasses

import numpy as np
import pytest
import torch

from models import checkpoint
from models.errors import CheckpointError
from models.nets.generator import Generator
from models.signal.mel import SHIPPED_MEL, TINY_MEL, GriffinLim, LogMel
from models.train.vocoder import Crops, VocoderStep, VocoderTrainConfig, corrupt, crop_frames, crop_samples
from models.nets.vocoder import NeuralVocoder, VocoderConfig, VocoderSchedule, load_vocoder
from models.nets.vocoder_critic import VocoderCritic, feature_matching_loss, hinge_critic_loss, hinge_generator_loss
from models.signal.stft import multi_resolution_stft
from models.signal.tones import harmonic_tone


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("cfg", [VocoderConfig.tiny(TINY_MEL), VocoderConfig.shipped(SHIPPED_MEL)],
                         ids=["tiny", "shipped"])
def test_full_clip_gives_num_samples_like_griffin_lim(cfg):
    torch.manual_seed(0)
    V = NeuralVocoder(cfg).eval()
    mel = cfg.mel
    assert cfg.hop_length == mel.hop_length
    x = torch.full((2, mel.n_mels, mel.n_frames), mel.log_min) + torch.rand(2, mel.n_mels, mel.n_frames)
    with torch.no_grad():
        wave = V(x)
        single = V(x[0])
    assert wave.shape == (2, mel.num_samples)
    assert single.shape == (mel.num_samples,)
    assert torch.isfinite(wave).all()
    assert GriffinLim(mel, n_iter=1)(x[:1]).shape[-1] == wave.shape[-1]


@pytest.mark.parametrize("changes, steps", [(dict(phase="direct", magnitude_prior=False), {}),
                                            (dict(phase_offset=True), {}),
                                            ({}, dict(refine_iters=0, mel_projections=0))],
                         ids=["vocos", "offset", "bare"])
def test_variants_build_and_keep_the_length(changes, steps):
    cfg = dataclasses.replace(VocoderConfig.tiny(), **changes)
    V = NeuralVocoder(cfg, dataclasses.replace(VocoderSchedule.tiny(), **steps))
    assert V.head.out_features == cfg.head_channels
    wave = V(torch.randn(2, cfg.mel.n_mels, cfg.mel.n_frames) - 4)
    assert wave.shape == (2, cfg.mel.num_samples) and torch.isfinite(wave).all()


def test_shipped_vocoder_fits_the_size_budget(tmp_path):
    V = NeuralVocoder(VocoderConfig.shipped())
    path = tmp_path / "vocoder.safetensors"
    checkpoint.save(path, V, {}, dtype=torch.float16)
    assert path.stat().st_size <= 6 * 2**20


def test_crop_length_is_hop_times_frames_minus_one():
    cfg = VocoderConfig.tiny()
    V = NeuralVocoder(cfg)
    wave = V(torch.randn(3, cfg.mel.n_mels, 10) - 5)
    assert wave.shape == (3, cfg.hop_length * 9)
    wave.sum().backward()  # training path: gradients reach the first layer
    assert V.embed.weight.grad is not None and torch.isfinite(V.embed.weight.grad).all()


def test_cpu_chunked_inference_matches_one_batch():
    torch.manual_seed(0)
    V = NeuralVocoder(VocoderConfig.tiny()).eval()
    V.cpu_chunk = 2
    x = torch.randn(5, TINY_MEL.n_mels, TINY_MEL.n_frames) - 4
    whole = V(x)  # autograd recording: no chunks
    with torch.no_grad():
        chunked = V(x)
    assert torch.allclose(whole.detach(), chunked, atol=1e-5)


def test_checkpoint_round_trip_float16(tmp_path):
    torch.manual_seed(0)
    V = NeuralVocoder(VocoderConfig.tiny())
    with torch.no_grad():
        for p in V.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "vocoder.safetensors"
    checkpoint.save(path, V, {"step": 7}, dtype=torch.float16)
    loaded = load_vocoder(path)
    assert loaded.cfg == V.cfg and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(2, TINY_MEL.n_mels, TINY_MEL.n_frames) - 4
    with torch.no_grad():
        a, b = V(x), loaded(x)
    # float16 rounding only (the phase locking picks peaks, so a rounded magnitude can move a few)
    assert torch.linalg.vector_norm(a - b) < 0.05 * torch.linalg.vector_norm(a)
    with pytest.raises(CheckpointError):
        checkpoint.load(path, Generator)


def test_config_rejects_an_istft_shorter_than_the_hop_or_a_projection_off_grid():
    with pytest.raises(ValueError):
        dataclasses.replace(VocoderConfig.tiny(), n_fft=64)
    with pytest.raises(ValueError):
        dataclasses.replace(VocoderConfig.shipped(), n_fft=1024)
    dataclasses.replace(VocoderConfig.shipped(), n_fft=1024, project_magnitude=False)


def test_multi_resolution_stft_is_zero_for_equal_waves_and_grows_with_error():
    torch.manual_seed(0)
    ref = torch.from_numpy(np.stack([harmonic_tone(60, duration_s=0.5), harmonic_tone(72, duration_s=0.5)]))
    sc, lm = multi_resolution_stft(ref, ref)
    assert torch.allclose(sc, torch.zeros(2), atol=1e-6) and torch.allclose(lm, torch.zeros(2), atol=1e-6)
    small = multi_resolution_stft(ref, ref + 0.001 * torch.randn_like(ref))
    large = multi_resolution_stft(ref, ref + 0.1 * torch.randn_like(ref))
    assert (small[0] < large[0]).all() and (small[1] < large[1]).all()
    est = torch.zeros_like(ref, requires_grad=True)  # silence: the magnitude floor keeps gradients finite
    sum(multi_resolution_stft(ref, est)).sum().backward()
    assert torch.isfinite(est.grad).all()


def test_critics_and_adversarial_losses():
    torch.manual_seed(0)
    C = VocoderCritic(VocoderCritic.Config.tiny())
    real, fake = torch.randn(2, 1001) * 0.1, torch.randn(2, 1001) * 0.1
    real_logits, real_feats = C(real)
    fake_logits, fake_feats = C(fake)
    assert len(real_logits) == len(C.cfg.periods) + len(C.cfg.resolutions)
    assert all(lg.shape[0] == 2 for lg in real_logits)
    for loss in (hinge_critic_loss(real_logits, fake_logits), hinge_generator_loss(fake_logits),
                 feature_matching_loss(real_feats, fake_feats)):
        assert loss.dim() == 0 and torch.isfinite(loss)
    assert feature_matching_loss(real_feats, real_feats) == 0


def test_corrupt_leaves_clean_inputs_alone_and_respects_the_floor():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 8, 10) * 5 + TINY_MEL.log_min
    off = corrupt(x, VocoderTrainConfig(aug_prob=0.0), TINY_MEL.log_min, gen)
    assert torch.equal(off, x)
    on = corrupt(x, VocoderTrainConfig(aug_prob=1.0), TINY_MEL.log_min, gen)
    assert not torch.allclose(on, x) and (on >= TINY_MEL.log_min).all()


def test_crop_keeps_mel_frames_and_samples_aligned():
    mel = TINY_MEL
    wave = torch.from_numpy(np.stack([harmonic_tone(57, duration_s=mel.num_samples / mel.sample_rate)]))
    wave = wave[:, :mel.num_samples]
    x = LogMel(mel)(wave)
    start = torch.tensor([5])
    xc, wc = crop_frames(x, start, 12), crop_samples(wave, start * mel.hop_length, mel.hop_length * 11)
    assert torch.equal(xc, x[:, :, 5:17])
    assert torch.equal(wc, wave[:, 5 * mel.hop_length: 16 * mel.hop_length])


@pytest.mark.slow
def test_a_few_dozen_steps_on_tiny_audio_lower_the_loss():
    from models.data.tiny import tiny_noteset

    torch.manual_seed(0)
    data = tiny_noteset(n_instruments=2, keys=range(48, 73, 6))
    mel = data.mel_cfg
    wave = torch.from_numpy(data.audio.astype(np.float32) / 32768)
    analysis = LogMel(mel)
    magnitude = analysis.magnitude(wave)
    x = analysis(wave)
    batch = Crops(mel=x, wave=wave, offset=torch.zeros(len(wave), dtype=torch.long), real_mel=x, magnitude=magnitude)
    V, C = NeuralVocoder(VocoderConfig.tiny(mel)), VocoderCritic(VocoderCritic.Config.tiny(mel))
    cfg = VocoderTrainConfig(lr=1e-2, warmup_steps=1, mag_weight=1.0)
    step = VocoderStep(V, C, cfg, mel, torch.device("cpu"))
    losses = [float(step(i, batch)["loss"]) for i in range(40)]
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])


def test_pooled_spectral_convergence_tolerates_a_silent_clip():
    ref = torch.from_numpy(np.stack([harmonic_tone(60, duration_s=0.25), np.zeros(4000, np.float32)]))
    est = ref + 0.01 * torch.randn_like(ref)
    per_clip, _ = multi_resolution_stft(ref, est)
    pooled, _ = multi_resolution_stft(ref, est, pooled=True)
    assert per_clip[1] > 100 * per_clip[0]  # a silent reference makes per-clip SC blow up
    assert pooled.dim() == 0 and pooled < 1


def test_locked_phase_rebuilds_a_held_tone_between_bins_from_its_magnitude():
    from models.signal.pitch import estimate_pitch
    from models.signal.audio import Audio

    cfg = VocoderConfig.shipped()
    V = NeuralVocoder(cfg)
    tone = torch.from_numpy(harmonic_tone(57.3, duration_s=1.0, n_harmonics=8, decay_s=2.0))[None]  # 225 Hz
    window = torch.hann_window(cfg.n_fft)
    spec = torch.stft(tone, cfg.n_fft, cfg.hop_length, cfg.n_fft, window, center=True, return_complex=True)
    phase = V.locked_phase(torch.log(spec.abs().clamp_min(1e-5)).transpose(1, 2)).transpose(1, 2)
    wave = torch.istft(torch.polar(spec.abs(), phase), cfg.n_fft, cfg.hop_length, cfg.n_fft, window, center=True,
                       length=tone.shape[-1])
    sc, _ = multi_resolution_stft(tone, wave)
    assert sc.item() < 0.2
    assert estimate_pitch(Audio(wave[0].numpy(), 16000)).midi_note == 57
    bin_centres = torch.polar(spec.abs(), V.locked_phase.bin_advance[:, None] * torch.arange(spec.shape[-1]))  # no locking, no peak IF
    wave_naive = torch.istft(bin_centres, cfg.n_fft, cfg.hop_length, cfg.n_fft, window, center=True,
                             length=tone.shape[-1])
    assert multi_resolution_stft(tone, wave_naive)[0].item() > 2 * sc.item()


def test_untrained_shipped_vocoder_is_already_an_analytic_inverter():
    """A zero head gives the mel's pseudo-inverse magnitude with the locked phase: the pitch survives."""
    from models.signal.pitch import estimate_pitch
    from models.signal.audio import Audio

    mel = SHIPPED_MEL
    V = NeuralVocoder(VocoderConfig.shipped(mel)).eval()
    tone = torch.from_numpy(harmonic_tone(45, duration_s=mel.num_samples / mel.sample_rate + 0.01, decay_s=1.0))
    with torch.no_grad():
        wave = V(LogMel(mel)(tone[None, :mel.num_samples]))
    assert estimate_pitch(Audio(wave[0].numpy(), mel.sample_rate)).midi_note == 45


def _tone_and_a_wrong_wave(mel):
    """A tiny-grid harmonic tone's log-mel and a wave at the wrong level with noise added."""
    torch.manual_seed(0)
    tone = torch.from_numpy(harmonic_tone(64, duration_s=mel.num_samples / mel.sample_rate + 0.01))[None, :mel.num_samples]
    return LogMel(mel)(tone), tone * 0.3 + 0.01 * torch.randn_like(tone)


def test_mel_projection_makes_the_wave_match_the_requested_mel():
    mel = TINY_MEL
    target, off = _tone_and_a_wrong_wave(mel)
    V = NeuralVocoder(VocoderConfig.tiny(mel))
    before = (LogMel(mel)(off) - target).abs().mean()
    after = (LogMel(mel)(V.bands.project(off, target)) - target).abs().mean()
    assert after < 0.5 * before


def test_locked_phase_keeps_a_gliding_tone_coherent_across_bins():
    """A partial whose peak moves from bin to bin keeps one phase track (a per-bin integral: SC 0.19)."""
    cfg = VocoderConfig.shipped()
    V = NeuralVocoder(cfg)
    sr, n = cfg.mel.sample_rate, cfg.mel.sample_rate
    t = np.arange(n) / sr
    track = 2 * np.pi * np.cumsum(220 * 2 ** (t / 12)) / sr  # 220 Hz gliding up a semitone in 1 s
    tone = sum(np.sin(h * track) / h for h in range(1, 7)) * np.exp(-t / 2)
    tone = torch.from_numpy((0.3 * tone).astype(np.float32))[None]
    window = torch.hann_window(cfg.n_fft)
    spec = torch.stft(tone, cfg.n_fft, cfg.hop_length, cfg.n_fft, window, center=True, return_complex=True)
    phase = V.locked_phase(torch.log(spec.abs().clamp_min(1e-5)).transpose(1, 2)).transpose(1, 2)
    wave = torch.istft(torch.polar(spec.abs(), phase), cfg.n_fft, cfg.hop_length, cfg.n_fft, window, center=True,
                       length=n)
    assert multi_resolution_stft(tone, wave)[0].item() < 0.14


def test_weightless_steps_per_device_and_override(tmp_path):
    V = NeuralVocoder(VocoderConfig.tiny())
    s = V.schedule
    assert s == VocoderSchedule.tiny()  # the default schedule's 4x coarse grid does not fit TINY_MEL
    cpu = (s.refine_iters, s.coarse_projections, s.mel_projections, s.mel_hop_factor)
    assert V.steps(torch.device("cpu"), recording=False) == cpu == (0, 2, 2, 2)
    assert V.steps(torch.device("cuda"), recording=False) == (4, 0, 32, 1)
    assert V.steps(torch.device("cuda"), recording=True) == cpu  # training
    path = tmp_path / "vocoder.safetensors"
    checkpoint.save(path, V, {})
    loaded = load_vocoder(path, steps=(0, 3))
    assert loaded.steps(torch.device("cpu"), False) == (0, 0, 3, 2) == loaded.steps(torch.device("cuda"), False)
    loaded = load_vocoder(path, steps=(1, 2, 1))
    assert loaded.steps(torch.device("cpu"), False)[:3] == (1, 2, 1)
    assert loaded.schedule.cuda_mel_hop_factor == loaded.schedule.mel_hop_factor  # a GPU reproduces the CPU path
    x = torch.randn(2, TINY_MEL.n_mels, TINY_MEL.n_frames) - 4
    with torch.no_grad():
        assert loaded(x).shape == (2, TINY_MEL.num_samples)


def test_coarse_projections_need_an_overlapping_hop():
    V = NeuralVocoder(VocoderConfig.tiny())
    with pytest.raises(ValueError, match="overlap-add"):
        V.schedule = dataclasses.replace(VocoderSchedule.tiny(), coarse_hop_factor=4)  # 4 x 128 > 512 / 2
    with pytest.raises(ValueError, match="overlap-add"):
        NeuralVocoder(VocoderConfig.tiny(), VocoderSchedule())
    V.schedule = dataclasses.replace(VocoderSchedule.tiny(), coarse_hop_factor=4, coarse_projections=0)  # unused
    assert V.schedule.coarse_hop_factor == 4
    assert NeuralVocoder(VocoderConfig.shipped()).schedule == VocoderSchedule()


def test_a_header_with_the_step_counts_in_the_config_still_loads(tmp_path):
    """Older vocoder files keep the inference step counts inside the architecture config (the shipped
    one does): they load, the counts are dropped, and the schedule is chosen at load time."""
    V = NeuralVocoder(VocoderConfig.tiny())
    path = tmp_path / "old.safetensors"
    old_config = {**dataclasses.asdict(V.cfg), **dataclasses.asdict(VocoderSchedule(refine_iters=3))}
    checkpoint.save_tensors(path, V.state_dict(), {"kind": "NeuralVocoder", "config": old_config})
    loaded = load_vocoder(path)
    assert loaded.cfg == V.cfg and loaded.schedule == VocoderSchedule.tiny()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in V.state_dict().items())
    with pytest.raises(CheckpointError, match="unknown config fields"):
        checkpoint.save_tensors(path, V.state_dict(), {"kind": "NeuralVocoder", "config": {**old_config, "x": 1}})
        load_vocoder(path)


def test_coarse_over_relaxed_projections_lower_the_mel_error():
    mel = TINY_MEL
    target, off = _tone_and_a_wrong_wave(mel)
    V = NeuralVocoder(VocoderConfig.tiny(mel))
    error = lambda w: (LogMel(mel)(w) - target).abs().mean()  # noqa: E731
    once = V.bands.project(off, target, hop_factor=2, power=1.5)
    more = V.bands.project(V.bands.project(once, target, hop_factor=2, power=1.5), target)
    assert error(more) < error(once) < 0.6 * error(off)


def test_sparse_filterbank_path_equals_the_dense_one():
    """Inference on the CPU multiplies by a sparse filterbank; training (autograd) by the dense one."""
    V = NeuralVocoder(VocoderConfig.shipped())
    mag = torch.rand(2, 7, V.cfg.mel.n_freqs)
    with torch.no_grad():
        sparse_mel, sparse_back = V.bands.to_mel(mag), V.bands.from_mel(torch.rand(2, 7, V.cfg.mel.n_mels).mul(0).add(1))
    with torch.enable_grad():
        dense_mel = V.bands.to_mel(mag.requires_grad_())
        dense_back = V.bands.from_mel(torch.ones(2, 7, V.cfg.mel.n_mels))
    assert torch.allclose(sparse_mel, dense_mel.detach(), rtol=1e-4, atol=1e-6)
    assert torch.allclose(sparse_back, dense_back, rtol=1e-4, atol=1e-6)
    assert torch.allclose(dense_mel.detach(), torch.matmul(mag.detach(), LogMel(V.cfg.mel).fb), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("key", [25, 36])
def test_parabolic_peak_frequency_survives_a_blurred_lobe(key):
    """G's renders smear each partial over neighbouring bins; the measured-curvature fit still places a
    low partial (the window-curvature "slope" estimate reads it ~0.2 bins off: a semitone at key 25)."""
    import torch.nn.functional as F

    sr, n = 16000, 16000
    t = np.arange(n) / sr
    f0 = 440 * 2 ** ((key - 69) / 12)
    tone = torch.from_numpy(sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 8)).astype(np.float32))[None]
    cfg = VocoderConfig.shipped()
    spec = torch.stft(tone, cfg.n_fft, cfg.hop_length, cfg.n_fft, torch.hann_window(cfg.n_fft), center=True,
                      return_complex=True)
    mag = spec.abs().transpose(1, 2)[:, 60:61]  # one frame, frames first
    blurred = F.conv1d(mag.reshape(1, 1, -1), torch.tensor([[[0.25, 0.5, 0.25]]]), padding=1).reshape(mag.shape)
    log_mag = torch.log(blurred.clamp_min(1e-5))
    k0 = f0 * cfg.n_fft / sr
    peak = int(log_mag[0, 0, int(k0) - 1:int(k0) + 2].argmax()) + int(k0) - 1
    errors = {}
    for mode in ("parabolic", "slope"):
        V = NeuralVocoder(dataclasses.replace(cfg, peak_interpolation=mode))
        errors[mode] = abs(peak + float(V.locked_phase.peak_shift(log_mag)[0, 0, peak]) - k0)
    assert errors["parabolic"] < 0.02 < 0.1 < errors["slope"]


@pytest.mark.parametrize("hop_factor", [1, 2, 4])
def test_inverse_stft_equals_torch_istft(hop_factor):
    V = NeuralVocoder(VocoderConfig.shipped())
    hop = SHIPPED_MEL.hop_length * hop_factor
    wave = torch.randn(2, 4000)
    window = V.bands.window
    spec = torch.stft(wave, 2048, hop, 2048, window, center=True, return_complex=True)
    spec = spec * torch.rand(spec.shape)  # not a consistent spectrum: the overlap-add matters
    for length in (4000, 3900):
        ours = V.inverse_stft(spec.transpose(1, 2), hop, length, window, "mel")
        theirs = torch.istft(spec, 2048, hop, 2048, window, center=True, length=length)
        assert ours.shape == theirs.shape
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_nearest_peak_matches_a_direct_search():
    from models.signal.phase import nearest_peak

    torch.manual_seed(1)
    x = torch.randn(3, 5, 40).cumsum(-1)  # random walks: long slopes and plateaus of peaks
    x[0, 0] = 1.0  # all equal: the last bin is the only peak
    got = nearest_peak(x)
    for row, peaks in zip(x.reshape(-1, 40), got.reshape(-1, 40)):
        is_peak = [(k == 0 or row[k] >= row[k - 1]) and (k == 39 or row[k] > row[k + 1]) for k in range(40)]
        is_peak[0] = bool(row[0] > row[1])
        positions = [k for k in range(40) if is_peak[k]]
        want = [min(positions, key=lambda p: (abs(p - k), p)) for k in range(40)]
        assert peaks.tolist() == want



@pytest.mark.parametrize("tolerance", [0.0, 0.15])
def test_a_flat_top_flipping_between_bins_keeps_its_frequency(tolerance):
    """A partial halfway between bins 4 and 5 whose top tilts with its level (as the vocoder's own
    magnitudes wobble on a low e-piano note): the peak flips between the bins in step with the
    level's slope. Carrying the timing term across each flip walks the frequency off (tolerance 0);
    carrying the lobe term alone keeps it."""
    cfg = dataclasses.replace(VocoderConfig.shipped(), peak_move_tolerance=tolerance)
    V = NeuralVocoder(cfg)
    frames, K = 200, 64
    t = torch.arange(frames, dtype=torch.float32)[:, None]
    k = torch.arange(K, dtype=torch.float32)
    k0 = 4.5 + 0.08 * torch.cos(2 * math.pi * t / 10)  # crosses 4.5: the peak flips 4 <-> 5
    level = 0.3 * torch.sin(2 * math.pi * t / 10)  # rising while the top leans to bin 5
    log_mag = (level - 1.2 * (k - k0) ** 2)[None]
    phase = V.locked_phase(log_mag)[0, :, 4]
    per_bin = 2 * math.pi * cfg.hop_length / cfg.n_fft  # phase advance per hop of one bin's frequency
    expected = 4.5 * per_bin
    advance = torch.remainder(phase[1:] - phase[:-1] - expected + math.pi, 2 * math.pi) - math.pi + expected
    error_bins = abs(float(advance.mean()) / per_bin - 4.5)
    if tolerance == 0.0:
        assert error_bins > 0.08  # the walk the tolerance removes (0.11 bins as measured)
    else:
        assert error_bins < 0.01
