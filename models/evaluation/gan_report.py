"""The GANStrument acceptance report: G on held-out instruments, from one note each, over all 88 keys.

    python -m models.evaluation.gan_report --data DATA --weights assets --split test --out runs/eval-gan

For every held-out instrument one source note (nearest MIDI 60, loudest) gives h = f(x); G renders
keys 21..108 from h (z = 0). Measured:
- pitch accuracy of the generated mels by the evaluation pitch classifier, overall and per key band
  (pitched instruments only), and of the real notes of the same instruments (the classifier's floor);
- pitch accuracy by the independent estimator (``models.signal.pitch``, no network) on Griffin-Lim audio of
  a spread subset of the generated keys (within ±0.5 semitone), and of the real audio at the same
  keys (inverted the same way, so the inversion's own error is visible);
- timbre identification: is the source instrument the nearest gallery one-shot (the source notes) in
  f space, for generated notes vs real notes at the same keys;
- FID on the evaluation instrument classifier's features, generated vs real at the same keys.
Writes ``report.md`` and ``report.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.signal.audio import Audio
from models.nets.classifiers import InstrumentClassifier, PitchClassifier
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.signal.mel import GriffinLim
from models.signal.pitch import estimate_pitch
from models.train import common
from models.evaluation.metrics import fid
from models.units import HIGHEST_KEY, LOWEST_KEY, N_KEYS

SPLITS = {"valid": 1, "test": 2}
BANDS = ((21, 32), (33, 44), (45, 56), (57, 68), (69, 80), (81, 92), (93, 104), (105, 108))
KEYS = torch.arange(LOWEST_KEY, HIGHEST_KEY + 1)


def _batched(fn, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[s:s + chunk]).float() for s in range(0, len(x), chunk)])


def _pitch_ok(audio: Audio, key: int) -> bool:
    est = estimate_pitch(audio)
    return est.confidence > 0 and abs(est.midi - key) <= 0.5


def _band_table(keys: np.ndarray, ok: np.ndarray) -> dict[str, float]:
    out = {}
    for lo, hi in BANDS:
        m = (keys >= lo) & (keys <= hi)
        if m.any():
            out[f"{lo}-{hi}"] = float(ok[m].mean())
    return out


def evaluate(data, weights: Path, split: str, estimator_keys: int, gl_iters: int, seed: int = 0,
             device: str = "cpu") -> dict:
    """Every figure of the report as a dict (see the module docstring)."""
    device = torch.device(device)
    f = checkpoint.load(weights / "features.safetensors", FeatureExtractor, device=device)[0].eval()
    G, _, g_meta = checkpoint.load(weights / "generator.safetensors", Generator, device=device)
    G.eval()
    pitch_net = checkpoint.load(weights / "pitch_classifier.safetensors", PitchClassifier, device=device)[0].eval()
    inst_net = checkpoint.load(weights / "instrument_classifier.safetensors", InstrumentClassifier,
                               device=device)[0].eval()
    notes = common.DeviceNotes(data, device, splits=(SPLITS[split],))
    inst = notes.instrument.cpu().numpy()
    pitch = notes.pitch.cpu().numpy()
    vel = notes.velocity.cpu().numpy()
    instruments = np.unique(inst)
    score = np.abs(pitch - 60) * 1000 - vel
    src = np.array([np.nonzero(inst == i)[0][np.argmin(score[inst == i])] for i in instruments])
    pitched = notes.pitched.cpu().numpy()[src]
    h_src = _batched(f, notes.x(torch.as_tensor(src, device=device)))
    # G over all 88 keys per instrument (z = 0)
    n_inst = len(instruments)
    keys = KEYS.repeat(n_inst).to(device)
    rows = torch.arange(n_inst, device=device).repeat_interleave(len(KEYS))
    with torch.no_grad():
        fake = torch.cat([G(h_src[rows[s:s + 64]], torch.zeros(len(rows[s:s + 64]), G.cfg.z_dim, device=device),
                            keys[s:s + 64]) for s in range(0, len(rows), 64)])
    pred = _batched(pitch_net.logits, fake).argmax(1) + LOWEST_KEY
    ok_gen = (pred == keys).cpu().numpy()
    p_rows = pitched[rows.cpu().numpy()]
    report: dict = {"split": split, "instruments": int(n_inst), "pitched_instruments": int(pitched.sum()),
                    "generator_step": g_meta.get("step"), "generator_kimg": g_meta.get("kimg")}
    report["pitch_acc_gen"] = float(ok_gen[p_rows].mean())
    report["pitch_acc_gen_bands"] = _band_table(keys.cpu().numpy()[p_rows], ok_gen[p_rows])
    # real notes of the same held-out instruments, by the same classifier
    real_pitched = notes.pitched.cpu().numpy()
    real_pred = _batched(pitch_net.logits, notes.x(torch.arange(len(notes), device=device))).argmax(1).cpu().numpy() + LOWEST_KEY
    report["pitch_acc_real"] = float((real_pred == pitch)[real_pitched].mean())
    report["pitch_acc_real_bands"] = _band_table(pitch[real_pitched], (real_pred == pitch)[real_pitched])
    report.update(_timbre_and_fid(f, inst_net, notes, fake, h_src, instruments, src, seed, device))
    report.update(_estimator_pitch(data, notes, fake, pitched, estimator_keys, gl_iters, seed, device))
    return report


def _timbre_and_fid(f, inst_net, notes, fake: torch.Tensor, h_src: torch.Tensor, instruments: np.ndarray,
                    src: np.ndarray, seed: int, device: torch.device) -> dict:
    """Real notes at (instrument, key) pairs that exist against their generated twins: timbre
    identification by f (nearest source note) and FID on the instrument classifier's features."""
    inst = notes.instrument.cpu().numpy()
    pitch = notes.pitch.cpu().numpy()
    n_inst = len(instruments)
    report = {}
    row_of = {int(i): r for r, i in enumerate(instruments)}
    pair_real = np.setdiff1d(np.arange(len(notes)), src)
    pair_rows = np.array([row_of[int(inst[j])] for j in pair_real])
    pair_fake = fake[torch.as_tensor(pair_rows * len(KEYS) + (pitch[pair_real] - LOWEST_KEY), device=device)]
    ref = torch.nn.functional.normalize(h_src, dim=1)

    def timbre_id(x: torch.Tensor) -> float:
        q = torch.nn.functional.normalize(_batched(f, x), dim=1)
        return float(((q @ ref.T).argmax(1).cpu().numpy() == pair_rows).mean())

    x_real = notes.x(torch.as_tensor(pair_real, device=device))
    report["timbre_id_gen"] = timbre_id(pair_fake)
    report["timbre_id_real"] = timbre_id(x_real)
    report["timbre_id_chance"] = 1.0 / n_inst
    report["fid"] = fid(_batched(inst_net.features, pair_fake), _batched(inst_net.features, x_real))
    report["fid_real_halves"] = _fid_halves(_batched(inst_net.features, x_real), seed)
    return report


