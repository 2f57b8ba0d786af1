"""Check a velocity model on held-out pairs: do generated notes change with velocity as real ones do?

Per held-out pair, the real note at the reference velocity is the input sound; the engine renders its
key moved to each velocity by each setting and the generated notes' spectral centroid (ratio to the
reference note's) and attack time (10 -> 90 %, ratio to the reference note's) are set beside the real
notes' at the same velocities. A setting is ``METHOD[@STRENGTH]``:

- ``model``: the fitted model as the engine plays it (tilt and slower attack; ``engine.variations.at_velocity``);
- ``tilt``: its tilt only;
- ``mean``: h moved by the mean offsets (``velocity_strength``);
- ``previous``: a format /2 asset's per-velocity tilt table (linear between its velocities, held beyond).

For ``model`` and ``previous`` also the layers of 2..5 velocity layers as the engine renders them
(``Variations.layer_velocity``): centroid per layer and, between adjacent layers, the correlation
and mean absolute difference of the time-averaged log-mel spectra (dB). Beside them: the pitch of
each generated note (YIN, cents off the key) and the MFCC-statistics distance of each velocity's
note to the reference note, against the neighbouring keys' (as bench/variations.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine.instrument import Conditioning, Engine
from engine.key_cache import Variations
from engine.variations import VelocityTimbre, at_velocity
from models.evaluation import fidelity as fm
from models.evaluation.note_shape import attack_time_s, spectral_centroid_hz
from models.nets.layers import normalize_h
from models.signal.audio import Audio
from models.signal.mel import LogMel
from models.train.velocity import attack_log_ratios

if TYPE_CHECKING:
    from bench.velocity_timbre import FitConfig, Notes

LAYER_COUNTS = (2, 3, 4, 5)
DISTINCT = ("model", "previous")          # settings whose layers are compared


@dataclass(frozen=True)
class Setting:
    method: str = "model"
    strength: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Setting:
        method, _, strength = text.partition("@")
        if method not in ("model", "tilt", "mean", "previous"):
            raise SystemExit(f"unknown method {method!r} in {text!r}")
        return cls(method, float(strength or 1.0))

    @property
    def label(self) -> str:
        return self.method if self.strength == 1.0 else f"{self.method} x{self.strength:g}"


def moved(cond: Conditioning, velocity: int, s: Setting, cfg: FitConfig, timbre: VelocityTimbre,
          previous: tuple[np.ndarray, torch.Tensor] | None) -> Conditioning:
    """The reference note's conditioning moved to ``velocity`` by setting ``s``."""
    if velocity == cfg.reference:
        return cond
    if s.method == "previous":
        tilt = table_at(*previous, velocity) - table_at(*previous, cfg.reference)
        return replace(cond, mel_correction=s.strength * tilt.to(cond.h))
    v = Variations(velocity_tilt=s.strength if s.method in ("model", "tilt") else 0.0,
                   velocity_attack=s.strength if s.method == "model" else 0.0,
                   velocity_strength=s.strength if s.method == "mean" else 0.0, reference_velocity=cfg.reference)
    out, move = at_velocity(cond, velocity, v, timbre)
    return replace(out, h=normalize_h(out.h + move)) if bool(move.any()) else out


def table_at(velocities: np.ndarray, gains: torch.Tensor, velocity: float) -> torch.Tensor:
    """A per-velocity table's row ``[n_mels]`` at ``velocity``: linear between rows, held beyond them."""
    x = float(np.interp(velocity, velocities, np.arange(len(velocities))))
    i = min(int(x), len(velocities) - 2)
    return (1 - (x - i)) * gains[i] + (x - i) * gains[i + 1]


def layer_velocities(cfg: FitConfig) -> list[int]:
    """Every velocity a layer of 2..5 layers is rendered at."""
    v = {Variations(velocity_layers=n, reference_velocity=cfg.reference).layer_velocity(layer)
         for n in LAYER_COUNTS for layer in range(n)}
    return sorted(v)


@torch.inference_mode()
def generated_means(engine: Engine, cfg: FitConfig, waves: np.ndarray, keys: np.ndarray, timbre: VelocityTimbre,
                    s: Setting) -> tuple[np.ndarray, np.ndarray]:
    """Mean log centroid ratio and mean log attack ratio to the reference ``[V]`` of the pairs' notes
    ``[N, V, T]`` generated from each reference note by setting ``s``."""
    rate = engine.mel_cfg.sample_rate
    centroid, attack = [], []
    for real, key in zip(waves, keys):
        cond = engine.conditioning(engine.load_sample(Audio(real[cfg.ref], rate), midi=int(key)))
        notes = [engine.render_waves(moved(cond, v, s, cfg, timbre, None), [int(key)], rate)[0] for v in cfg.velocities]
        centroid.append(np.log([max(spectral_centroid_hz(w, rate), 1e-6) for w in notes]))
        attack.append([attack_time_s(w, rate) for w in notes])
    centroid = np.array(centroid)
    return (centroid - centroid[:, cfg.ref: cfg.ref + 1]).mean(0), attack_log_ratios(np.array(attack), cfg.ref).mean(0)


