"""``hypergan train vocoder`` and the vocoder evaluation on the tiny synthetic NoteSet (CPU, seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import checkpoint
from models.errors import UserError
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.signal.mel import TINY_MEL, LogMel
from models.train import common, resume, vocoder as stage
from models.nets.vocoder import NeuralVocoder, VocoderSchedule, load_vocoder
from models.evaluation.vocoder_quality import VocoderEvalConfig, evaluate_real, markdown_table, quality_table
from models.data.tiny import tiny_noteset

FAST = ("batch_size=4", "crop_frames=12", "context_frames=4", "log_every=2", "eval_every=1000", "save_every=1000",
        "eval_notes=4", "final_eval_notes=4", "warmup_steps=1")
ADVERSARIAL = ("adv_start=3", "adv_weight=1.0", "fm_weight=2.0")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def noteset():
    return tiny_noteset(n_instruments=4, keys=range(45, 81, 6), valid_instruments=1)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_stage_runs_resumes_and_reports_griffin_lim_beside_it(noteset, tmp_path):
    opts = common.RunOptions(minutes=5, max_steps=5, tiny=True, device="cpu", overrides=FAST + ADVERSARIAL)
    stage.train(noteset, tmp_path, opts)
    assert int(resume.load_state(tmp_path, "state")[1]["step"]) == 5
    final = stage.train(noteset, tmp_path, common.RunOptions(**{**opts.__dict__, "max_steps": 3}))
    tensors, meta = resume.load_state(tmp_path, "state")
    assert int(meta["step"]) == 8
    assert any(k.startswith("C.") for k in tensors) and any(k.startswith("V.") for k in tensors)
    vtensors, vmeta = checkpoint.read_tensors(tmp_path / "vocoder.safetensors")
    assert int(vmeta["step"]) == 8
    assert vtensors["head.weight"].dtype == torch.float16
    V = load_vocoder(tmp_path / "vocoder.safetensors")
    assert V.cfg.mel == TINY_MEL
    for key in ("valid_mel_l1", "valid_mrstft", "valid_gl_mel_l1", "valid_gl_mrstft", "valid_pitch_acc",
                "valid_gl_pitch_acc", "valid_real_pitch_acc"):
        assert key in final and np.isfinite(final[key])
    logged = rows(tmp_path)
    assert any("loss_critic" in r for r in logged)  # the critics joined after adv_start
    assert logged[-1]["final"] == 1


def test_critics_are_off_by_default(noteset, tmp_path):
    stage.train(noteset, tmp_path, common.RunOptions(max_steps=4, tiny=True, device="cpu",
                                                     overrides=FAST + ("adv_start=1",)))
    logged = [r for r in rows(tmp_path) if "loss" in r]
    assert logged and not any("loss_critic" in r for r in logged)
    assert all("mag_l1" in r for r in logged)


def test_batches_give_windows_with_context_around_aligned_crops(noteset):
    mel = noteset.mel_cfg
    cfg = stage.VocoderTrainConfig(batch_size=8, crop_frames=12, context_frames=4, aug_prob=0.0, gain_db=0.0,
                                   attack_prob=0.5)
    audio = stage.TrainAudio(noteset, torch.device("cpu"))
    batch = stage.Batches(audio, cfg, mel)(torch.Generator().manual_seed(0))
    window = 12 + 2 * 4
    assert batch.mel.shape == (8, mel.n_mels, window) and batch.wave.shape == (8, mel.hop_length * (window - 1))
    assert batch.real_mel.shape == (8, mel.n_mels, 12) and batch.magnitude.shape == (8, mel.n_freqs, 12)
    assert batch.frames == 12 and ((batch.offset >= 0) & (batch.offset <= 8)).all()
    assert (batch.offset == 0).any()  # onset crops: the window starts at the clip's start
    analysis = LogMel(mel)
    # The clean target is the mel of the audio under the window: the context (4 hops) covers half the
    # tiny 512-point STFT window, so no crop frame reaches a window edge inside the clip.
    inside = stage.crop_frames(analysis(batch.wave), batch.offset, 12)
    assert torch.allclose(inside, batch.real_mel, atol=1e-3)


def test_evaluator_reports_the_cpu_step_counts_beside_the_device_ones(noteset):
    V = NeuralVocoder(NeuralVocoder.Config.tiny(TINY_MEL), VocoderSchedule.tiny().with_steps(0, 1))
    rows = stage.Evaluator(noteset, torch.device("cpu"), cpu_steps=True)(V, notes=3, pitch=False)
    for key in ("valid_mel_l1", "valid_cpu_mel_l1", "valid_cpu_mrstft", "valid_gl_mel_l1"):
        assert np.isfinite(rows[key]), key
    assert rows["valid_mel_l1"] == rows["valid_cpu_mel_l1"]  # on the CPU both are the CPU counts
    assert V.schedule == VocoderSchedule.tiny().with_steps(0, 1) and V.training  # restored
    assert "valid_cpu_mel_l1" not in stage.Evaluator(noteset, torch.device("cpu"))(V, notes=3, pitch=False)


def test_crop_distance_ignores_errors_outside_the_crop():
    torch.manual_seed(0)
    ref = torch.randn(2, 8000) * 0.1
    est = ref.clone()
    est[:, :1000] += 0.1 * torch.randn(2, 1000)  # more than half of every window before the crop
    lo, hi = torch.tensor([3000, 4000]), torch.tensor([6000, 6500])
    sc, lm = stage.crop_spectral_distance(ref, est, lo, hi)
    assert sc.item() < 1e-6 and lm.item() < 1e-6
    sc_all, lm_all = stage.crop_spectral_distance(ref, est, torch.zeros(2, dtype=torch.long), hi)
    assert sc_all.item() > 0.01 and lm_all.item() > 0.01


def test_stage_needs_audio_and_generator_weights_when_asked(noteset, tmp_path):
    silent = tiny_noteset(n_instruments=2, keys=range(60, 64))
    silent.audio = None
    with pytest.raises(UserError, match="keep-audio"):
        stage.train(silent, tmp_path / "a", common.RunOptions(max_steps=1, tiny=True, device="cpu", overrides=FAST))
    opts = common.RunOptions(max_steps=1, tiny=True, device="cpu", weights=str(tmp_path / "none"),
                             overrides=FAST + ("gen_fraction=0.5",))
    with pytest.raises(UserError, match="gen_fraction"):
        stage.train(noteset, tmp_path / "b", opts)


@pytest.fixture(scope="module")
def weights(noteset, tmp_path_factory):
    """Random tiny f and G as the earlier stages would leave them."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    checkpoint.save(folder / "features.safetensors",
                    FeatureExtractor(FeatureExtractor.Config.tiny(TINY_MEL, n_instruments=len(noteset.instruments))))
    checkpoint.save(folder / "generator.safetensors", Generator(Generator.Config.tiny(TINY_MEL)))
    return folder


