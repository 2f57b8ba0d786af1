"""S3/S4 on the tiny synthetic NoteSet with tiny random f, G and D (CPU, seconds)."""
from __future__ import annotations

import json

import pytest
import torch

from models import checkpoint
from models.nets.classifiers import InstrumentClassifier
from models.nets.discriminator import Discriminator
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.nets.hyper import HyperNetwork
from models.signal.mel import TINY_MEL
from models.runs import state as state_tools
from models.train import common, hyper_adv, hyper_pre
from models.data.tiny import tiny_noteset


@pytest.fixture(scope="module")
def data():
    return tiny_noteset()


@pytest.fixture
def weights(tmp_path, data):
    """Frozen tiny f, G and D as the earlier stages would leave them in a weights folder."""
    torch.manual_seed(0)
    f = FeatureExtractor(FeatureExtractor.Config.tiny(TINY_MEL, n_instruments=len(data.instruments)))
    G = Generator(Generator.Config.tiny(TINY_MEL))
    D = Discriminator(Discriminator.Config.tiny(TINY_MEL))
    folder = tmp_path / "weights"
    checkpoint.save(folder / "features.safetensors", f)
    checkpoint.save(folder / "generator.safetensors", G)
    checkpoint.save(folder / "discriminator.safetensors", D)
    checkpoint.save(folder / "instrument_classifier.safetensors",
                    InstrumentClassifier(InstrumentClassifier.Config.tiny(TINY_MEL)))
    return folder


def _opts(weights, steps: int, *overrides: str, init=None) -> common.RunOptions:
    return common.RunOptions(minutes=5, max_steps=steps, tiny=True, device="cpu", weights=str(weights), init=init,
                             overrides=("log_every=10", "eval_every=1000", "save_every=1000", *overrides))


