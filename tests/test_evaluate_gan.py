"""The GANStrument acceptance report (models/evaluation/gan_report.py) end to end with tiny random networks."""
from __future__ import annotations

import json

import numpy as np
import torch

from models import checkpoint
from models.evaluation import gan_report as evaluate_gan
from models.nets.classifiers import InstrumentClassifier, PitchClassifier
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.signal.mel import TINY_MEL
from models.train import common
from models.data.tiny import tiny_noteset


def test_report_runs_and_real_notes_score_the_estimator(tmp_path, monkeypatch):
    data = tiny_noteset()
    monkeypatch.setattr(common, "load_data", lambda root: data)
    torch.manual_seed(0)
    weights = tmp_path / "weights"
    for name, net in (("features", FeatureExtractor(FeatureExtractor.Config.tiny(TINY_MEL, n_instruments=6))),
                      ("generator", Generator(Generator.Config.tiny(TINY_MEL))),
                      ("pitch_classifier", PitchClassifier(PitchClassifier.Config.tiny(TINY_MEL))),
                      ("instrument_classifier", InstrumentClassifier(InstrumentClassifier.Config.tiny(TINY_MEL, 6)))):
        checkpoint.save(weights / f"{name}.safetensors", net)
    out = tmp_path / "report"
    assert evaluate_gan.main(["--data", "unused", "--weights", str(weights), "--split", "valid",
                              "--estimator-keys", "4", "--gl-iters", "32", "--out", str(out)]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["instruments"] == 2 and r["estimator_notes"] == 2 * 4
    # untrained G: no pitch by either judge; real notes keep more of theirs through Griffin-Lim (tiny grid)
    assert r["pitch_acc_gen_estimator"] < 0.5
    assert r["pitch_acc_real_estimator_gl"] > r["pitch_acc_gen_estimator"]
    assert 0.0 <= r["timbre_id_gen"] <= 1.0 and np.isfinite(r["fid"])
    assert set(r["pitch_acc_gen_bands"]) == {f"{lo}-{hi}" for lo, hi in evaluate_gan.BANDS}
    assert "| pitch accuracy, evaluation classifier |" in (out / "report.md").read_text()