def _estimator_pitch(data, notes, fake: torch.Tensor, pitched: np.ndarray, estimator_keys: int, gl_iters: int,
                     seed: int, device: torch.device) -> dict:
    """The independent pitch estimator on Griffin-Lim audio of a spread subset of keys per pitched
    instrument, and on real held-out notes inverted the same way (the inversion's own error)."""
    pitch = notes.pitch.cpu().numpy()
    real_pitched = notes.pitched.cpu().numpy()
    report = {}
    rng = np.random.default_rng(seed)
    gl = GriffinLim(data.mel_cfg, n_iter=gl_iters).to(device)
    sel_rows, sel_keys = [], []
    for r in np.nonzero(pitched)[0]:
        offset = rng.integers(0, N_KEYS // estimator_keys)
        for k in range(LOWEST_KEY + offset, HIGHEST_KEY + 1, max(1, N_KEYS // estimator_keys)):
            sel_rows.append(r)
            sel_keys.append(k)
    sel = torch.as_tensor(np.array(sel_rows) * len(KEYS) + np.array(sel_keys) - LOWEST_KEY, device=device)
    t0 = time.perf_counter()
    with torch.no_grad():
        audio = torch.cat([gl(fake[sel[s:s + 32]]) for s in range(0, len(sel), 32)]).cpu().numpy()
    report["gl_seconds"] = round(time.perf_counter() - t0, 1)
    rate = data.mel_cfg.sample_rate
    est_ok = np.array([_pitch_ok(Audio(a.astype(np.float32), rate), k) for a, k in zip(audio, sel_keys)])
    report["estimator_notes"] = int(len(sel_keys))
    report["pitch_acc_gen_estimator"] = float(est_ok.mean())
    report["pitch_acc_gen_estimator_bands"] = _band_table(np.array(sel_keys), est_ok)
    real_sel = np.nonzero(real_pitched)[0]
    real_sel = rng.choice(real_sel, size=min(len(real_sel), len(sel_keys)), replace=False)
    with torch.no_grad():
        real_audio = torch.cat([gl(notes.x(torch.as_tensor(real_sel[s:s + 32], device=device)))
                                for s in range(0, len(real_sel), 32)]).cpu().numpy()
    real_ok = np.array([_pitch_ok(Audio(a.astype(np.float32), rate), int(pitch[j])) for a, j in zip(real_audio, real_sel)])
    report["pitch_acc_real_estimator_gl"] = float(real_ok.mean())
    return report


def _fid_halves(feats: torch.Tensor, seed: int) -> float:
    """FID between two random halves of the real notes: the floor FID can reach on this set."""
    perm = torch.randperm(len(feats), generator=torch.Generator().manual_seed(seed))
    half = len(feats) // 2
    return fid(feats[perm[:half]], feats[perm[half:]])


def markdown(r: dict) -> str:
    bands = " · ".join(f"{k} {v:.2f}" for k, v in r["pitch_acc_gen_bands"].items())
    est_bands = " · ".join(f"{k} {v:.2f}" for k, v in r["pitch_acc_gen_estimator_bands"].items())
    real_bands = " · ".join(f"{k} {v:.2f}" for k, v in r["pitch_acc_real_bands"].items())
    return "\n".join([
        f"# GANStrument on held-out instruments ({r['split']} split)",
        "",
        f"Generator step {r['generator_step']} ({r['generator_kimg']} kimg); {r['instruments']} instruments "
        f"({r['pitched_instruments']} pitched); one source note each, keys 21–108, z = 0.",
        "",
        "| measure | generated | real |",
        "|---|---|---|",
        f"| pitch accuracy, evaluation classifier | {r['pitch_acc_gen']:.3f} | {r['pitch_acc_real']:.3f} |",
        f"| pitch accuracy, independent estimator on Griffin-Lim audio ({r['estimator_notes']} notes) "
        f"| {r['pitch_acc_gen_estimator']:.3f} | {r['pitch_acc_real_estimator_gl']:.3f} |",
        f"| timbre identification (chance {r['timbre_id_chance']:.3f}) | {r['timbre_id_gen']:.3f} "
        f"| {r['timbre_id_real']:.3f} |",
        f"| FID (instrument-classifier features; real halves: {r['fid_real_halves']:.1f}) | {r['fid']:.1f} | |",
        "",
        f"Generated, classifier, per band: {bands}",
        "",
        f"Generated, estimator, per band: {est_bands}",
        "",
        f"Real, classifier, per band: {real_bands}",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.evaluation.gan_report", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--weights", default="assets", type=Path)
    parser.add_argument("--split", default="test", choices=sorted(SPLITS))
    parser.add_argument("--estimator-keys", type=int, default=11, help="generated keys per instrument inverted")
    parser.add_argument("--gl-iters", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report = evaluate(common.load_data(args.data), args.weights, args.split, args.estimator_keys, args.gl_iters,
                      device=args.device)
    text = markdown(report)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text)
        (args.out / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