@torch.inference_mode()
def check_pair(engine: Engine, real: np.ndarray, key: int, cfg: FitConfig, settings: list[Setting],
               timbre: VelocityTimbre, previous: tuple[np.ndarray, torch.Tensor] | None) -> dict:
    """Centroid, attack, pitch and MFCC statistics of the real notes ``[V, T]`` and of each setting's;
    layer spectra and centroids for the ``DISTINCT`` settings."""
    rate = engine.mel_cfg.sample_rate
    cond = engine.conditioning(engine.load_sample(Audio(real[cfg.ref], rate), midi=key))
    base = engine.render_waves(cond, [key, key - 1, key + 1], rate)     # reference, neighbours
    yin, log_mel = fm.YinPitch(), LogMel(engine.mel_cfg)

    def shape(waves: list[np.ndarray]) -> dict:
        return {"centroid_hz": [spectral_centroid_hz(w, rate) for w in waves],
                "attack_s": [attack_time_s(w, rate) for w in waves],
                "mfcc": fm.mfcc_stats(np.stack(waves), rate).tolist()}

    out = {"key": int(key), "real": shape(list(real)), "neighbours_mfcc": fm.mfcc_stats(base[1:], rate).tolist()}
    for s in settings:
        render = lambda v: base[0] if v == cfg.reference else engine.render_waves(  # noqa: E731
            moved(cond, v, s, cfg, timbre, previous), [key], rate)[0]
        waves = {v: render(v) for v in cfg.velocities}
        out[s.label] = shape([waves[v] for v in cfg.velocities])
        out[s.label]["pitch_cents"] = [100 * ((yin.midi(w, rate) or np.nan) - key) for w in waves.values()]
        if s.method in DISTINCT and s.strength == 1.0:
            layers = {v: waves[v] if v in waves else render(v) for v in layer_velocities(cfg)}
            spectra = {v: (20 / np.log(10)) * log_mel(torch.from_numpy(fm.peak_normalised(w))[None])[0].exp()
                       .mean(-1).clamp_min(engine.mel_cfg.log_floor).log().numpy() for v, w in layers.items()}
            out[s.label]["layers"] = {str(v): {"centroid_hz": spectral_centroid_hz(w, rate),
                                               "spectrum_db": spectra[v].tolist()} for v, w in layers.items()}
    return out


def check_font(engine: Engine, cfg: FitConfig, notes: Notes, timbre: VelocityTimbre,
               previous: tuple[np.ndarray, torch.Tensor] | None, settings: list[Setting]) -> dict:
    """Every held-out pair of one font checked; the curves, layers and same-instrument tables."""
    settings = [s for s in settings if s.method != "previous" or previous is not None]
    pairs = [check_pair(engine, notes.waves[i], int(notes.keys[i]), cfg, settings, timbre, previous)
             for i in np.flatnonzero(notes.held)]
    sides = [s.label for s in settings]
    layered = [side for side in sides if pairs and "layers" in pairs[0][side]]
    result = {"held_out_pairs": len(pairs), "curves": {side: curves(pairs, side, cfg) for side in ["real"] + sides},
              "same_instrument": same_instrument(pairs, sides, cfg),
              "layers": {side: layers(pairs, side, cfg) for side in layered}}
    for p in pairs:                                    # the spectra are summarised above; keep the JSON small
        for side in sides:
            for layer in p[side].get("layers", {}).values():
                layer.pop("spectrum_db")
    result["pairs"] = pairs
    return result


