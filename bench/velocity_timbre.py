"""Fit the velocity model from real notes, and check it on held-out instruments.

SoundFont presets are rendered with the fluidsynth CLI at several velocities and keys (float WAV, 16
kHz, 2.04 s): MuseScore General (the HQ ``MuseScore_General_Full.sf3``, Debian package
musescore-general-soundfont) and FluidR3 GM by default. MuseScore General overrides fluidsynth's
default velocity-to-cutoff modulator with its own (linear in velocity over the whole range; brass
also attack slower when soft) and switches samples on a few pianos and strings; FluidR3 GM has one
sample per key and changes only through its velocity zones above 64 (its 0-64 zone is one), so its
notes below 64 are alike. The default modulator itself changes none of these 16 kHz renders
(removed through libfluidsynth, every centroid stays the same).

``h = f(x)`` comes from the shipped f (``Engine.timbre``). Only (preset, key) pairs whose h changes
with velocity count (``min_change``; a synth that only scales the gain gives the same h after peak
normalisation). The same GM programs are held out in every font (``program % 4 == 3``), so no
instrument is in its own fit. The fit (``models/train/velocity.py``) on the training pairs of
``--fit-fonts``: the velocity curve and the tilt basis from the real notes' mel gains, the curve then
calibrated so that the training pairs rendered by the engine follow the real mean centroid, the
attack slope from the real attacks beyond what the tilt alone does to the rendered ones, and the
mean ``h(v) - h(reference)`` per velocity; ``--write`` saves them as
``assets/velocity_timbre.safetensors``.
The check on the held-out pairs of every font is ``bench/velocity_check.py``.

    python -m bench.velocity_timbre --out /tmp/vel --cache /tmp/vel/notes --write   # the shipped fit
    python -m bench.velocity_timbre --out /tmp/vel --cache /tmp/vel/notes --fit-fonts FluidR3_GM.sf2 \\
        --settings model tilt mean --previous /tmp/velocity_timbre_v2.safetensors
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bench.results import write_results
from bench.velocity_check import Setting, check_font, generated_means, markdown
from engine.instrument import Engine, default_weights_dir
from engine.variations import VELOCITY_FILE, VelocityTimbre, save_velocity_timbre
from models.data.reference import CheckConfig, fluidsynth_render
from models.data.soundfont import read_font
from models.errors import SilentAudioError
from models.evaluation.note_shape import attack_time_s, spectral_centroid_hz
from models.signal.audio import Audio
from models.train.velocity import VelocityFit, attack_log_ratios, calibrated, fit_attack, fit_velocity

MUSESCORE = "/usr/share/sounds/sf3/MuseScore_General_Full.sf3"
FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"


@dataclass(frozen=True)
class FitConfig:
    fonts: tuple[str, ...] = (MUSESCORE, FLUIDR3)
    fit_fonts: tuple[str, ...] = ("MuseScore_General_Full.sf3",)   # file names among ``fonts``
    keys: tuple[int, ...] = (48, 60, 72)
    # Every layer of 2..5 is rendered between 13 and 115 (reference 100): the grid spans them.
    velocities: tuple[int, ...] = (12, 20, 30, 45, 64, 80, 100, 115, 127)
    reference: int = 100
    held_out_every: int = 4        # GM programs p % 4 == 3 are held out, in every font
    min_change: float = 0.02       # RMS of h(lowest) - h(highest) for a pair to count as changing
    presets_per_render: int = 16
    changing: float = 0.01         # held-out pairs counted as "changing" in the centroid sign agreement
    attack_changing: float = 0.1   # ... and in the attack sign agreement (log ratio)

    @property
    def ref(self) -> int:
        return self.velocities.index(self.reference)


@dataclass
class Notes:
    """One font's changing pairs: real notes ``[N, V, T]``, their h ``[N, V, h_dim]``, key, program."""

    font: str
    waves: np.ndarray
    h: np.ndarray
    keys: np.ndarray
    programs: np.ndarray
    held: np.ndarray
    counts: dict

    def attacks(self, rate: int) -> np.ndarray:
        """10 -> 90 % attack times ``[N, V]`` in seconds."""
        return np.array([[attack_time_s(w, rate) for w in note] for note in self.waves]).reshape(len(self.waves), -1)


