"""Picking the best of several f runs trained side by side (models/runs/pick_features.py)."""
import json

import pytest

from models.errors import UserError
from models.runs import pick_features


def fake_run(path, final: dict | None, weights: bytes = b"w"):
    path.mkdir()
    lines = [{"step": 100, "loss": 1.0}]
    if final is not None:
        lines.append(dict(final, step=200, final=1))
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (path / "features.safetensors").write_bytes(weights)
    return path


def test_picks_the_run_with_the_best_timbre_minus_pitch_probe(tmp_path):
    leaky = fake_run(tmp_path / "features@none", {"inst_acc_holdout": 0.86, "pitch_probe_acc": 0.36}, b"leaky")
    mid = fake_run(tmp_path / "features@p3", {"inst_acc_holdout": 0.82, "pitch_probe_acc": 0.15}, b"mid")
    dull = fake_run(tmp_path / "features@p10", {"inst_acc_holdout": 0.69, "pitch_probe_acc": 0.06}, b"dull")
    unfinished = fake_run(tmp_path / "features@p30", None, b"unfinished")
    into = tmp_path / "features"
    assert pick_features.pick([leaky, mid, dull, unfinished], into) == mid
    assert (into / "features.safetensors").read_bytes() == b"mid"
    record = json.loads((into / "picked.json").read_text())
    assert record["picked"] == str(mid) and str(unfinished) not in record["runs"]
    assert record["runs"][str(mid)]["score"] == pytest.approx(0.67)


def test_no_finished_run_is_a_clear_error(tmp_path):
    run = fake_run(tmp_path / "features@p3", None)
    with pytest.raises(UserError, match="finished"):
        pick_features.pick([run, tmp_path / "missing"], tmp_path / "features")
    assert not (tmp_path / "features").exists()
