"""Metric math (models/evaluation/metrics.py) and the `hypergan eval` plumbing (models/evaluation/table1.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.evaluation import metrics


def _gauss(n: int, d: int, mean: float, std: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn(n, d, generator=gen, dtype=torch.float64)


def test_fid_of_identical_sets_is_zero():
    x = _gauss(500, 6, 0.0, 1.0, 0)
    assert metrics.fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form():
    # Diagonal Gaussians: ||mu1 - mu2||^2 + sum (s1 - s2)^2 over dimensions.
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([4.0, 1.0, 1.0])
    expected = (mu1 - mu2).square().sum() + (s1 - s2).square().sum()
    value = metrics.frechet_distance(mu1, torch.diag(s1 ** 2), mu2, torch.diag(s2 ** 2))
    assert value == pytest.approx(float(expected), rel=1e-9)


def test_frechet_distance_with_correlated_covariances():
    # Same covariance, any shape: only the means count.
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    sigma = a @ a.T + 0.1 * torch.eye(4, dtype=torch.float64)
    mu = torch.randn(4, generator=gen, dtype=torch.float64)
    assert metrics.frechet_distance(mu, sigma, mu + 2, sigma) == pytest.approx(16.0, rel=1e-7)


def test_fid_of_shifted_gaussian_samples():
    d, shift, std2 = 4, 1.5, 2.0
    a = _gauss(20000, d, 0.0, 1.0, 1)
    b = _gauss(20000, d, shift, std2, 2)
    expected = d * shift ** 2 + d * (std2 - 1.0) ** 2
    assert metrics.fid(a, b) == pytest.approx(expected, rel=0.05)


def test_feature_mse_and_pitch_accuracy():
    a = torch.zeros(3, 2)
    assert metrics.feature_mse(a, a + 2) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        metrics.feature_mse(a, torch.zeros(2, 2))
    logits = torch.full((4, 88), -1.0)
    logits[0, 0] = logits[1, 87] = logits[2, 39] = logits[3, 40] = 5.0  # MIDI 21, 108, 60, 61
    assert metrics.pitch_accuracy(logits, torch.tensor([21, 108, 60, 60])) == pytest.approx(0.75)


def test_identification_uses_cosine_nearest_neighbour():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([7, 9])
    queries = torch.tensor([[10.0, 1.0], [0.1, 3.0], [1.0, 0.9]])
    assert metrics.nearest_labels(queries, gallery, labels).tolist() == [7, 9, 7]
    assert metrics.identification_accuracy(queries, torch.tensor([7, 9, 9]), gallery, labels) == pytest.approx(2 / 3)


def test_bootstrap_spread():
    values = np.array([0.0, 1.0] * 50)
    full, spread = metrics.bootstrap(lambda idx: float(values[idx].mean()), len(values), n_resamples=50)
    assert full == pytest.approx(0.5)
    assert 0.02 < spread < 0.09  # the standard error is 0.05
    assert metrics.mean_std([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))


# --- `hypergan eval` plumbing on a fake NoteSet whose mels spell out their pitch and instrument ---------------
# A note's mel is dark except row (midi - 21), which carries its instrument's time envelope; so the
# oracle judges below read pitch from the brightest row and timbre from the time profile.

from dataclasses import dataclass, field  # noqa: E402

from torch import nn  # noqa: E402

from models.evaluation import table1 as ev  # noqa: E402
from models.nets.hyper import HyperConfig, HyperNetwork  # noqa: E402

N_FRAMES = 8


@dataclass
class FakeInstrument:
    name: str
    pitched: bool


@dataclass
class FakeNoteSet:
    mels: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    instrument: np.ndarray
    split: np.ndarray
    instruments: list = field(default_factory=list)


def _mel(midi: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
    mel = torch.full((len(midi), 88, N_FRAMES), -5.0)
    mel[torch.arange(len(midi)), midi - 21] = envelope
    return mel


def fake_noteset(seed: int = 0, unpitched: bool = True) -> tuple[FakeNoteSet, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    envelopes = torch.rand(6, N_FRAMES, generator=gen) * 4  # one per instrument
    inst = np.repeat(np.arange(6), 10)
    pitch = np.tile(np.arange(40, 80, 4), 6)
    split = np.where(inst < 2, 0, 1).astype(np.int8)  # instruments 2..5 are held out (valid)
    mels = _mel(torch.from_numpy(pitch), envelopes[torch.from_numpy(inst)]).numpy().astype(np.float16)
    # Instrument 5 is unpitched: its labels are wrong on purpose and must not count.
    labels = pitch.copy()
    if unpitched:
        labels[inst == 5] = 100
    infos = [FakeInstrument(f"i{k}", pitched=not (unpitched and k == 5)) for k in range(6)]
    notes = FakeNoteSet(mels, labels.astype(np.int16), np.full(60, 100, np.int16), inst.astype(np.int32), split, infos)
    return notes, envelopes


class OracleGenerator(nn.Module):
    """Writes h (a time envelope) into the row of the requested pitch: a perfect GANStrument."""

    @dataclass(frozen=True)
    class Config:
        z_dim: int = 2

    def __init__(self) -> None:
        super().__init__()
        self.cfg = self.Config()

    def modulated_layers(self):
        return {"conv": (4, 4)}

    def forward(self, h, z, midi, deltas=None):
        return _mel(midi, h.float())


class RowReader(nn.Module):
    def logits(self, x):
        return x.float().amax(-1)  # [B, 88]

    def features(self, x):
        return x.float().mean(-1)


def _oracle_judges():
    return ev.Judges(f=_EnvelopeFeatures(), pitch_classifier=RowReader(), instrument_classifier=RowReader())


class _EnvelopeFeatures(nn.Module):
    """f: recovers the envelope exactly (the row's values), independent of the pitch."""

    def forward(self, x):
        return x.float().amax(1)  # [B, n_frames]


def test_held_out_and_gallery():
    notes, _ = fake_noteset()
    held = ev.held_out(notes, "valid", gallery_midi=60)
    assert len(held.index) == 40 and set(held.instrument) == {2, 3, 4, 5}
    assert (held.pitch[held.gallery] == [60, 60, 60, 100]).all()
    assert held.pitched.sum() == 30
    assert len(held.queries) == 36
    with pytest.raises(ev.UserError):
        ev.held_out(notes, "test")


def test_draw_targets_share_the_instrument_and_pairs_differ():
    notes, _ = fake_noteset()
    held = ev.held_out(notes, "valid")
    d = ev.draw(held, 50, seed=1)
    assert (held.instrument[d.synth_in] == held.instrument[d.synth_target]).all()
    assert (d.synth_in != d.synth_target).all()
    assert (held.instrument[d.pair_a] != held.instrument[d.pair_b]).all()
    assert not np.isin(d.recon, held.gallery).any()
    d2 = ev.draw(held, 50, seed=1)
    assert np.array_equal(d.synth_target, d2.synth_target)


def test_oracle_generator_scores_perfectly():
    notes, _ = fake_noteset()
    cfg = ev.EvalConfig(n_inputs=24, seeds=(0, 1, 2), batch_size=7)
    H = HyperNetwork(HyperConfig(h_dim=N_FRAMES, layers=("conv",), shapes=((4, 4),), hidden_dim=8, code_dim=8,
                                 embed_dim=4, rank=1))
    result = ev.evaluate(notes, OracleGenerator(), _oracle_judges(), {"G": None, "G+H": H}, cfg)
    for name in ("G", "G+H", "real notes"):
        row = result["rows"][name]
        assert row["recon_pitch"]["mean"] == 1.0 and row["synth_pitch"]["mean"] == 1.0, name
        assert row["interp_pitch"]["mean"] == 1.0 and row["ident"]["mean"] == 1.0, name
        assert len(row["synth_fid"]["values"]) == 3 and row["synth_fid"]["std"] >= 0
    # Mixing timbres moves features away from the real notes: interpolation FID above synthesis FID.
    assert result["rows"]["G"]["interp_fid"]["mean"] > result["rows"]["G"]["synth_fid"]["mean"]
    # Unpitched notes are rendered at their (wrong) labels, so only an all-pitched set reconstructs exactly.
    assert result["rows"]["G"]["recon_mse"]["mean"] > 0
    pitched_notes, _ = fake_noteset(unpitched=False)
    exact = ev.evaluate(pitched_notes, OracleGenerator(), _oracle_judges(), {"G": None, "G+H": H}, cfg)
    for name in ("G", "G+H"):
        assert exact["rows"][name]["recon_mse"]["mean"] == pytest.approx(0.0, abs=1e-9), name
    table = ev.markdown_table(result)
    assert table.count("\n| ") == 3 and "Synth FID" in table
    json.dumps(result)


def test_a_pitch_deaf_generator_scores_badly():
    class Deaf(OracleGenerator):
        def forward(self, h, z, midi, deltas=None):
            return _mel(torch.full_like(midi, 60), h.float())

    notes, _ = fake_noteset()
    result = ev.evaluate(notes, Deaf(), _oracle_judges(), {"G": None}, ev.EvalConfig(n_inputs=30, seeds=(0,)))
    row = result["rows"]["G"]
    assert row["synth_pitch"]["mean"] < 0.3 and row["recon_mse"]["mean"] > 0.01
    assert row["ident"]["mean"] == 1.0  # timbre is still right


def test_cli_with_tiny_networks(tmp_path, monkeypatch, capsys):
    """`hypergan eval` end to end: tiny random networks, the tiny synthetic set, H at init = G alone."""
    from app.cli import main
    from models import checkpoint
    from models.nets.classifiers import InstrumentClassifier, PitchClassifier
    from models.nets.features import FeatureExtractor
    from models.nets.generator import Generator
    from models.signal.mel import TINY_MEL
    from models.train import common
    from models.data.tiny import tiny_noteset

    data = tiny_noteset()
    monkeypatch.setattr(common, "load_data", lambda root: data)
    torch.manual_seed(0)
    weights = tmp_path / "weights"
    G = Generator(Generator.Config.tiny(TINY_MEL))
    f = FeatureExtractor(FeatureExtractor.Config.tiny(TINY_MEL, n_instruments=6))
    for name, net in (("features", f), ("generator", G),
                      ("pitch_classifier", PitchClassifier(PitchClassifier.Config.tiny(TINY_MEL))),
                      ("instrument_classifier", InstrumentClassifier(InstrumentClassifier.Config.tiny(TINY_MEL, 6))),
                      ("hyper_pre", HyperNetwork(HyperConfig.tiny(G.modulated_layers(), f.cfg.h_dim)))):
        checkpoint.save(weights / f"{name}.safetensors", net)
    out = tmp_path / "eval"
    code = main(["eval", "--data", "unused", "--weights", str(weights), "--out", str(out), "--n-inputs", "12",
                 "--seeds", "0", "1", "--device", "cpu"])
    assert code == 0 and torch.is_grad_enabled()  # eval must not switch autograd off for its caller
    result = json.loads((out / "results.json").read_text())
    rows = result["rows"]
    assert set(rows) == {"real notes", "GANStrument (G)", "HyperGANStrument-Pre (S3)"}
    for key in ("recon_mse", "synth_fid", "synth_pitch", "ident"):
        assert rows["GANStrument (G)"][key]["values"] == pytest.approx(rows["HyperGANStrument-Pre (S3)"][key]["values"])
        assert all(np.isfinite(rows["GANStrument (G)"][key]["values"]))
    assert "| GANStrument (G) |" in (out / "table.md").read_text()
    assert main(["eval", "--data", "unused", "--weights", str(tmp_path / "none"), "--device", "cpu"]) == 2
    assert "no features weights" in capsys.readouterr().err