def _fixed_batch(data, weights, batch: int = 16) -> hyper_pre.HyperBatch:
    """Own-pitch batch of training notes: the reconstruction term always counts."""
    f, _ = hyper_pre.load_frozen(weights, torch.device("cpu"))
    notes = common.DeviceNotes(data, torch.device("cpu"), splits=(0,))
    idx = torch.arange(0, len(notes), len(notes) // batch)[:batch]
    x, p = notes.x(idx), notes.pitch[idx]
    with torch.no_grad():
        h = f(x)
    return hyper_pre.HyperBatch(h, x, p, x, p, torch.ones(len(idx), dtype=torch.bool))


@torch.no_grad()
def _l_pre(weights, H, b: hyper_pre.HyperBatch) -> float:
    f, G = hyper_pre.load_frozen(weights, torch.device("cpu"))
    x_fine = hyper_pre.render_fine(G, f, H, b)
    return float(hyper_pre.pre_loss(b.h, f(x_fine), b.x, x_fine, b.own, 1.0, 100.0)["loss_pre"])


def test_pre_loss_terms():
    h, x = torch.ones(2, 4), torch.zeros(2, 3, 5)
    own = torch.tensor([True, False])
    out = hyper_pre.pre_loss(h, h + 1, x, x + 2, own, lambda_timbre=1.0, lambda_recon=100.0, relative=False)
    # per sample: 1 * 1 + 100 * 4 * own -> mean of (401, 1)
    assert float(out["loss_pre"]) == pytest.approx(201.0)
    assert float(out["recon"]) == pytest.approx(4.0) and float(out["timbre"]) == pytest.approx(1.0)


def test_batches_follow_p_recon(data, weights):
    f, _ = hyper_pre.load_frozen(weights, torch.device("cpu"))
    hd = hyper_pre.HyperData(common.DeviceNotes(data, torch.device("cpu")), f, knn_k=5)
    assert not f.training
    b = hd.sample(400, p_recon=0.2, gen=torch.Generator().manual_seed(0))
    assert 0.1 < b.own.float().mean() < 0.3
    assert torch.equal(b.x_t[b.own], b.x[b.own]) and torch.equal(b.p_t[b.own], b.p[b.own])
    assert (b.p_t[~b.own] != b.p[~b.own]).any()


def test_augmented_inputs_condition_g_and_h_while_targets_stay_clean(data, weights):
    f, _ = hyper_pre.load_frozen(weights, torch.device("cpu"))
    hd = hyper_pre.HyperData(common.DeviceNotes(data, torch.device("cpu")), f, knn_k=5)
    clean = hd.sample(64, p_recon=0.2, gen=torch.Generator().manual_seed(0))
    assert clean.h_in is None and clean.cond is clean.h
    b = hd.sample(64, p_recon=0.2, gen=torch.Generator().manual_seed(0), p_augment=0.5)
    assert torch.equal(b.h, clean.h) and torch.equal(b.x, clean.x)  # targets: the clean notes
    moved = (b.h_in - b.h).norm(dim=1) > 1e-3 * b.h.norm(dim=1)
    assert 0.25 < moved.float().mean() < 0.75 and torch.equal(b.cond, b.h_in)


@pytest.mark.slow
def test_hyper_pre_lowers_l_pre_and_resumes(data, weights, tmp_path):
    out = tmp_path / "run"
    b = _fixed_batch(data, weights)
    final = hyper_pre.train(data, out, _opts(weights, 80, "lr=2e-3", "p_recon=0.5"))
    H, cfg, meta = checkpoint.load(out / "hyper_pre.safetensors", HyperNetwork)
    assert meta["step"] == "80" and meta["stage"] == "hyper-pre"
    H0 = HyperNetwork(cfg)  # identity at init: the loss of G alone
    before, after = _l_pre(weights, H0, b), _l_pre(weights, H, b)
    assert after < 0.8 * before, (before, after)
    assert final["valid_recon_gh"] < final["valid_recon_g"]
    # the f-independent timbre measure (evaluation classifier features) is logged for both
    assert -1 <= final["valid_cls_cos_other_gh"] <= 1 and -1 <= final["valid_cls_cos_g"] <= 1
    assert (out / "mels_latest.png").stat().st_size > 100
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss_pre" in r for r in rows)
    # Resume: the state carries on from step 80.
    hyper_pre.train(data, out, _opts(weights, 10))
    assert checkpoint.load(out / "hyper_pre.safetensors", HyperNetwork)[2]["step"] == "90"


@pytest.mark.slow
def test_hyper_adv_runs_from_hyper_pre(data, weights, tmp_path):
    hyper_pre.train(data, tmp_path / "pre", _opts(weights, 5, "lambda_timbre=7"))
    init = tmp_path / "pre" / "hyper_pre.safetensors"
    hyper_adv.train(data, tmp_path / "adv", _opts(weights, 20, "r1_every=4", init=str(init)))
    H, _, meta = checkpoint.load(tmp_path / "adv" / "hyper.safetensors", HyperNetwork)
    assert meta["stage"] == "hyper-adv" and meta["step"] == "20"
    # unset S4 weights follow S3's with the paper's ratios (20 x timbre, 2 x reconstruction)
    adv_cfg = json.loads(meta["train_config"])
    assert adv_cfg["lambda_timbre"] == pytest.approx(140.0) and adv_cfg["lambda_recon"] == pytest.approx(200.0)
    # the resume state ships as the float16 hyper.safetensors the engine loads
    shipped = state_tools.ship_hyper(tmp_path / "adv", tmp_path / "hyper16.safetensors")
    H16, _, meta16 = checkpoint.load(shipped, HyperNetwork)
    assert meta16["stage"] == "hyper-adv"
    for a, b in zip(H.state_dict().values(), H16.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)
    H_pre = checkpoint.load(init, HyperNetwork)[0]
    assert any(not torch.equal(a, b) for a, b in zip(H.state_dict().values(), H_pre.state_dict().values()))
    rows = [json.loads(line) for line in (tmp_path / "adv" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "loss_d" in r]
    assert logged and all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_h_adv"], r["loss_pre"]])).all()
                          for r in logged)
    assert any("r1" in r for r in logged)
