"""Learn how h moves with velocity from real notes, and check it on held-out instruments.

SoundFont presets (FluidR3 GM by default) are rendered with the fluidsynth CLI at several velocities
and keys; ``h = f(x)`` comes from the shipped f (``Engine.timbre``: the peak-normalised note). Only
(preset, key) pairs whose notes differ in timbre across velocity count (velocity-switched samples;
a synth that only scales the gain gives the same h after peak normalisation). Every fourth preset is
held out. The fit is the mean over training pairs of ``h(v) - h(reference)`` per velocity v; with
``--write`` it is saved as ``assets/velocity_timbre.safetensors``.

Check on the held-out pairs: the real note at the reference velocity is the input sound; the engine
renders its key with ``h + shift(v)`` for each v, and the spectral centroid and attack time of the
generated notes are compared with the real notes' at the same velocities (ratios to the reference).

    python -m bench.velocity_timbre --out /tmp/vel --write
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.instrument import Engine, default_weights_dir
from engine.variations import VELOCITY_FILE, VelocityTimbre, save_velocity_timbre
from models.data.reference import CheckConfig, fluidsynth_render
from models.data.soundfont import read_font
from models.errors import SilentAudioError
from models.evaluation.note_shape import attack_time_s, spectral_centroid_hz
from models.nets.layers import normalize_h
from models.signal.audio import Audio


@dataclass(frozen=True)
class FitConfig:
    font: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    keys: tuple[int, ...] = (48, 60, 72)
    velocities: tuple[int, ...] = (30, 45, 64, 80, 100, 115, 127)
    reference: int = 100
    held_out_every: int = 4        # presets i % 4 == 3 are held out
    min_change: float = 0.02       # RMS of h(lowest) - h(highest) for a pair to count as velocity-switched
    presets_per_render: int = 16


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


def fit(h: np.ndarray, use: np.ndarray, ref: int) -> np.ndarray:
    """Mean ``h(v) - h(ref)`` ``[V, h_dim]`` over the pairs marked in ``use [P, K]``."""
    diffs = h[use] - h[use][:, ref: ref + 1]       # [N, V, h_dim]
    return np.nanmean(diffs, axis=0)


@torch.inference_mode()
def check_pair(engine: Engine, real: np.ndarray, key: int, velocity: VelocityTimbre, cfg: FitConfig) -> dict:
    """Centroid and attack per velocity of the real notes ``[V, T]`` and of the generated ones."""
    rate = engine.mel_cfg.sample_rate
    ref = cfg.velocities.index(cfg.reference)
    cond = engine.conditioning(engine.load_sample(Audio(real[ref], rate), midi=key))
    generated = []
    for v in cfg.velocities:
        h = normalize_h(cond.h + velocity.shift(v, cfg.reference).to(cond.h))
        moved = type(cond)(h=h, deltas=cond.deltas, root_note=cond.root_note)
        generated.append(engine.render_waves(moved, [key], rate)[0])
    shape = lambda waves: {"centroid_hz": [spectral_centroid_hz(w, rate) for w in waves],  # noqa: E731
                           "attack_s": [attack_time_s(w, rate) for w in waves]}
    return {"real": shape(real), "generated": shape(generated)}


def curves(pairs: list[dict], cfg: FitConfig) -> dict:
    """Per velocity: centroid ratio and attack time (mean, sd over pairs), real vs generated, and how
    often the generated change from the softest to the loudest note has the real one's sign."""
    ref = cfg.velocities.index(cfg.reference)
    out = {}
    for side in ("real", "generated"):
        c = np.array([p[side]["centroid_hz"] for p in pairs])
        a = np.array([p[side]["attack_s"] for p in pairs]) * 1000
        ratio = c / np.maximum(c[:, ref: ref + 1], 1e-6)
        out[side] = {"centroid_ratio_mean": ratio.mean(0).round(4).tolist(), "centroid_ratio_sd": ratio.std(0).round(4).tolist(),
                     "centroid_hz_mean": c.mean(0).round(1).tolist(), "attack_ms_mean": a.mean(0).round(1).tolist(),
                     "attack_ms_sd": a.std(0).round(1).tolist()}
    sign = lambda side, q: np.sign(np.array([p[side][q][-1] - p[side][q][0] for p in pairs]))  # noqa: E731
    out["centroid_sign_agreement"] = float(np.mean(sign("real", "centroid_hz") == sign("generated", "centroid_hz")))
    out["attack_sign_agreement"] = float(np.mean(sign("real", "attack_s") == sign("generated", "attack_s")))
    return out