def curves(pairs: list[dict], side: str, cfg: FitConfig) -> dict:
    """Per velocity: centroid ratio and attack ratio to the reference (mean, sd over pairs; the attack
    as the mean log ratio, shown as a ratio); for a generated side how often its softest-to-reference
    change has the real one's sign, and how far its mean curve is from the real one."""
    ref = cfg.ref
    c = np.array([p[side]["centroid_hz"] for p in pairs])
    ratio = c / np.maximum(c[:, ref: ref + 1], 1e-6)
    a = np.array([p[side]["attack_s"] for p in pairs])
    log_a = attack_log_ratios(a, ref)
    out = {"centroid_ratio_mean": ratio.mean(0).round(4).tolist(), "centroid_ratio_sd": ratio.std(0).round(4).tolist(),
           "attack_ms_mean": (1000 * a.mean(0)).round(1).tolist(),
           "attack_ms_median": (1000 * np.median(a, 0)).round(1).tolist(),
           "attack_log_ratio_mean": log_a.mean(0).round(4).tolist(),
           "attack_log_ratio_sd": log_a.std(0).round(4).tolist()}
    if side == "real":
        return out
    real = np.array([p["real"]["centroid_hz"] for p in pairs])
    real_ratio = real / np.maximum(real[:, ref: ref + 1], 1e-6)
    real_log_a = attack_log_ratios(np.array([p["real"]["attack_s"] for p in pairs]), ref)
    agree = np.sign(real_ratio[:, 0] - 1) == np.sign(ratio[:, 0] - 1)
    changing = np.abs(real_ratio[:, 0] - 1) >= cfg.changing
    out["centroid_sign_agreement"] = float(np.mean(agree))
    out["centroid_sign_agreement_changing"] = float(np.mean(agree[changing])) if changing.any() else float("nan")
    out["changing_pairs"] = int(changing.sum())
    slower = np.abs(real_log_a[:, 0]) >= cfg.attack_changing
    out["attack_sign_agreement_changing"] = (float(np.mean(np.sign(real_log_a[slower, 0]) == np.sign(log_a[slower, 0])))
                                             if slower.any() else float("nan"))
    out["attack_changing_pairs"] = int(slower.sum())
    out["attack_real_slower_share"] = float(np.mean(real_log_a[:, 0] >= cfg.attack_changing))
    out["attack_real_faster_share"] = float(np.mean(real_log_a[:, 0] <= -cfg.attack_changing))
    out["curve_error"] = round(float(np.sqrt(((ratio.mean(0) - real_ratio.mean(0)) ** 2).mean())), 4)
    out["attack_curve_error"] = round(float(np.sqrt(((log_a.mean(0) - real_log_a.mean(0)) ** 2).mean())), 4)
    soft_real, soft_gen = real_ratio[:, 0] - 1, ratio[:, 0] - 1
    out["softest_corr"] = round(float(np.corrcoef(soft_real, soft_gen)[0, 1]), 3) if soft_gen.std() > 0 else 0.0
    pitch = np.abs(np.array([p[side]["pitch_cents"] for p in pairs], float))
    out["pitch_cents_median"] = np.nanmedian(pitch, axis=0).round(1).tolist()
    return out


def layers(pairs: list[dict], side: str, cfg: FitConfig) -> dict:
    """Per layer count: each layer's velocity and centroid ratio to the main layer (mean over pairs);
    between adjacent layers, the correlation and mean |difference| (dB) of their spectra."""
    out = {}
    for n in LAYER_COUNTS:
        v = Variations(velocity_layers=n, reference_velocity=cfg.reference)
        at = [v.layer_velocity(layer) for layer in range(n)]
        main = str(at[v.main_layer])
        got = [p[side]["layers"] for p in pairs]
        ratio = [float(np.mean([g[str(a)]["centroid_hz"] / max(g[main]["centroid_hz"], 1e-6) for g in got]))
                 for a in at]
        corr, diff = [], []
        for lo, hi in zip(at[:-1], at[1:]):
            x = np.array([g[str(lo)]["spectrum_db"] for g in got])
            y = np.array([g[str(hi)]["spectrum_db"] for g in got])
            corr.append(float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(x, y)])))
            diff.append(float(np.abs(x - y).mean()))
        out[str(n)] = {"velocities": at, "centroid_ratio": np.round(ratio, 4).tolist(),
                       "adjacent_corr": np.round(corr, 5).tolist(), "adjacent_abs_db": np.round(diff, 3).tolist()}
    return out


def same_instrument(pairs: list[dict], sides: list[str], cfg: FitConfig) -> dict:
    """MFCC-statistics distance of each velocity's note to the reference note of its key (z-scored
    over the generated reference notes and their neighbouring keys), against neighbouring keys."""
    if not pairs or not sides:
        return {}
    ref = cfg.ref
    base = np.concatenate([[p[sides[0]]["mfcc"][ref] for p in pairs]] + [p["neighbours_mfcc"] for p in pairs])
    scale = base.std(0) + 1e-6
    dist = lambda a, b: np.sqrt((((np.asarray(a) - np.asarray(b)) / scale) ** 2).sum(-1))  # noqa: E731
    neighbours = [dist(p["neighbours_mfcc"], p[sides[0]]["mfcc"][ref]) for p in pairs]
    out = {"neighbour key": round(float(np.mean(neighbours)), 3)}
    for side in ["real"] + sides:
        out[side] = np.array([dist(p[side]["mfcc"], p[side]["mfcc"][ref]) for p in pairs]).mean(0).round(3).tolist()
    return out


