"""`hypergan train` from the command line on a tiny data set built by `hypergan data build`."""
from __future__ import annotations

import json

import pytest

from app.cli import main
from models import checkpoint
from models.nets.features import FeatureExtractor


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "data"
    rc = main(["data", "build", "--out", str(out), "--sources", "procedural", "--procedural-count", "6",
               "--mel", "tiny", "--workers", "1", "--velocities", "100"])
    assert rc == 0
    return out


@pytest.mark.slow
def test_train_features_from_the_cli(tiny_data, tmp_path):
    out = tmp_path / "features"
    rc = main(["train", "features", "--data", str(tiny_data), "--out", str(out), "--tiny", "--minutes", "0.03",
               "--set", "batch_size=16", "log_every=5"])
    assert rc == 0
    f, cfg, meta = checkpoint.load(out / "features.safetensors", FeatureExtractor)
    assert meta["stage"] == "features" and int(meta["step"]) > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1].get("final") == 1.0


@pytest.mark.slow
def test_unknown_setting_is_a_clear_error(tiny_data, tmp_path, capsys):
    rc = main(["train", "features", "--data", str(tiny_data), "--out", str(tmp_path), "--tiny", "--set", "bogus=1"])
    assert rc == 2
    assert "unknown setting 'bogus'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_setting_for_a_network_the_stage_lacks_is_an_error(tiny_data, tmp_path, capsys):
    rc = main(["train", "features", "--data", str(tiny_data), "--out", str(tmp_path), "--tiny", "--dry-run",
               "--set", "lr=1e-3", "G.w_dim=64"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown setting 'G.w_dim'" in err and "net.h_dim" in err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    rc = main(["train", "gan", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "no dataset" in capsys.readouterr().err


@pytest.mark.slow
def test_vocoder_distill_learns_the_teachers_magnitude_and_resumes(tiny_data, tmp_path):
    import torch

    from models.nets.vocoder import NeuralVocoder, VocoderConfig
    from models.signal.mel import TINY_MEL

    torch.manual_seed(0)
    teacher = NeuralVocoder(VocoderConfig.tiny(TINY_MEL))
    with torch.no_grad():
        teacher.head.weight.normal_(0, 0.05)  # a head that is not the prior alone
    weights = tmp_path / "weights"
    checkpoint.save(weights / "vocoder.safetensors", teacher, {"step": 1})
    out = tmp_path / "distill"
    args = ["train", "vocoder-distill", "--data", str(tiny_data), "--out", str(out), "--weights", str(weights),
            "--device", "cpu", "--set", "dim=16", "intermediate_dim=32", "n_layers=1", "batch_size=8",
            "log_every=10", "eval_every=1000", "save_every=1000", "eval_batches=2"]
    assert main(args + ["--minutes", "0.15"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["head_l1"] for r in rows if "head_l1" in r]
    assert len(losses) >= 3 and losses[-1] < 0.7 * losses[0]
    student, cfg, meta = checkpoint.load(out / "vocoder.safetensors", NeuralVocoder)
    assert (cfg.dim, cfg.n_layers) == (16, 1) and cfg.mel == TINY_MEL and meta["stage"] == "vocoder-distill"
    first = int(meta["step"])
    assert main(args + ["--minutes", "0.02"]) == 0  # resumes from the state
    assert int(checkpoint.load(out / "vocoder.safetensors", NeuralVocoder)[2]["step"]) > first