def render_notes(cfg: FitConfig, font: str, presets: list) -> np.ndarray:
    """Real notes ``[P, K, V, T]`` at 16 kHz (SHIPPED_MEL's clip), rendered by fluidsynth."""
    check = CheckConfig()
    out = np.zeros((len(presets), len(cfg.keys), len(cfg.velocities), check.num_samples), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(presets), cfg.presets_per_render):
            chunk = presets[start: start + cfg.presets_per_render]
            notes = [(p.bank, p.program, k, v) for p in chunk for k in cfg.keys for v in cfg.velocities]
            waves = fluidsynth_render(font, notes, check, Path(tmp), file_format="float")
            out[start: start + len(chunk)] = waves.reshape(len(chunk), len(cfg.keys), len(cfg.velocities), -1)
    return out


def timbres(engine: Engine, notes: np.ndarray, keys: tuple[int, ...]) -> np.ndarray:
    """h ``[P, K, V, h_dim]`` of every note (NaN for silent ones)."""
    P, K, V, _ = notes.shape
    out = np.full((P, K, V, engine.nets.f.cfg.h_dim), np.nan, np.float32)
    for p in range(P):
        for k in range(K):
            for v in range(V):
                try:
                    sample = engine.load_sample(Audio(notes[p, k, v], engine.mel_cfg.sample_rate), midi=keys[k])
                    out[p, k, v] = engine.timbre(sample)[0].float().cpu().numpy()
                except SilentAudioError:
                    pass
    return out


def changing_notes(engine: Engine, cfg: FitConfig, font: str, limit: int | None, cache: Path | None) -> Notes:
    """Render (or read from ``cache``) one font's real notes and keep the pairs whose h changes."""
    path = None if cache is None else cache / f"{Path(font).stem}.npz"
    if path is not None and path.is_file():
        z = np.load(path)
        return Notes(font, z["waves"], z["h"], z["keys"], z["programs"], z["held"], json.loads(str(z["counts"])))
    presets = [p for p in read_font(font).melodic() if p.bank == 0][:limit]
    notes = render_notes(cfg, font, presets)
    h = timbres(engine, notes, cfg.keys)
    valid = ~np.isnan(h).any(axis=(2, 3))
    change = np.sqrt(np.nanmean((h[:, :, 0] - h[:, :, -1]) ** 2, axis=-1))
    changing = valid & (change > cfg.min_change)
    p, k = np.nonzero(changing)
    programs = np.array([presets[i].program for i in p], dtype=np.int64)
    out = Notes(font, notes[p, k], h[p, k], np.array(cfg.keys)[k], programs,
                programs % cfg.held_out_every == cfg.held_out_every - 1,
                {"presets": len(presets), "valid_pairs": int(valid.sum()), "changing_pairs": int(changing.sum())})
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, waves=out.waves, h=out.h, keys=out.keys, programs=out.programs, held=out.held,
                 counts=json.dumps(out.counts))
    return out


def fit(engine: Engine, cfg: FitConfig, fonts: list[Notes], passes: int) -> tuple[VelocityTimbre, VelocityFit]:
    """The velocity model from the training pairs of the fit fonts: fitted to the real notes, then
    (``passes`` > 0) calibrated against the training pairs rendered by the engine."""
    train = [n for n in fonts if Path(n.font).name in cfg.fit_fonts]
    if not train:
        raise SystemExit(f"no notes of the fit fonts {cfg.fit_fonts} among {[Path(n.font).name for n in fonts]}")
    waves = np.concatenate([n.waves[~n.held] for n in train])
    keys = np.concatenate([n.keys[~n.held] for n in train])
    h = np.concatenate([n.h[~n.held] for n in train])
    rate = engine.mel_cfg.sample_rate
    real_attack = np.concatenate([n.attacks(rate)[~n.held] for n in train])
    velocities = np.array(cfg.velocities, float)
    model = fit_velocity(waves, real_attack, velocities, cfg.ref, engine.mel_cfg)
    offsets = torch.from_numpy(np.nanmean(h - h[:, cfg.ref: cfg.ref + 1], axis=0)).float()    # [V, h_dim]
    meta = {"fonts": [Path(n.font).name for n in train], "train_pairs": int(len(waves)), "keys": list(cfg.keys),
            "reference_velocity": cfg.reference, "held_out": f"GM programs p % {cfg.held_out_every} == "
            f"{cfg.held_out_every - 1}", "renderer": "fluidsynth", "f_fingerprint": engine.nets.fingerprint,
            "tilt_residual": round(model.tilt_residual, 4), "calibration_passes": passes}
    timbre = lambda m: VelocityTimbre(velocities, m.curve, offsets, torch.from_numpy(m.basis),  # noqa: E731
                                      m.attack_log_slope, meta)
    real_centroid = np.log(np.array([[spectral_centroid_hz(w, rate) for w in note] for note in waves]))
    real_centroid = (real_centroid - real_centroid[:, cfg.ref: cfg.ref + 1]).mean(0)
    tilt_only = Setting("tilt")
    for _ in range(passes):
        centroid, attack = generated_means(engine, cfg, waves, keys, timbre(model), tilt_only)
        model = calibrated(model, cfg.ref, real_centroid, centroid)
    if passes:
        centroid, attack = generated_means(engine, cfg, waves, keys, timbre(model), tilt_only)
        slope = fit_attack(attack_log_ratios(real_attack, cfg.ref).mean(0), attack, velocities, cfg.ref, model.curve)
        info = dict(model.info, calibrated_log_centroid=centroid.round(4).tolist(),
                    tilt_only_attack_log_ratio=attack.round(4).tolist())
        model = replace(model, attack_log_slope=slope, info=info)
    return timbre(model), model


