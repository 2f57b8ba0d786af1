"""Learn how h moves with velocity from real notes, and check it on held-out instruments.

SoundFont presets (FluidR3 GM by default) are rendered with the fluidsynth CLI at several velocities
and keys; ``h = f(x)`` comes from the shipped f (``Engine.timbre``: the peak-normalised note). Only
(preset, key) pairs whose notes differ in timbre across velocity count (velocity-switched samples;
a synth that only scales the gain gives the same h after peak normalisation). Every fourth preset is
held out. The fit, per velocity v over the training pairs: the mean of ``h(v) - h(reference)`` and
the mean log gain per mel bin of the real note at v over the one at the reference (the spectral
tilt the engine applies by default); with ``--write`` both are saved as
``assets/velocity_timbre.safetensors``.

Check on the held-out pairs: the real note at the reference velocity is the input sound; the engine
renders its key moved to each velocity v, and the spectral centroid and attack time of the generated
notes are compared with the real notes' at the same velocities (ratios to the reference). Each
``--settings`` entry is ``METHOD@STRENGTH`` with ``+H`` to re-run H on the moved h:

- ``mean``: h + strength x the mean offset (the shipped way; engine/variations.py);
- ``lsq``: h + strength x a ridge map of h(reference) to its own offset (per velocity, fitted on
  the training pairs, the ridge weight by leave-presets-out cross-validation);
- ``tilt``: no move in h; strength x the mean log-mel gain per mel bin of real notes at v over
  the same notes at the reference (time-averaged magnitude) is added to G's mel (model-free);
- ``env``: ``tilt`` plus a gain per frame (the real notes' mean envelope at v over the reference's,
  each note peak-normalised), so the attack can follow;
- ``mean+tilt``: both.

Beside the curves: the pitch of each generated note (YIN, cents off the key, as bench/variations.py)
and how far each layer is from the reference note of its key (MFCC statistics, z-scored over the
reference notes and their neighbouring keys) against the neighbouring keys' distance.

    python -m bench.velocity_timbre --out /tmp/vel --write
    python -m bench.velocity_timbre --out /tmp/vel --cache /tmp/vel/notes.npz \\
        --settings mean@1 mean@2 mean@4 mean@8 mean@2+H tilt@1
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
from engine.instrument import Conditioning, Engine, default_weights_dir
from engine.variations import VELOCITY_FILE, VelocityTimbre, save_velocity_timbre
from models.data.reference import CheckConfig, fluidsynth_render
from models.data.soundfont import read_font
from models.errors import SilentAudioError
from models.evaluation import fidelity as fm
from models.evaluation.note_shape import attack_time_s, spectral_centroid_hz
from models.nets.hyper import refine as hyper_offsets
from models.nets.layers import normalize_h
from models.signal.audio import Audio
from models.signal.mel import LogMel

RIDGE_WEIGHTS = (0.1, 1.0, 10.0, 100.0, 1000.0)


@dataclass(frozen=True)
class FitConfig:
    font: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    keys: tuple[int, ...] = (48, 60, 72)
    velocities: tuple[int, ...] = (30, 45, 64, 80, 100, 115, 127)
    reference: int = 100
    held_out_every: int = 4        # presets i % 4 == 3 are held out
    min_change: float = 0.02       # RMS of h(lowest) - h(highest) for a pair to count as velocity-switched
    presets_per_render: int = 16
    # Training pairs whose real softest note's centroid is within this share of the reference's are
    # left out of the fit (0: keep all); most switched pairs barely change (h still moves a little).
    fit_min_centroid_change: float = 0.0
    changing: float = 0.01         # held-out pairs counted as "changing" in the sign agreement


@dataclass(frozen=True)
class Setting:
    """One way of moving a note to another velocity (see the module docstring)."""

    method: str = "mean"
    strength: float = 1.0
    rerun_h: bool = False

    @classmethod
    def parse(cls, text: str) -> Setting:
        body, rerun = (text[:-2], True) if text.endswith("+H") else (text, False)
        method, _, strength = body.partition("@")
        if method not in ("mean", "lsq", "tilt", "env", "mean+tilt"):
            raise SystemExit(f"unknown method {method!r} in {text!r}")
        return cls(method, float(strength or 1.0), rerun)

    @property
    def label(self) -> str:
        return f"{self.method} x{self.strength:g}" + (", H re-run" if self.rerun_h else "")


@dataclass
class Notes:
    """The velocity-switched pairs: real notes ``[N, V, T]``, their h ``[N, V, h_dim]``, key, preset."""

    waves: np.ndarray
    h: np.ndarray
    keys: np.ndarray
    presets: np.ndarray
    held: np.ndarray
    counts: dict


def render_notes(cfg: FitConfig, presets: list) -> np.ndarray:
    """Real notes ``[P, K, V, T]`` at 16 kHz (SHIPPED_MEL's clip), rendered by fluidsynth."""
    check = CheckConfig()
    out = np.zeros((len(presets), len(cfg.keys), len(cfg.velocities), check.num_samples), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(presets), cfg.presets_per_render):
            chunk = presets[start: start + cfg.presets_per_render]
            notes = [(p.bank, p.program, k, v) for p in chunk for k in cfg.keys for v in cfg.velocities]
            waves = fluidsynth_render(cfg.font, notes, check, Path(tmp), file_format="float")
            out[start: start + len(chunk)] = waves.reshape(len(chunk), len(cfg.keys), len(cfg.velocities), -1)
    return out


def timbres(engine: Engine, notes: np.ndarray, keys: tuple[int, ...]) -> np.ndarray:
    """h ``[P, K, V, h_dim]`` of every note (NaN for silent ones)."""
    P, K, V, _ = notes.shape
    out = None
    for p in range(P):
        for k in range(K):
            for v in range(V):
                try:
                    sample = engine.load_sample(Audio(notes[p, k, v], engine.mel_cfg.sample_rate), midi=keys[k])
                    h = engine.timbre(sample)[0].float().cpu().numpy()
                except SilentAudioError:
                    h = None
                if out is None and h is not None:
                    out = np.full((P, K, V, h.size), np.nan, np.float32)
                if h is not None:
                    out[p, k, v] = h
    return out


def switched_notes(engine: Engine, cfg: FitConfig, limit: int | None, cache: Path | None) -> Notes:
    """Render (or read from ``cache``) the real notes and keep the velocity-switched pairs."""
    if cache is not None and cache.is_file():
        z = np.load(cache)
        return Notes(z["waves"], z["h"], z["keys"], z["presets"], z["held"], json.loads(str(z["counts"])))
    presets = [p for p in read_font(cfg.font).melodic() if p.bank == 0][:limit]
    notes = render_notes(cfg, presets)
    h = timbres(engine, notes, cfg.keys)
    valid = ~np.isnan(h).any(axis=(2, 3))
    change = np.sqrt(np.nanmean((h[:, :, 0] - h[:, :, -1]) ** 2, axis=-1))
    switched = valid & (change > cfg.min_change)
    p, k = np.nonzero(switched)
    out = Notes(notes[p, k], h[p, k], np.array(cfg.keys)[k], p,
                p % cfg.held_out_every == cfg.held_out_every - 1,
                {"presets": len(presets), "valid_pairs": int(valid.sum()), "switched_pairs": int(switched.sum())})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, waves=out.waves, h=out.h, keys=out.keys, presets=out.presets, held=out.held,
                 counts=json.dumps(out.counts))
    return out


