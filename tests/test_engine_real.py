"""The engine and ``hypergan render`` on the real networks at their tiny configs.

G is trained for a few dozen steps to draw harmonic tones at the requested key, so renders are
tonal rather than random; f and H stay random-init (H nudged off the identity so offsets are non-zero).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.instrument import Engine, EngineConfig
from engine.loops import seam_jump
from models.checkpoint import save
from models.nets.features import FeatureConfig, FeatureExtractor
from models.nets.generator import Generator, GeneratorConfig
from models.nets.hyper import HyperConfig, HyperNetwork
from models.signal.mel import LogMel, MelConfig
from models.signal.tones import harmonic_tone, plucked_string

# ~1 s at 16 kHz on a small grid; G's levels need n_mels and n_frames divisible by 8.
REAL_MEL = MelConfig(n_fft=512, win_length=512, hop_length=128, n_mels=32, n_frames=128)
TRAIN_NOTES = (40, 48, 55, 60, 64, 67, 72, 79)


def write_tiny_weights(folder: Path, steps: int = 40, seed: int = 0) -> Path:
    """Tiny f, G, H with G fitted briefly to harmonic tones; saved as a weights folder."""
    torch.manual_seed(seed)
    f = FeatureExtractor(FeatureConfig.tiny(REAL_MEL)).eval()
    G = Generator(GeneratorConfig.tiny(REAL_MEL))
    H = HyperNetwork(HyperConfig.tiny(G.modulated_layers(), h_dim=f.cfg.h_dim))
    with torch.no_grad():  # H starts as the identity (zero offsets); nudge it so offsets matter here
        for p in H.parameters():
            p.add_(0.05 * torch.randn_like(p))
    waves = torch.stack([torch.from_numpy(harmonic_tone(m, duration_s=1.1, decay_s=0.6)[: REAL_MEL.num_samples])
                         for m in TRAIN_NOTES])
    target = LogMel(REAL_MEL)(waves)                                   # [8, M, F]
    with torch.no_grad():
        h = f(target[:1]).expand(len(TRAIN_NOTES), -1)                 # one timbre at every pitch
    midi = torch.tensor(TRAIN_NOTES)
    z = torch.zeros(len(TRAIN_NOTES), G.cfg.z_dim)
    opt = torch.optim.Adam(G.parameters(), lr=2e-2)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(G(h, z, midi, noise_mode="const"), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"mel": REAL_MEL.to_json()}
    save(folder / "features.safetensors", f, meta)
    save(folder / "generator.safetensors", G, dict(meta, fit_loss=f"{loss.item():.3f}"))
    save(folder / "hyper.safetensors", H, meta)
    return folder


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return write_tiny_weights(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def pluck_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "pluck E3.wav"
    sf.write(path, plucked_string(52, sample_rate=44100, duration_s=1.5), 44100, subtype="PCM_16")
    return path


class CallCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        module.register_forward_hook(lambda *_: setattr(self, "n", self.n + 1))


@pytest.mark.slow
def test_real_networks_render_cache_and_mix(tiny_weights: Path, pluck_wav: Path) -> None:
    engine = Engine(tiny_weights, device="cpu", vocoder="griffinlim", num_threads=1,
                    cfg=EngineConfig(output_rate=22050, griffin_lim_iters=32))
    sample = engine.load_sample(pluck_wav)                 # load_audio + estimate_pitch
    assert sample.root_note == 52 and sample.confidence > 0.5
    assert sample.audio.samples.shape == (REAL_MEL.num_samples,)
    f_calls, h_calls = CallCounter(engine.nets.f), CallCounter(engine.nets.H)
    first = engine.render(sample, keys=range(48, 57))
    assert (f_calls.n, h_calls.n) == (2, 1)
    again = engine.render(engine.load_sample(pluck_wav), keys=range(48, 57))
    assert (f_calls.n, h_calls.n) == (2, 1)
    for midi, key in first.items():
        np.testing.assert_array_equal(key.samples, again[midi].samples)
        assert key.sample_rate == 22050 and 0 < key.loop_start < key.loop_end <= len(key.samples)
        seam, typical = seam_jump(key.samples, key.loop_start, key.loop_end)
        assert seam <= 2 * typical + 1e-6, (midi, seam, typical)
    # The fitted G is tonal: the rendered key's spectrum peaks near a harmonic of its own f0.
    key = first[55]
    spectrum = np.abs(np.fft.rfft(key.samples[:8192] * np.hanning(8192)))
    ratio = np.argmax(spectrum) * key.sample_rate / 8192 / (440 * 2 ** ((55 - 69) / 12))
    assert abs(ratio - round(ratio)) < 0.1 and round(ratio) >= 1
    other = engine.load_sample(engine.load_sample(pluck_wav).audio, midi=64.0)
    assert other.content_hash == sample.content_hash and other.root_note == 64
    tone = engine.load_sample(torch_tone(), midi=67)
    single = engine.render(tone, keys=[60, 61])
    mix_1 = engine.render(sample, tone, alpha=1.0, keys=[60, 61])
    for midi in (60, 61):
        np.testing.assert_allclose(mix_1[midi].samples, single[midi].samples, atol=1e-5)


def torch_tone():
    from models.signal.audio import Audio
    return Audio(harmonic_tone(67, duration_s=1.0, decay_s=0.5), REAL_MEL.sample_rate)


def test_hyper_refuses_a_generator_it_was_not_trained_with(tiny_weights: Path, tmp_path: Path) -> None:
    from engine.networks import load_networks
    from models.checkpoint import load, read_tensors, save_tensors, weights_digest
    from models.errors import CheckpointError
    from models.runs.state import bind_hyper

    folder = tmp_path / "w"
    folder.mkdir()
    for name in ("features", "generator"):
        (folder / f"{name}.safetensors").write_bytes((tiny_weights / f"{name}.safetensors").read_bytes())
    bind_hyper(tiny_weights / "hyper.safetensors", folder / "hyper.safetensors", tiny_weights)
    _, meta = read_tensors(folder / "hyper.safetensors")
    G = load(folder / "generator.safetensors", Generator)[0]
    assert meta["generator_digest"] == weights_digest(G) == weights_digest(G.half())  # fp32 and fp16 copies agree
    assert load_networks(folder, torch.device("cpu"), vocoder="griffinlim").H is not None
    # Another G of the same shape: H's offsets would fit its layers but not its weights.
    tensors, g_meta = read_tensors(folder / "generator.safetensors")
    tensors = {k: v + 0.01 if v.is_floating_point() else v for k, v in tensors.items()}
    save_tensors(folder / "generator.safetensors", tensors, {k: v for k, v in g_meta.items() if k != "format"})
    with pytest.raises(CheckpointError, match="trained with another generator.safetensors"):
        load_networks(folder, torch.device("cpu"), vocoder="griffinlim")


def test_quiet_recording_gets_the_same_timbre(tiny_weights: Path) -> None:
    from models.signal.audio import Audio
    engine = Engine(tiny_weights, device="cpu", vocoder="griffinlim", num_threads=1,
                    cfg=EngineConfig(output_rate=16000, griffin_lim_iters=4))
    tone = harmonic_tone(60, duration_s=1.0, decay_s=0.5)
    loud = engine.load_sample(Audio(tone, REAL_MEL.sample_rate), midi=60)
    quiet = engine.load_sample(Audio(tone * 0.02, REAL_MEL.sample_rate), midi=60)   # -34 dB
    assert loud.content_hash != quiet.content_hash
    h_loud, h_quiet = engine.timbre(loud), engine.timbre(quiet)
    assert (h_quiet - h_loud).norm() < 0.01 * h_loud.norm()   # equal up to rounding near the mel floor
