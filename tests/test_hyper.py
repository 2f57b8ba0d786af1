"""H against a small fake G/f of our own (the contract: G(h, z, midi, deltas), G.modulated_layers())."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from models import checkpoint
from models.nets.hyper import HyperConfig, HyperNetwork, add_deltas, refine, select_layers


@dataclass(frozen=True)
class FakeGConfig:
    h_dim: int = 8
    z_dim: int = 4
    channels: int = 8
    n_mels: int = 16
    n_frames: int = 16


class _ModConv(nn.Module):
    """Modulated conv with demodulation; ``delta [B, C_out, C_in]`` scales the weight by (1 + delta)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.affine = nn.Linear(w_dim, c_in)
        nn.init.ones_(self.affine.bias)
        self.demod = c_out > 1

    def forward(self, x: torch.Tensor, w: torch.Tensor, delta: torch.Tensor | None) -> torch.Tensor:
        b, c_in, height, width = x.shape
        weight = self.weight[None]  # [1, C_out, C_in, k, k]
        if delta is not None:
            weight = weight * (1 + delta[..., None, None])  # [B, C_out, C_in, k, k]
        weight = weight * self.affine(w)[:, None, :, None, None]
        if self.demod:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        weight = weight.expand(b, -1, -1, -1, -1)
        out = nn.functional.conv2d(x.reshape(1, b * c_in, height, width), weight.reshape(-1, c_in, *weight.shape[3:]),
                                   padding=weight.shape[-1] // 2, groups=b)
        return out.view(b, -1, height, width)


class FakeGenerator(nn.Module):
    """Two resolutions of modulated convs plus a to-mel output; pitch enters the style."""

    Config = FakeGConfig

    def __init__(self, cfg: FakeGConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.pitch = nn.Embedding(88, 8)
        self.mapping = nn.Sequential(nn.Linear(cfg.h_dim + cfg.z_dim + 8, 16), nn.LeakyReLU(0.2))
        self.const = nn.Parameter(torch.randn(1, c, 4, 4))
        # Dotted names, as a real G's module paths would be; H must treat them as opaque keys.
        self.names = ("b4.conv", "b8.conv0", "b8.conv1", "b8.to_mel")
        self.convs = nn.ModuleList([_ModConv(c, c, 16, 3), _ModConv(c, c, 16, 3), _ModConv(c, c // 2, 16, 3),
                                    _ModConv(c // 2, 1, 16, 1)])

    def modulated_layers(self) -> dict[str, tuple[int, int]]:
        return {name: tuple(conv.weight.shape[:2]) for name, conv in zip(self.names, self.convs)}

    def forward(self, h, z, midi, deltas=None):
        deltas = deltas or {}
        w = self.mapping(torch.cat([h, z, self.pitch(midi - 21)], dim=1))
        x = self.const.expand(h.shape[0], -1, -1, -1)
        for name, conv in zip(self.names, self.convs):
            if name == "b8.conv0":
                x = nn.functional.interpolate(x, scale_factor=2)
            x = conv(x, w, deltas.get(name))
            if not name.endswith("to_mel"):
                x = nn.functional.leaky_relu(x, 0.2)
        return nn.functional.interpolate(x, size=(self.cfg.n_mels, self.cfg.n_frames))[:, 0]


class FakeFeatures(nn.Module):
    def __init__(self, h_dim: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(2),
                                 nn.Flatten(), nn.Linear(16, h_dim))

    def forward(self, x):
        return self.net(x[:, None])


def _nets(seed: int = 0, **hyper_kwargs):
    torch.manual_seed(seed)
    G, f = FakeGenerator(FakeGConfig()), FakeFeatures()
    cfg = HyperConfig.tiny(G.modulated_layers(), h_dim=8)
    if hyper_kwargs:
        cfg = HyperConfig(**{**cfg.__dict__, **hyper_kwargs})
    return G, f, HyperNetwork(cfg)


def _inputs(batch: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 8, generator=gen), torch.randint(21, 109, (batch,), generator=gen)


def test_select_layers_skips_coarse_and_to_mel():
    layers = FakeGenerator(FakeGConfig()).modulated_layers()
    assert select_layers(layers, skip_coarse=0) == ("b4.conv", "b8.conv0", "b8.conv1")
    assert select_layers(layers, skip_coarse=1) == ("b8.conv0", "b8.conv1")


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("rank", [1, 3])
def test_delta_shapes(shared, rank):
    G, f, H = _nets(shared_heads=shared, rank=rank)
    h, _ = _inputs()
    deltas = H(h, h + 0.1)
    layers = G.modulated_layers()
    assert list(deltas) == list(H.cfg.layers)
    for name, delta in deltas.items():
        assert delta.shape == (3, *layers[name])
    # One head per distinct shape when shared: b4.conv and b8.conv0 are both 8x8.
    assert len(H.heads) == (2 if shared else 3)


def test_shared_heads_are_smaller():
    count = lambda H: sum(p.numel() for p in H.parameters())  # noqa: E731
    assert count(_nets(shared_heads=True)[2]) < count(_nets(shared_heads=False)[2])


def test_init_is_identity():
    G, f, H = _nets()
    h, midi = _inputs()
    deltas = refine(G, f, H, h, midi)
    assert max(d.abs().max().item() for d in deltas.values()) < 1e-3
    z = torch.zeros(3, G.cfg.z_dim)
    torch.testing.assert_close(G(h, z, midi, deltas), G(h, z, midi), rtol=1e-5, atol=1e-5)


def test_init_is_near_identity_with_random_init():
    G, f, H = _nets(init_std=1e-5)
    h, midi = _inputs()
    deltas = refine(G, f, H, h, midi)
    assert 0 < max(d.abs().max().item() for d in deltas.values()) < 1e-3


def test_gradient_reaches_every_part_of_h_through_g():
    G, f, H = _nets()
    G.requires_grad_(False)
    f.requires_grad_(False)
    h, midi = _inputs()
    z = torch.zeros(3, G.cfg.z_dim)
    target = torch.randn(3, 16, 16)
    opt = torch.optim.SGD(H.parameters(), lr=0.1)
    for step in range(2):
        opt.zero_grad()
        loss = (G(h, z, midi, refine(G, f, H, h, midi)) - target).square().mean()
        loss.backward()
        opt.step()
    # After one step A is non-zero, so the second backward reaches the MLP, embeddings and B heads too.
    for name, p in H.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in G.parameters())


def test_h_learns_a_teacher_offset():
    """H can fit the weights of a G whose offsets were fixed at random (a reconstruction it must find)."""
    G, f, H = _nets(rank=2)
    G.requires_grad_(False)
    f.requires_grad_(False)
    h, midi = _inputs(batch=4)
    z = torch.zeros(4, G.cfg.z_dim)
    gen = torch.Generator().manual_seed(5)
    teacher = {n: 0.5 * torch.randn(4, *s, generator=gen) for n, s in zip(H.cfg.layers, H.cfg.shapes)}
    with torch.no_grad():
        target = G(h, z, midi, teacher)
    opt = torch.optim.Adam(H.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = (G(h, z, midi, refine(G, f, H, h, midi)) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_two_passes_accumulate_offsets():
    G, f, H = _nets(init_std=0.05)
    h, midi = _inputs()
    one = refine(G, f, H, h, midi, n_passes=1)
    two = refine(G, f, H, h, midi, n_passes=2)
    assert set(one) == set(two)
    assert all(not torch.allclose(one[k], two[k]) for k in one)
    assert add_deltas(None, one).keys() == one.keys()


def test_checkpoint_round_trip(tmp_path):
    G, f, H = _nets(init_std=0.05, shared_heads=False)
    h, _ = _inputs()
    checkpoint.save(tmp_path / "H.safetensors", H, {"step": 3})
    H2, cfg, meta = checkpoint.load(tmp_path / "H.safetensors", HyperNetwork)
    assert cfg == H.cfg and meta["step"] == "3"
    a, b = H(h, h), H2(h, h)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        HyperConfig(layers=("a", "b"), shapes=((2, 2),))