def test_fine_tuning_on_generator_outputs(noteset, weights, tmp_path):
    opts = common.RunOptions(minutes=5, max_steps=3, tiny=True, device="cpu", weights=str(weights),
                             overrides=FAST + ("gen_fraction=0.5", "adv_start=100"))
    stage.train(noteset, tmp_path, opts)
    assert int(resume.load_state(tmp_path, "state")[1]["step"]) == 3
    assert all(np.isfinite(r["loss"]) for r in rows(tmp_path) if "loss" in r)


def test_quality_table_vocoder_vs_griffin_lim_with_generated_notes(noteset, weights, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vocoder.safetensors"
    checkpoint.save(path, NeuralVocoder(NeuralVocoder.Config.tiny(TINY_MEL)), {}, dtype=torch.float16)
    table = quality_table(noteset, path, weights, VocoderEvalConfig(max_notes=5, batch_size=2), gl_iters=4)
    assert set(table) == {"real audio", "neural vocoder", "Griffin-Lim 4"}
    assert table["real audio"]["pitch_acc"] > 0.5  # the synthetic notes' own pitch is clear
    for name in ("neural vocoder", "Griffin-Lim 4"):
        row = table[name]
        for key in ("mel_l1", "mrstft", "sc", "log_mag", "pitch_acc", "gen_pitch_acc", "gen_mel_l1", "seconds"):
            assert np.isfinite(row[key]), (name, key)
        assert row["notes"] == 5
    text = markdown_table(table)
    assert "| neural vocoder |" in text and "mel L1" in text


def test_the_metrics_tell_a_good_inverter_from_a_bad_one(noteset):
    from models.signal.mel import GriffinLim

    mel = noteset.mel_cfg
    inverters = {"gl": GriffinLim(mel, n_iter=8), "noise": lambda x: 0.01 * torch.randn(x.shape[0], mel.num_samples)}
    rows = evaluate_real(noteset, inverters, VocoderEvalConfig(max_notes=6), torch.device("cpu"))
    for key in ("mel_l1", "mrstft", "sc", "log_mag"):
        assert rows["gl"][key] < rows["noise"][key], key
    assert rows["real audio"]["pitch_acc"] > rows["noise"]["pitch_acc"]