def markdown(result: dict, cfg: FitConfig) -> str:
    lines = [f"# Velocity timbre: fit on {result['train_pairs']} pairs, checked on {result['held_out_pairs']} held-out pairs",
             "", "| velocity | " + " | ".join(str(v) for v in cfg.velocities) + " |",
             "|---|" + "---:|" * len(cfg.velocities)]
    c = result["curves"]
    for side in ("real", "generated"):
        m, s = c[side]["centroid_ratio_mean"], c[side]["centroid_ratio_sd"]
        lines.append(f"| centroid / centroid@{cfg.reference}, {side} | " + " | ".join(f"{a:.3f} ± {b:.3f}" for a, b in zip(m, s)) + " |")
    for side in ("real", "generated"):
        m, s = c[side]["attack_ms_mean"], c[side]["attack_ms_sd"]
        lines.append(f"| attack 10-90 % (ms), {side} | " + " | ".join(f"{a:.0f} ± {b:.0f}" for a, b in zip(m, s)) + " |")
    lines += ["", f"Softest -> loudest change with the real note's sign: centroid {c['centroid_sign_agreement']:.2f}, "
              f"attack {c['attack_sign_agreement']:.2f} (held-out pairs)."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict:
    cfg = FitConfig(font=args.font)
    t0 = time.perf_counter()
    engine = Engine(args.weights, device="cpu", num_threads=args.threads)
    presets = [p for p in read_font(cfg.font).melodic() if p.bank == 0][: args.limit]
    notes = render_notes(cfg, presets)
    h = timbres(engine, notes, cfg.keys)
    ref = cfg.velocities.index(cfg.reference)
    valid = ~np.isnan(h).any(axis=(2, 3))
    change = np.sqrt(np.nanmean((h[:, :, 0] - h[:, :, -1]) ** 2, axis=-1))
    switched = valid & (change > cfg.min_change)
    held = (np.arange(len(presets)) % cfg.held_out_every == cfg.held_out_every - 1)[:, None]
    train, test = switched & ~held, switched & held
    offsets = fit(h, train, ref)
    velocity = VelocityTimbre(np.array(cfg.velocities, float), torch.from_numpy(offsets), {})
    meta = {"font": Path(cfg.font).name, "presets": len(presets), "train_pairs": int(train.sum()),
            "keys": list(cfg.keys), "reference_velocity": cfg.reference, "held_out_every": cfg.held_out_every,
            "renderer": "fluidsynth", "f_fingerprint": engine.nets.fingerprint}
    if args.write:
        save_velocity_timbre(Path(args.weights or default_weights_dir()) / VELOCITY_FILE, np.array(cfg.velocities),
                             torch.from_numpy(offsets), meta)
    pairs = [check_pair(engine, notes[p, k], cfg.keys[k], velocity, cfg) for p, k in zip(*np.nonzero(test))]
    result = {"config": asdict(cfg), "meta": meta, "train_pairs": int(train.sum()), "held_out_pairs": len(pairs),
              "switched_share": float(switched.sum() / max(valid.sum(), 1)),
              "offset_rms_per_velocity": np.sqrt((offsets ** 2).mean(-1)).round(4).tolist(),
              "curves": curves(pairs, cfg), "pairs": pairs, "seconds": round(time.perf_counter() - t0, 1)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--font", default=FitConfig.font)
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default: assets/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for velocity_timbre.json and .md")
    parser.add_argument("--write", action="store_true", help="save the fit beside the weights")
    parser.add_argument("--limit", type=int, default=None, help="first N presets only (a quick look)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "velocity_timbre.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result, FitConfig(font=args.font))
    (args.out / "velocity_timbre.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
