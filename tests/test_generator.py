"""G: shapes, offsets (Δ = 0 is bitwise the identity), noise modes, pitch map, checkpoint round trip."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from models import checkpoint
from models.nets.generator import Generator, GeneratorConfig
from models.nets.layers import ModulatedConv, log_mel_top
from models.signal.mel import PAPER_MEL, SHIPPED_MEL, TINY_MEL
from models.nets.pitch_template import PitchMap, harmonic_template, mel_bin_centres_hz
from models.units import N_KEYS, midi_to_hz

torch.set_num_threads(1)


def inputs(cfg: GeneratorConfig, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, cfg.h_dim, generator=g)
    z = torch.randn(batch, cfg.z_dim, generator=g)
    midi = torch.randint(21, 109, (batch,), generator=g)
    return h, z, midi


def zero_deltas(G: Generator, batch: int) -> dict[str, torch.Tensor]:
    return {name: torch.zeros(batch, *shape) for name, shape in G.modulated_layers().items()}


@pytest.mark.parametrize("mel", [TINY_MEL, dataclasses.replace(TINY_MEL, n_mels=16)], ids=["square", "rect"])
def test_tiny_output_shape_and_units(mel):
    torch.manual_seed(0)
    G = Generator(GeneratorConfig.tiny(mel))
    out = G(*inputs(G.cfg, 3))
    assert out.shape == (3, mel.n_mels, mel.n_frames)
    assert torch.isfinite(out).all()
    # Natural-log-mel units: with silent to-mel skips G returns the middle of the grid's log range.
    with torch.no_grad():
        for block in G.blocks:
            block.tomel.weight.zero_()
    middle = 0.5 * (mel.log_min + log_mel_top(mel))
    assert torch.allclose(G(*inputs(G.cfg, 2)), torch.full((2, mel.n_mels, mel.n_frames), middle), atol=1e-5)


def test_shipped_forward_batch_one():
    G = Generator(GeneratorConfig.shipped(SHIPPED_MEL)).eval()
    with torch.no_grad():
        out = G(*inputs(G.cfg, 1))
    assert out.shape == (1, SHIPPED_MEL.n_mels, SHIPPED_MEL.n_frames)
    assert G.cfg.base_shape == (4, 4)


def test_grid_not_divisible_raises():
    with pytest.raises(ValueError):
        Generator(GeneratorConfig.tiny(dataclasses.replace(TINY_MEL, n_frames=30)))


def test_modulated_layers_order_and_shapes():
    G = Generator(GeneratorConfig.tiny())
    layers = G.modulated_layers()
    names = list(layers)
    assert names == list(Generator(GeneratorConfig.tiny()).modulated_layers())  # stable
    assert layers == G.cfg.modulated_layers()  # known from the config alone
    assert names[:2] == ["b4_conv1", "b4_tomel"] and names[-1] == "b32_tomel"
    assert all("." not in n for n in names)  # usable as ModuleDict keys
    convs = []
    for name, (c_out, c_in) in layers.items():
        block = next(b for b in G.blocks if name.startswith(f"b{b.height}_"))
        mod = getattr(block, name.split("_")[1])
        conv = getattr(mod, "conv", mod)
        assert conv.weight.shape[:2] == (c_out, c_in)
        convs.append(conv)
    assert len(set(map(id, convs))) == sum(isinstance(m, ModulatedConv) for m in G.modules())  # all listed


@pytest.mark.parametrize("train_mode", [False, True])
def test_zero_deltas_bitwise_identical(train_mode):
    torch.manual_seed(1)
    G = Generator(GeneratorConfig.tiny()).train(train_mode)
    args = inputs(G.cfg, 4)
    # Training mode: "none" noise so both calls are comparable; the fused path is forced by deltas.
    mode = "none" if train_mode else None
    fused = None if not train_mode else True
    ref = G(*args, noise_mode=mode, fused=fused)
    for batch in (4, 1):  # per-sample offsets and one offset broadcast over the batch
        out = G(*args, deltas=zero_deltas(G, batch), noise_mode=mode, fused=fused)
        assert torch.equal(out, ref)


def test_eval_mode_none_and_zero_deltas_bitwise_identical_without_flags():
    torch.manual_seed(2)
    G = Generator(GeneratorConfig.tiny()).eval()
    args = inputs(G.cfg, 3)
    assert torch.equal(G(*args), G(*args, deltas=zero_deltas(G, 3)))


def test_fused_and_unfused_paths_agree():
    torch.manual_seed(3)
    G = Generator(GeneratorConfig.tiny()).train()
    args = inputs(G.cfg, 3)
    a = G(*args, noise_mode="none", fused=True)
    b = G(*args, noise_mode="none", fused=False)
    assert torch.allclose(a, b, atol=1e-4)


def test_deltas_change_output_and_carry_gradient():
    torch.manual_seed(4)
    G = Generator(GeneratorConfig.tiny()).eval()
    args = inputs(G.cfg, 2)
    deltas = {n: (0.3 * torch.randn(2, *s)).requires_grad_(True) for n, s in G.modulated_layers().items()}
    out = G(*args, deltas=deltas)
    assert not torch.allclose(out, G(*args))
    out.square().mean().backward()
    assert all(d.grad is not None and d.grad.abs().sum() > 0 for d in deltas.values())
    # The offset is per sample: sample 0's offsets do not touch sample 1.
    only0 = {n: torch.cat([d.detach()[:1], torch.zeros_like(d[:1])]) for n, d in deltas.items()}
    assert torch.equal(G(*args, deltas=only0)[1], G(*args)[1])


def test_unknown_delta_name_raises():
    G = Generator(GeneratorConfig.tiny()).eval()
    with pytest.raises(KeyError):
        G(*inputs(G.cfg, 1), deltas={"nope": torch.zeros(1, 1, 1)})


def test_noise_modes():
    torch.manual_seed(5)
    G = Generator(GeneratorConfig.tiny())
    with torch.no_grad():
        for block in G.blocks:  # untrained strengths are 0: make the noise visible
            for layer in (block.conv0, block.conv1):
                if layer is not None:
                    layer.noise_strength.fill_(0.5)
    args = inputs(G.cfg, 2)
    G.train()
    assert not torch.equal(G(*args), G(*args))  # random in training
    G.eval()
    assert torch.equal(G(*args), G(*args))  # fixed buffers at inference
    assert not torch.equal(G(*args), G(*args, noise_mode="none"))
    with pytest.raises(ValueError):
        G(*args, noise_mode="loud")


def test_pitch_and_timbre_reach_the_output():
    torch.manual_seed(6)
    G = Generator(GeneratorConfig.tiny()).eval()
    h, z, _ = inputs(G.cfg, 2)
    low, high = torch.tensor([30, 30]), torch.tensor([90, 90])
    assert (G(h, z, low) - G(h, z, high)).abs().mean() > 1e-3
    assert (G(h, z, low)[0] - G(h[[1, 1]], z, low)[0]).abs().mean() > 1e-3


def test_checkpoint_round_trip_bitwise(tmp_path):
    torch.manual_seed(7)
    G = Generator(GeneratorConfig.tiny(dataclasses.replace(TINY_MEL, n_mels=16))).eval()
    path = tmp_path / "G.safetensors"
    checkpoint.save(path, G, {"step": 3})
    G2, cfg, meta = checkpoint.load(path, Generator)
    G2.eval()
    assert cfg == G.cfg and meta["step"] == "3"
    args = inputs(G.cfg, 2)
    assert torch.equal(G(*args), G2(*args))


def test_harmonic_template_peaks_at_harmonics_and_keys_differ():
    tpl = harmonic_template(SHIPPED_MEL)
    assert tpl.shape == (N_KEYS, SHIPPED_MEL.n_mels)
    assert torch.allclose(tpl.mean(1), torch.zeros(N_KEYS), atol=1e-4)
    centres = mel_bin_centres_hz(SHIPPED_MEL)
    f0 = float(midi_to_hz(69))
    at = lambda hz: int((centres - hz).abs().argmin())  # noqa: E731
    row = tpl[69 - 21]
    for k in (1, 2, 3):
        assert row[at(k * f0)] > row[at((k + 0.5) * f0)] + 1.0
    # Low keys stay distinct on the shipped grid (the probe's 128-mel template was nearly flat there).
    unit = torch.nn.functional.normalize(tpl, dim=1)
    assert (unit[1:22] * unit[:21]).sum(1).max() < 0.95
    maps = PitchMap(SHIPPED_MEL)(torch.tensor([21, 108]))
    assert maps.shape == (2, 3, SHIPPED_MEL.n_mels)
    assert torch.equal(maps[0, 2], maps[1, 2]) and not torch.equal(maps[0, 1], maps[1, 1])


def test_training_steps_lower_the_loss():
    """G can fit fixed targets: gradients reach every part that matters (mapping, synthesis, to-mel)."""
    torch.manual_seed(8)
    G = Generator(GeneratorConfig.tiny()).train()
    h, z, midi = inputs(G.cfg, 4)
    target = torch.randn(4, TINY_MEL.n_mels, TINY_MEL.n_frames) - 5
    opt = torch.optim.Adam(G.parameters(), lr=1e-2, betas=(0.0, 0.99))
    losses = []
    for _ in range(30):
        loss = (G(h, z, midi, noise_mode="none") - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("with_deltas", [False, True])
def test_autocast_bf16_runs(with_deltas):
    torch.manual_seed(9)
    G = Generator(GeneratorConfig.tiny()).train()
    args = inputs(G.cfg, 2)
    deltas = zero_deltas(G, 2) if with_deltas else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = G(*args, deltas=deltas)
    out.float().mean().backward()
    assert torch.isfinite(out.float()).all()


@pytest.mark.filterwarnings("ignore:At least one mel filterbank")
@pytest.mark.parametrize("mel", [PAPER_MEL, dataclasses.replace(SHIPPED_MEL, n_frames=128)], ids=["paper", "tall"])
def test_other_grids_generator_and_discriminator(mel):
    from models.nets.discriminator import Discriminator, DiscriminatorConfig

    G = Generator(GeneratorConfig.tiny(mel)).eval()
    D = Discriminator(DiscriminatorConfig.tiny(mel))
    with torch.no_grad():
        x = G(*inputs(G.cfg, 1))
        assert x.shape == (1, mel.n_mels, mel.n_frames)
        assert D(x, torch.tensor([60]), torch.randn(1, D.cfg.h_dim)).shape == (1,)
    assert min(G.cfg.channels(i) for i in range(G.cfg.n_levels)) >= G.cfg.channel_min


def test_fp16_shipping_round_trip_is_close(tmp_path):
    torch.manual_seed(10)
    G = Generator(GeneratorConfig.tiny()).eval()
    checkpoint.save(tmp_path / "G16.safetensors", G, {"step": 1}, dtype=torch.float16)
    G16, _, _ = checkpoint.load(tmp_path / "G16.safetensors", Generator)
    args = inputs(G.cfg, 2)
    assert (G(*args) - G16.eval()(*args)).abs().max() < 0.05  # log units
