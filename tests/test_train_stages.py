"""Training stages on a tiny synthetic set, on the CPU: loss goes down, state resumes, DDP agrees."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from models import checkpoint
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.train import common, eval_classifiers, features, gan, resume
from models.data.tiny import tiny_noteset


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def noteset():
    return tiny_noteset()


@pytest.fixture(scope="module")
def features_run(noteset, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    overrides = ("batch_size=32", "log_every=20", "eval_every=1000", "save_every=1000", "lr=3e-3")
    final = features.train(noteset, out, common.RunOptions(minutes=5, max_steps=160, tiny=True, overrides=overrides,
                                                           device="cpu"))
    return out, final


@pytest.mark.slow
def test_features_stage_learns_instruments(features_run):
    out, final = features_run
    rows = [r for r in metrics(out) if "loss_inst" in r]
    assert rows[-1]["loss_inst"] < rows[0]["loss_inst"] * 0.7
    assert final["inst_acc_holdout"] > 0.5
    assert {"family_acc_unseen", "pitch_probe_acc"} <= set(final)
    f, cfg, meta = checkpoint.load(out / "features.safetensors", FeatureExtractor)
    assert int(meta["step"]) == 160


@pytest.mark.slow
def test_features_stage_resumes_with_a_fresh_adversary(noteset, features_run, tmp_path):
    out = tmp_path / "features"
    out.mkdir()
    for shard in features_run[0].glob("state-*.safetensors"):
        (out / shard.name).write_bytes(shard.read_bytes())
    overrides = ("batch_size=32", "log_every=5", "eval_every=1000", "save_every=1000", "head_reset_every=170")
    final = features.train(noteset, out, common.RunOptions(minutes=5, max_steps=20, tiny=True, overrides=overrides,
                                                           device="cpu"))
    assert int(resume.load_state(out, "state")[1]["step"]) == 180
    rows = [r for r in metrics(out) if "loss_inst" in r]
    assert rows[0]["step"] == 165 and {"adv_acc", "loss_pitch_adv"} <= set(rows[0])
    assert {"pitch_probe_acc", "pitch_probe_acc_holdout", "pitch_head_acc_unseen"} <= set(final)


@pytest.mark.slow
def test_eval_classifiers_stage_lowers_losses(noteset, tmp_path):
    overrides = ("batch_size=32", "log_every=20", "eval_every=1000", "save_every=1000", "lr=3e-3")
    final = eval_classifiers.train(noteset, tmp_path, common.RunOptions(minutes=5, max_steps=120, tiny=True,
                                                                      overrides=overrides, device="cpu"))
    rows = [r for r in metrics(tmp_path) if "loss_pitch" in r]
    assert rows[-1]["loss_pitch"] < rows[0]["loss_pitch"]
    assert rows[-1]["loss_inst"] < rows[0]["loss_inst"]
    assert "pitch_acc_unseen" in final
    assert (tmp_path / "pitch_classifier.safetensors").is_file()


@pytest.mark.slow
def test_gan_stage_runs_and_resumes_step_count(noteset, features_run, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "features.safetensors").write_bytes((features_run[0] / "features.safetensors").read_bytes())
    out = tmp_path / "gan"
    overrides = ("batch_size=8", "log_every=5", "eval_every=1000", "save_every=1000", "knn_k=5", "r1_every=4")
    opts = common.RunOptions(minutes=5, max_steps=12, tiny=True, overrides=overrides, device="cpu", weights=str(weights))
    final = gan.train(noteset, out, opts)
    assert {"timbre_id_gen", "timbre_id_real"} <= set(final)
    assert (out / "mels_latest.png").read_bytes()[:4] == b"\x89PNG"
    state1 = resume.load_state(out, "state")
    assert int(state1[1]["step"]) == 12
    gan.train(noteset, out, common.RunOptions(**{**opts.__dict__, "max_steps": 5}))
    tensors, meta = resume.load_state(out, "state")
    assert int(meta["step"]) == 17
    G, _, gmeta = checkpoint.load(out / "generator.safetensors", Generator)
    assert int(gmeta["step"]) == 17
    rows = [r for r in metrics(out) if "loss_d" in r]
    assert all(torch.isfinite(torch.tensor(r["loss_d"])) for r in rows)


def _ddp_worker(rank: int, world: int, init_file: str, x: torch.Tensor, inst: torch.Tensor, pitch: torch.Tensor,
                result: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    f = FeatureExtractor(FeatureExtractor.Config.tiny(n_instruments=6))
    d = common.Dist(rank=rank, world_size=world)
    f_train = common.wrap_ddp(f, d)
    opt = torch.optim.SGD(f.parameters(), lr=0.1)  # SGD: parameters move by the gradient itself
    half = len(x) // world
    part = slice(rank * half, (rank + 1) * half)
    features.train_step(f_train, f, opt, x[part], inst[part], pitch[part], features.FeaturesTrainConfig(),
                        torch.device("cpu"))
    if rank == 0:
        checkpoint.save(result, f)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_with_two_gloo_processes_matches_one_process(noteset, tmp_path):
    torch.manual_seed(1)
    idx = torch.randperm(len(noteset.pitch))[:8]
    x = torch.from_numpy(noteset.mels[idx.numpy()]).float()
    inst = torch.from_numpy(noteset.instrument[idx.numpy()]).long()
    pitch = torch.from_numpy(noteset.pitch[idx.numpy()]).long()
    # one process, whole batch
    torch.manual_seed(0)
    f = FeatureExtractor(FeatureExtractor.Config.tiny(n_instruments=6))
    opt = torch.optim.SGD(f.parameters(), lr=0.1)  # SGD: parameters move by the gradient itself
    features.train_step(f, f, opt, x, inst, pitch, features.FeaturesTrainConfig(), torch.device("cpu"))
    # two gloo processes, half the batch each
    result = str(tmp_path / "ddp.safetensors")
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), x, inst, pitch, result), nprocs=2,
                       join=True, start_method="spawn")
    f2, _, _ = checkpoint.load(result, FeatureExtractor)
    for (name, a), b in zip(f.state_dict().items(), f2.state_dict().values()):
        assert torch.allclose(a, b, atol=2e-5), name