def run(args: argparse.Namespace) -> dict:
    cfg = FitConfig(fonts=tuple(args.fonts), fit_fonts=tuple(args.fit_fonts))
    settings = [Setting.parse(s) for s in args.settings]
    t0 = time.perf_counter()
    engine = Engine(args.weights, device="cpu", num_threads=args.threads)
    fonts = [changing_notes(engine, cfg, font, args.limit, args.cache) for font in cfg.fonts]
    timbre, model = fit(engine, cfg, fonts, args.calibration_passes)
    if args.write:
        save_velocity_timbre(Path(args.weights or default_weights_dir()) / VELOCITY_FILE, timbre.velocities,
                             timbre.curve, timbre.offsets, timbre.tilt_basis, timbre.attack_log_slope, timbre.meta)
    previous = load_previous(args.previous) if args.previous else None
    checks = {Path(n.font).name: check_font(engine, cfg, n, timbre, previous, settings) for n in fonts}
    return {"config": asdict(cfg), "meta": timbre.meta, "counts": {Path(n.font).name: n.counts for n in fonts},
            "fit": {"curve": model.curve.round(4).tolist(), "attack_log_slope": round(model.attack_log_slope, 4),
                    "tilt_residual": round(model.tilt_residual, 4), "tilt_basis": model.basis.round(4).tolist(),
                    "attack_ratio": [round(timbre.attack_ratio(v, cfg.reference), 4) for v in cfg.velocities],
                    **model.info},
            "checks": checks, "seconds": round(time.perf_counter() - t0, 1)}


def load_previous(path: Path) -> tuple[np.ndarray, torch.Tensor]:
    """A format /2 asset's per-velocity table: ``(velocities [V], mel_gains [V, n_mels])``."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return fh.get_tensor("velocities").double().numpy(), fh.get_tensor("mel_gains").float()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fonts", nargs="+", default=list(FitConfig.fonts), help="SoundFonts rendered and checked")
    parser.add_argument("--fit-fonts", nargs="+", default=list(FitConfig.fit_fonts),
                        help="file names of the fonts whose training pairs fit the model")
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default: assets/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for velocity_timbre.json and .md")
    parser.add_argument("--write", action="store_true", help="save the fit beside the weights")
    parser.add_argument("--settings", nargs="+", default=["model", "tilt"],
                        help="METHOD[@STRENGTH] (bench/velocity_check.py)")
    parser.add_argument("--previous", type=Path, default=None,
                        help="a format /2 asset (per-velocity table) to check beside the fit, as 'previous'")
    parser.add_argument("--cache", type=Path, default=None, help="a folder keeping each font's real notes and h")
    parser.add_argument("--limit", type=int, default=None, help="first N presets of each font only (a quick look)")
    parser.add_argument("--calibration-passes", type=int, default=2,
                        help="renders of the training pairs that rescale the curve to the real centroids (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.previous and "previous" not in args.settings:
        args.settings.append("previous")
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    write_results(args.out, "velocity_timbre", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