def fit(h: np.ndarray, ref: int) -> np.ndarray:
    """Mean ``h(v) - h(ref)`` ``[V, h_dim]`` over pairs ``h [N, V, h_dim]``."""
    return np.nanmean(h - h[:, ref: ref + 1], axis=0)


def ridge(x: np.ndarray, y: np.ndarray, weight: float) -> np.ndarray:
    """``W [d + 1, e]`` minimising ``|[x, 1] W - y|^2 + weight |W[:d]|^2`` (the bias unpenalised)."""
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    penalty = weight * np.eye(xb.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + penalty, xb.T @ y)


def fit_map(h: np.ndarray, presets: np.ndarray, ref: int, folds: int = 4) -> tuple[np.ndarray, float, dict]:
    """Ridge maps ``[V, h_dim + 1, h_dim]`` of h(ref) to ``h(v) - h(ref)``; the weight with the least
    leave-presets-out error (folds of presets, so no instrument is in its own fit)."""
    x, y = h[:, ref], h - h[:, ref: ref + 1]                  # [N, d], [N, V, d]
    fold = presets % folds
    errors = {}
    for w in RIDGE_WEIGHTS:
        sq = 0.0
        for f in range(folds):
            tr, te = fold != f, fold == f
            for v in range(h.shape[1]):
                pred = np.concatenate([x[te], np.ones((te.sum(), 1))], 1) @ ridge(x[tr], y[tr, v], w)
                sq += float(((pred - y[te, v]) ** 2).sum())
        errors[w] = sq / y.size
    best = min(errors, key=errors.get)
    # The same folds predicting each pair's offset by the other folds' mean offset (the shipped way).
    mean_error = sum(float(((y[fold == f] - y[fold != f].mean(0)) ** 2).sum()) for f in range(folds)) / y.size
    return np.stack([ridge(x, y[:, v], best) for v in range(h.shape[1])]), best, {
        "ridge_cv_mse": {str(k): round(e, 6) for k, e in errors.items()}, "mean_offset_cv_mse": round(mean_error, 6)}


