"""Moving training state: float16 casting for carrying, shipping G_ema from a GAN state."""
from __future__ import annotations

import torch

from models import checkpoint
from models.nets.generator import Generator
from models.signal.mel import TINY_MEL
from models.runs import state as state_tools
from models.train import resume


def _gan_like_state(tmp_path):
    torch.manual_seed(0)
    cfg = Generator.Config.tiny(TINY_MEL)
    G, ema = Generator(cfg), Generator(cfg)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.01)
    meta = {"stage": "gan", "step": 7, "mel": TINY_MEL.to_json(), "g_config": checkpoint.config_to_json(cfg)}
    resume.save_state(tmp_path / "run", "state", {"G": G, "ema": ema}, meta)
    return G, ema


def test_cast_state_halves_size_and_restores_into_fp32(tmp_path):
    G, _ = _gan_like_state(tmp_path)
    state_tools.cast_state(tmp_path / "run", tmp_path / "half", torch.float16)
    tensors, meta = resume.load_state(tmp_path / "half", "state")
    assert meta["step"] == "7" and meta["state_dtype"] == "float16"
    assert all(v.dtype == torch.float16 for v in tensors.values() if v.is_floating_point())
    full = sum(p.stat().st_size for p in (tmp_path / "run").glob("*.safetensors"))
    half = sum(p.stat().st_size for p in (tmp_path / "half").glob("*.safetensors"))
    assert half < 0.6 * full
    G2 = Generator(G.cfg)
    resume.restore(G2, tensors, "G")  # cast back to the net's float32
    for a, b in zip(G.state_dict().values(), G2.state_dict().values()):
        assert b.dtype == a.dtype
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4)


def test_cast_keeps_optimiser_state_and_random_streams_or_drops_them(tmp_path):
    tensors = {"G.w": torch.randn(4, 4), "optim.G.w.exp_avg_sq": torch.rand(4, 4).to(torch.bfloat16),
               "rng.0.numpy_extra": torch.tensor([3.0, 0.0, 0.123456789], dtype=torch.float64)}
    resume.save_tensor_state(tmp_path / "run", "state", tensors, {"step": 5, "optim": "{}", "scalers": "{}"})
    state_tools.cast_state(tmp_path / "run", tmp_path / "half", torch.float16)
    half, meta = resume.load_state(tmp_path / "half", "state")
    assert half["G.w"].dtype == torch.float16 and "optim" in meta
    assert torch.equal(half["optim.G.w.exp_avg_sq"], tensors["optim.G.w.exp_avg_sq"])
    assert torch.equal(half["rng.0.numpy_extra"], tensors["rng.0.numpy_extra"])
    state_tools.main(["cast", str(tmp_path / "run"), str(tmp_path / "bare"), "--weights-only"])
    bare, meta = resume.load_state(tmp_path / "bare", "state")
    assert list(bare) == ["G.w"] and "optim" not in meta and meta["step"] == "5"


def test_ship_generator_writes_ema_in_fp16(tmp_path):
    G, ema = _gan_like_state(tmp_path)
    out = state_tools.ship_generator(tmp_path / "run", tmp_path / "generator.safetensors")
    tensors, meta = checkpoint.read_tensors(out)
    assert meta["kind"] == "Generator" and meta["step"] == "7"
    assert all(v.dtype == torch.float16 for v in tensors.values() if v.is_floating_point())
    shipped, _, _ = checkpoint.load(out, Generator)
    name = next(k for k, v in ema.state_dict().items() if v.is_floating_point() and v.numel() > 16)
    assert torch.allclose(shipped.state_dict()[name], ema.state_dict()[name].half().float())
    assert not torch.allclose(shipped.state_dict()[name], G.state_dict()[name].half().float())


def test_gan_resume_refuses_another_f(tmp_path):
    import pytest

    from models.errors import UserError
    from models.train.gan import check_same_features

    check_same_features({"features_step": "3623"}, "3623", tmp_path)
    check_same_features({}, "1", tmp_path)  # states from before the check: nothing to compare
    with pytest.raises(UserError, match="trained with f of step 3623"):
        check_same_features({"features_step": "3623"}, "9000", tmp_path)


def test_ship_vocoder_writes_the_state_net_in_fp16_and_refuses_other_states(tmp_path):
    import pytest

    from models.errors import UserError
    from models.nets.vocoder import NeuralVocoder

    torch.manual_seed(0)
    cfg = NeuralVocoder.Config.tiny(TINY_MEL)
    V = NeuralVocoder(cfg)
    meta = {"stage": "vocoder", "step": 11, "mel": TINY_MEL.to_json(), "v_config": checkpoint.config_to_json(cfg)}
    resume.save_state(tmp_path / "voc", "state", {"V": V}, meta)
    out = state_tools.ship_vocoder(tmp_path / "voc", tmp_path / "vocoder.safetensors")
    shipped, _, shipped_meta = checkpoint.load(out, NeuralVocoder)
    assert shipped_meta["step"] == "11" and shipped.cfg == cfg
    name = next(k for k, v in V.state_dict().items() if v.is_floating_point() and v.numel() > 16)
    assert torch.allclose(shipped.state_dict()[name], V.state_dict()[name].half().float())
    _gan_like_state(tmp_path)
    with pytest.raises(UserError, match="no vocoder state"):
        state_tools.ship_vocoder(tmp_path / "run", tmp_path / "v2.safetensors")