def markdown(result: dict) -> str:
    cfg, fit, meta = result["config"], result["fit"], result["meta"]
    lines = [f"# Velocity model: fitted on {meta['train_pairs']} pairs of {', '.join(meta['fonts'])}", "",
             f"Curve c(v) at {cfg['velocities']}: {fit['curve']} (RMS log gain; before calibration "
             f"{fit['uncalibrated_curve']}); rank-one residual {fit['tilt_residual']:.3f} of the per-velocity "
             f"table; attack ratio per velocity {fit['attack_ratio']} (log slope {fit['attack_log_slope']:g}).", ""]
    for font, check in result["checks"].items():
        lines += [f"## {font}: {check['held_out_pairs']} held-out pairs", ""]
        lines += centroid_table(check["curves"], cfg) + attack_table(check["curves"], cfg)
        for side, by_n in check["layers"].items():
            lines += layer_table(side, by_n)
        lines += same_table(check, cfg) + [""]
    lines += ["sign: share of pairs whose softest note's change (centroid; attack) has the real note's sign, over "
              "all pairs and (in brackets) over those whose real change is at least 1 % (centroid) or 10 % (attack); "
              "curve err: RMS over velocities of the mean generated curve minus the mean real one (attack: of the "
              "mean log ratio); corr: over pairs, correlation of the softest note's centroid change, generated vs "
              "real."]
    return "\n".join(lines) + "\n"


def _head(cfg: dict, extra: str) -> list[str]:
    vs = cfg["velocities"]
    return ["| setting | " + " | ".join(str(v) for v in vs) + " |" + extra,
            "|---|" + "---:|" * (len(vs) + extra.count("|"))]


def centroid_table(cv: dict, cfg: dict) -> list[str]:
    lines = ["Spectral centroid / the reference note's (mean ± sd over pairs):", ""]
    lines += _head(cfg, " sign (changing) | curve err | corr |")
    for side, c in cv.items():
        cells = " | ".join(f"{a:.3f} ± {b:.3f}" for a, b in zip(c["centroid_ratio_mean"], c["centroid_ratio_sd"]))
        tail = " - | - | - |" if side == "real" else (
            f" {c['centroid_sign_agreement']:.2f} ({c['centroid_sign_agreement_changing']:.2f}, {c['changing_pairs']})"
            f" | {c['curve_error']:.3f} | {c['softest_corr']:.2f} |")
        lines.append(f"| {side} | {cells} |{tail}")
    return lines + [""]


def attack_table(cv: dict, cfg: dict) -> list[str]:
    lines = ["Attack (10 → 90 %) / the reference note's: exp(mean log ratio) (sd of the log ratio); median "
             "attack at the reference:", ""]
    lines += _head(cfg, " slower / faster share | sign (changing) | curve err |")
    ref = cfg["velocities"].index(cfg["reference"])
    for side, c in cv.items():
        cells = " | ".join(f"×{np.exp(a):.3f} ({b:.2f})" for a, b in zip(c["attack_log_ratio_mean"],
                                                                        c["attack_log_ratio_sd"]))
        if side == "real":
            lines.append(f"| real ({c['attack_ms_median'][ref]:.0f} ms) | {cells} | - | - | - |")
        else:
            lines.append(f"| {side} | {cells} | {c['attack_real_slower_share']:.2f} / "
                         f"{c['attack_real_faster_share']:.2f} (real) | {c['attack_sign_agreement_changing']:.2f} "
                         f"({c['attack_changing_pairs']}) | {c['attack_curve_error']:.3f} |")
    return lines + [""]


def layer_table(side: str, by_n: dict) -> list[str]:
    lines = [f"Layers of `{side}` (velocity: centroid / the main layer's; adjacent layers: spectrum correlation, "
             "mean |Δ| dB):", "", "| layers | velocity: centroid | adjacent corr | adjacent |Δ| dB |",
             "|---:|---|---|---|"]
    for n, d in by_n.items():
        cells = ", ".join(f"{v}: {r:.3f}" for v, r in zip(d["velocities"], d["centroid_ratio"]))
        lines.append(f"| {n} | {cells} | {', '.join(f'{x:.5f}' for x in d['adjacent_corr'])} | "
                     f"{', '.join(f'{x:.2f}' for x in d['adjacent_abs_db'])} |")
    return lines + [""]


def same_table(check: dict, cfg: dict) -> list[str]:
    same = check["same_instrument"]
    if not same:
        return []
    lines = [f"MFCC-statistics distance to the reference note (neighbouring keys: {same['neighbour key']:.2f}) and "
             "|pitch| (YIN, median cents off the key):", ""] + _head(cfg, "")
    lines += [f"| {side}, MFCC | " + " | ".join(f"{x:.2f}" for x in d) + " |"
              for side, d in same.items() if side != "neighbour key"]
    lines += [f"| {side}, pitch | " + " | ".join(f"{x:.1f}" for x in c["pitch_cents_median"]) + " |"
              for side, c in check["curves"].items() if side != "real"]
    return lines
