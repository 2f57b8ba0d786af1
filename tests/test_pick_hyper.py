"""Picking the best of several S3 runs trained side by side (models/runs/pick_hyper.py)."""
import json

import pytest

from models.errors import UserError
from models.runs import pick_hyper


def fake_run(path, final: dict | None, weights: bytes = b"w"):
    path.mkdir()
    lines = [{"step": 100, "loss_pre": 1.0}]
    if final is not None:
        lines.append(dict(final, step=200, final=1))
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (path / "hyper_pre.safetensors").write_bytes(weights)
    (path / "state-00000.safetensors").write_bytes(weights + b"-state")
    return path


def probe(cos_other: float, pitch_gh: float) -> dict:
    return {"valid_cls_cos_other_gh": cos_other, "valid_pitch_gh": pitch_gh, "valid_pitch_g": 0.99,
            "valid_cls_cos_other_g": 0.5}


def test_picks_the_best_classifier_cosine_among_runs_that_keep_pitch(tmp_path):
    off_key = fake_run(tmp_path / "hyper-pre@t3000", probe(0.80, 0.90), b"off")  # best timbre, loses pitch
    good = fake_run(tmp_path / "hyper-pre@t300", probe(0.70, 0.98), b"good")
    weak = fake_run(tmp_path / "hyper-pre@t100", probe(0.60, 1.00), b"weak")
    unfinished = fake_run(tmp_path / "hyper-pre@p2", None, b"unfinished")
    into = tmp_path / "hyper-pre"
    into.mkdir()
    (into / "state-00003.safetensors").write_bytes(b"stale")  # from an earlier run: must not survive
    assert pick_hyper.pick([off_key, good, weak, unfinished], into) == good
    assert (into / "hyper_pre.safetensors").read_bytes() == b"good"
    assert sorted(p.name for p in into.glob("state-*")) == ["state-00000.safetensors"]
    record = json.loads((into / "picked.json").read_text())
    assert record["picked"] == str(good) and record["runs"][str(off_key)]["score"] is None
    assert record["runs"][str(good)]["score"] == pytest.approx(0.70)


def test_no_eligible_run_is_a_clear_error(tmp_path):
    off_key = fake_run(tmp_path / "hyper-pre@a", probe(0.8, 0.5))
    with pytest.raises(UserError, match="pitch"):
        pick_hyper.pick([off_key], tmp_path / "hyper-pre")
    with pytest.raises(UserError, match="finished"):
        pick_hyper.pick([fake_run(tmp_path / "hyper-pre@b", None)], tmp_path / "hyper-pre")