def fit_tilt(engine: Engine, waves: np.ndarray, ref: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean log gain per mel bin ``[V, n_mels]`` of real notes at each velocity over the reference note
    (log of the time-averaged mel magnitude of the peak-normalised notes, so a tilt, not a level), and
    per frame ``[V, n_frames]`` (log of the pairs' mean frame magnitude, each note over its loudest
    frame; within +-1.5, about 13 dB, where quiet tails would give noise)."""
    log_mel = LogMel(engine.mel_cfg)
    gains, frames = [], []
    with torch.inference_mode():
        for note in waves:                                            # [V, T]
            x = torch.from_numpy(np.stack([fm.peak_normalised(w) for w in note]))
            mag = log_mel(x).exp()                                    # [V, n_mels, n_frames]
            gains.append(mag.mean(-1).clamp_min(engine.mel_cfg.log_floor).log())
            energy = mag.mean(1)                                      # [V, n_frames]
            frames.append(energy / energy.amax(-1, keepdim=True).clamp_min(1e-12))
    gains, envelope = torch.stack(gains), torch.stack(frames).mean(0).clamp_min(1e-6).log()
    tilt = (gains - gains[:, ref: ref + 1]).mean(0)
    return tilt, (envelope - envelope[ref: ref + 1]).clamp(-1.5, 1.5)


class Mover:
    """The conditioning of a key at velocity v for one setting, from the reference note's ``cond``."""

    def __init__(self, engine: Engine, cfg: FitConfig, offsets: np.ndarray, maps: np.ndarray,
                 tilt: torch.Tensor, envelope: torch.Tensor) -> None:
        self.engine, self.cfg = engine, cfg
        self.velocity = VelocityTimbre(np.array(cfg.velocities, float), torch.from_numpy(offsets).float(), {}, tilt)
        self.maps, self.envelope = torch.from_numpy(maps).float(), envelope

    def __call__(self, cond: Conditioning, v: int, s: Setting) -> Conditioning:
        i, ref = self.cfg.velocities.index(v), self.cfg.velocities.index(self.cfg.reference)
        if i == ref:
            return cond
        h, correction = cond.h, None
        if s.method in ("mean", "mean+tilt"):
            h = normalize_h(h + s.strength * self.velocity.shift(v, self.cfg.reference).to(h))
        if s.method == "lsq":
            shift = torch.cat([h, torch.ones_like(h[:, :1])], 1) @ self.maps[i].to(h)   # [1, h_dim]
            h = normalize_h(h + s.strength * shift)
        if s.method in ("tilt", "env", "mean+tilt"):
            correction = s.strength * self.velocity.tilt(v, self.cfg.reference).to(h)   # [n_mels], as the engine
        if s.method == "env":
            correction = correction[:, None] + s.strength * self.envelope[i].to(h)   # [n_mels, n_frames]
        deltas = cond.deltas
        if s.rerun_h and self.engine.nets.H is not None:
            nets = self.engine.nets
            midi = torch.full((1,), cond.root_note, dtype=torch.long, device=h.device)
            deltas = hyper_offsets(nets.G, nets.f, nets.H, h, midi)
        return replace(cond, h=h, deltas=deltas, mel_correction=correction)


@torch.inference_mode()
def check_pair(engine: Engine, real: np.ndarray, key: int, mover: Mover, settings: list[Setting],
               cfg: FitConfig) -> dict:
    """Per velocity: centroid, attack, pitch and MFCC statistics of the real notes ``[V, T]`` and of the
    generated ones for each setting; the reference render's neighbouring keys' MFCC statistics."""
    rate = engine.mel_cfg.sample_rate
    ref = cfg.velocities.index(cfg.reference)
    cond = engine.conditioning(engine.load_sample(Audio(real[ref], rate), midi=key))
    base = engine.render_waves(cond, [key, key - 1, key + 1], rate)     # reference, neighbours
    yin = fm.YinPitch()

    def shape(waves: list[np.ndarray]) -> dict:
        return {"centroid_hz": [spectral_centroid_hz(w, rate) for w in waves],
                "attack_s": [attack_time_s(w, rate) for w in waves],
                "mfcc": fm.mfcc_stats(np.stack(waves), rate).tolist()}

    out = {"key": int(key), "real": shape(list(real)), "neighbours_mfcc": fm.mfcc_stats(base[1:], rate).tolist()}
    for s in settings:
        waves = [base[0] if v == cfg.reference else engine.render_waves(mover(cond, v, s), [key], rate)[0]
                 for v in cfg.velocities]
        out[s.label] = shape(waves)
        out[s.label]["pitch_cents"] = [100 * ((yin.midi(w, rate) or np.nan) - key) for w in waves]
    return out


def curves(pairs: list[dict], side: str, cfg: FitConfig) -> dict:
    """Per velocity: centroid ratio and attack time (mean, sd over pairs); for a generated side also
    how often its softest-to-loudest change has the real one's sign, and how far it is from the real."""
    ref = cfg.velocities.index(cfg.reference)
    c = np.array([p[side]["centroid_hz"] for p in pairs])
    a = np.array([p[side]["attack_s"] for p in pairs]) * 1000
    ratio = c / np.maximum(c[:, ref: ref + 1], 1e-6)
    out = {"centroid_ratio_mean": ratio.mean(0).round(4).tolist(), "centroid_ratio_sd": ratio.std(0).round(4).tolist(),
           "centroid_hz_mean": c.mean(0).round(1).tolist(), "attack_ms_mean": a.mean(0).round(1).tolist(),
           "attack_ms_sd": a.std(0).round(1).tolist()}
    if side != "real":
        real = np.array([p["real"]["centroid_hz"] for p in pairs])
        real_ratio = real / np.maximum(real[:, ref: ref + 1], 1e-6)
        sign = lambda s, q: np.sign(np.array([p[s][q][-1] - p[s][q][0] for p in pairs]))  # noqa: E731
        agree = sign("real", "centroid_hz") == sign(side, "centroid_hz")
        changing = np.abs(real_ratio[:, 0] - real_ratio[:, -1]) >= cfg.changing
        out["centroid_sign_agreement"] = float(np.mean(agree))
        out["centroid_sign_agreement_changing"] = float(np.mean(agree[changing])) if changing.any() else float("nan")
        out["changing_pairs"] = int(changing.sum())
        out["attack_sign_agreement"] = float(np.mean(sign("real", "attack_s") == sign(side, "attack_s")))
        # How far the mean curve is from the real one, and how far each pair's curve is from its own.
        out["curve_error"] = round(float(np.sqrt(((ratio.mean(0) - real_ratio.mean(0)) ** 2).mean())), 4)
        out["pair_error"] = round(float(np.sqrt(((ratio - real_ratio) ** 2).mean())), 4)
        soft_real, soft_gen = real_ratio[:, 0] - real_ratio[:, -1], ratio[:, 0] - ratio[:, -1]
        out["softest_loudest_corr"] = round(float(np.corrcoef(soft_real, soft_gen)[0, 1]), 3) if soft_gen.std() > 0 else 0.0
        pitch = np.abs(np.array([p[side]["pitch_cents"] for p in pairs], float))
        out["pitch_cents_median"] = np.nanmedian(pitch, axis=0).round(1).tolist()
    return out


def same_instrument(pairs: list[dict], sides: list[str], cfg: FitConfig) -> dict:
    """MFCC-statistics distance of each velocity's note to the reference note of its key (z-scored
    over the generated reference notes and their neighbouring keys), against neighbouring keys."""
    ref = cfg.velocities.index(cfg.reference)
    base = np.concatenate([[p[sides[0]]["mfcc"][ref] for p in pairs]] + [p["neighbours_mfcc"] for p in pairs])
    scale = base.std(0) + 1e-6
    dist = lambda a, b: np.sqrt((((np.asarray(a) - np.asarray(b)) / scale) ** 2).sum(-1))  # noqa: E731
    out = {"neighbour key": round(float(np.mean([dist(p["neighbours_mfcc"], p[sides[0]]["mfcc"][ref]) for p in pairs])), 3)}
    for side in ["real"] + sides:
        d = np.array([dist(p[side]["mfcc"], p[side]["mfcc"][ref]) for p in pairs])   # [N, V]
        out[side] = d.mean(0).round(3).tolist()
    return out


def markdown(result: dict, cfg: FitConfig) -> str:
    vs = cfg.velocities
    lines = [f"# Velocity timbre: fit on {result['train_pairs']} pairs, checked on {result['held_out_pairs']} held-out pairs",
             "", "Centroid / centroid at the reference velocity (mean ± sd over pairs), attack 10-90 % (ms), "
             "per velocity:", "", "| setting | " + " | ".join(str(v) for v in vs) + " | attack " +
             f"{vs[0]} → {vs[-1]} ms | sign agr. centroid (changing) / attack | curve err | corr |",
             "|---|" + "---:|" * (len(vs) + 4)]
    for side, c in result["curves"].items():
        cells = [f"{a:.3f} ± {b:.3f}" for a, b in zip(c["centroid_ratio_mean"], c["centroid_ratio_sd"])]
        attack = f"{c['attack_ms_mean'][0]:.0f} → {c['attack_ms_mean'][-1]:.0f}"
        if side == "real":
            lines.append(f"| real | " + " | ".join(cells) + f" | {attack} | - | - | - |")
        else:
            lines.append(f"| {side} | " + " | ".join(cells) + f" | {attack} | {c['centroid_sign_agreement']:.2f} "
                         f"({c['centroid_sign_agreement_changing']:.2f}) / "
                         f"{c['attack_sign_agreement']:.2f} | {c['curve_error']:.3f} | {c['softest_loudest_corr']:.2f} |")
    lines += ["", "curve err: RMS over velocities of the mean generated ratio minus the mean real ratio; corr: over "
              "pairs, correlation of the softest-minus-loudest ratio change, generated vs real; (changing): over the "
              f"held-out pairs whose real centroid moves by {cfg.changing:.0%} or more.", "",
              "|pitch| (YIN, median cents off the key) and MFCC-statistics distance to the reference note of the "
              f"key (neighbouring keys: {result['same_instrument']['neighbour key']:.2f}):", "",
              "| setting | " + " | ".join(str(v) for v in vs) + " |", "|---|" + "---:|" * len(vs)]
    for side, c in result["curves"].items():
        if side != "real":
            lines.append(f"| {side}, pitch | " + " | ".join(f"{x:.1f}" for x in c["pitch_cents_median"]) + " |")
    for side, d in result["same_instrument"].items():
        if side != "neighbour key":
            lines.append(f"| {side}, MFCC dist | " + " | ".join(f"{x:.2f}" for x in d) + " |")
    lines += ["", f"Ridge map: weight {result['ridge_weight']:g}, leave-presets-out MSE {result['ridge']}"]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict:
    cfg = FitConfig(font=args.font, fit_min_centroid_change=args.fit_min_centroid_change)
    settings = [Setting.parse(s) for s in args.settings]
    t0 = time.perf_counter()
    engine = Engine(args.weights, device="cpu", num_threads=args.threads)
    notes = switched_notes(engine, cfg, args.limit, args.cache)
    ref = cfg.velocities.index(cfg.reference)
    train, test = ~notes.held, notes.held
    if cfg.fit_min_centroid_change > 0:
        rate = engine.mel_cfg.sample_rate
        soft, loud = (np.array([spectral_centroid_hz(notes.waves[i, j], rate) for i in range(len(notes.waves))])
                      for j in (0, ref))
        train &= np.abs(soft / np.maximum(loud, 1e-6) - 1) >= cfg.fit_min_centroid_change
    offsets = fit(notes.h[train], ref)
    maps, weight, ridge_info = fit_map(notes.h[train], notes.presets[train], ref)
    tilt, envelope = fit_tilt(engine, notes.waves[train], ref)
    meta = {"font": Path(cfg.font).name, "presets": notes.counts["presets"], "train_pairs": int(train.sum()),
            "keys": list(cfg.keys), "reference_velocity": cfg.reference, "held_out_every": cfg.held_out_every,
            "renderer": "fluidsynth", "f_fingerprint": engine.nets.fingerprint}
    if args.write:
        save_velocity_timbre(Path(args.weights or default_weights_dir()) / VELOCITY_FILE, np.array(cfg.velocities),
                             torch.from_numpy(offsets), meta, tilt)
    mover = Mover(engine, cfg, offsets, maps, tilt, envelope)
    pairs = [check_pair(engine, notes.waves[i], int(notes.keys[i]), mover, settings, cfg) for i in np.flatnonzero(test)]
    sides = [s.label for s in settings]
    result = {"config": asdict(cfg), "meta": meta, "train_pairs": int(train.sum()), "held_out_pairs": len(pairs),
              "switched_share": notes.counts["switched_pairs"] / max(notes.counts["valid_pairs"], 1),
              "offset_rms_per_velocity": np.sqrt((offsets ** 2).mean(-1)).round(4).tolist(),
              "ridge_weight": weight, "ridge": ridge_info, "tilt": tilt.numpy().round(4).tolist(),
              "envelope": envelope.numpy().round(3).tolist(),
              "curves": {side: curves(pairs, side, cfg) for side in ["real"] + sides},
              "same_instrument": same_instrument(pairs, sides, cfg),
              "pairs": pairs, "seconds": round(time.perf_counter() - t0, 1)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--font", default=FitConfig.font)
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default: assets/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for velocity_timbre.json and .md")
    parser.add_argument("--write", action="store_true", help="save the fit beside the weights")
    parser.add_argument("--settings", nargs="+", default=["tilt@1", "mean@1"], help="METHOD@STRENGTH[+H] (see above)")
    parser.add_argument("--cache", type=Path, default=None, help="an .npz keeping the real notes and h between runs")
    parser.add_argument("--fit-min-centroid-change", type=float, default=0.0,
                        help="fit only on training pairs whose softest note's centroid moves this share")
    parser.add_argument("--limit", type=int, default=None, help="first N presets only (a quick look)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(result, FitConfig(font=args.font, fit_min_centroid_change=args.fit_min_centroid_change))
    write_results(args.out, "velocity_timbre", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
