"""How far apart round robins are, against neighbouring keys and other instruments; their pitch.

For each input (the demo one-shots in assets/demo, or files / an out-of-set suite folder), the engine
renders keys 48, 60 and 72 (the main variation, z = 0), their neighbours (+-1 semitone) and round
robins 1..3 at several noise scales (``rr_z_scale``, ``rr_h_scale``; engine/variations.py). Distances:

- MFCC statistics (``models.evaluation.fidelity.mfcc_stats``; nothing trained), Euclidean after
  z-scoring each dimension over every note of the run;
- the evaluation instrument classifier's features (trained apart from f): 1 - cosine;
- f's own h of the rendered note: RMS difference (h has RMS 1).

"round robin" is a variation against the main one at the same key; "neighbour key" is the main
variation at k against k +- 1 (the change a player hears between adjacent keys); "instruments" is
the same key of two different inputs. Pitch: YIN (``fidelity.YinPitch``) on every note, cents off
the key. Spreads are over inputs x keys (x round robins): mean ± sd and quartiles.

G's mapping normalises z (``normalize_2nd_moment``), so every non-zero ``rr_z_scale`` gives the same
notes: the z rows differ only in h.

``--keyboard LO-HI`` measures instead whether every variation sounds at its key: the product's path
(``Engine.render`` and ``Engine.render_variations`` with ``Variations(velocity_layers,
round_robins)``, default settings, refinement at ``--refine``) renders keys LO..HI (every
``--key-step``-th) at the model's rate, and independent judges (YIN, and PESTO when installed; see
``models.evaluation.fidelity``) read each key's pitch on its voiced part. Per input and variation
(layer, round robin): the share of keys within 50 cents ("unvoiced" counts as a miss); then mean ± sd
over inputs, per variation, over every variation pooled and over all but the main one (main layer,
round robin 0: the plain render of the same run).

    python -m bench.variations --out /tmp/variations
    python -m bench.variations --suite /work/main/carry/suite --every 6 --out /tmp/variations_suite
    python -m bench.variations --keyboard 36-90 --refine 0 --out /tmp/variations_keyboard
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from bench.results import write_results
from engine.instrument import Conditioning, Engine, default_weights_dir
from engine.key_cache import Variations
from engine.refine import DEFAULT_REFINEMENT
from engine.variations import variant
from models import checkpoint
from models.evaluation import fidelity as fm
from models.nets.classifiers import InstrumentClassifier
from models.signal.mel import LogMel

KEYS = (48, 60, 72)
SCALES = ((0.5, 0.0), (1.0, 0.0), (2.0, 0.0), (0.0, 0.05), (0.0, 0.1), (0.0, 0.2), (1.0, 0.05), (1.0, 0.1))
ROUND_ROBINS = 3


def inputs_of(args: argparse.Namespace) -> list[Path]:
    if args.inputs:
        return list(args.inputs)
    if args.suite is not None:
        return sorted(p for p in args.suite.iterdir() if p.suffix in (".wav", ".flac"))[:: args.every]
    return sorted((default_weights_dir() / "demo").glob("*.wav"))


@torch.inference_mode()
def render_input(engine: Engine, cond: Conditioning) -> dict[str, np.ndarray]:
    """Waves per name: ``main`` ``[K, T]``, ``up``/``down`` neighbours, ``rr:<z>:<h>`` ``[R, K, T]``."""
    rate = engine.mel_cfg.sample_rate
    out = {"main": engine.render_waves(cond, list(KEYS), rate),
           "up": engine.render_waves(cond, [k + 1 for k in KEYS], rate),
           "down": engine.render_waves(cond, [k - 1 for k in KEYS], rate)}
    for z_scale, h_scale in SCALES:
        v = Variations(round_robins=ROUND_ROBINS + 1, velocity_layers=1, rr_z_scale=z_scale, rr_h_scale=h_scale)
        out[f"rr:{z_scale}:{h_scale}"] = np.stack([
            engine.render_waves(variant(cond, 0, rr, v, None, engine.nets.z_dim), list(KEYS), rate)
            for rr in range(1, ROUND_ROBINS + 1)])
    return out


class Features:
    """MFCC statistics, classifier features and f's h of waves ``[B, T]`` at the model's rate."""

    def __init__(self, engine: Engine, classifier_path: Path) -> None:
        self.engine, self.rate = engine, engine.mel_cfg.sample_rate
        self.log_mel = LogMel(engine.mel_cfg)
        self.classifier = checkpoint.load(classifier_path, InstrumentClassifier)[0].eval()

    @torch.inference_mode()
    def __call__(self, waves: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.stack([fm.peak_normalised(w) for w in waves]))
        mel = self.log_mel(x)
        clf = torch.nn.functional.normalize(self.classifier.features(mel).float(), dim=1).numpy()
        h = self.engine.nets.f(mel.to(self.engine.device)).float().cpu().numpy()
        return {"mfcc": fm.mfcc_stats(waves, self.rate), "classifier": clf, "h": h}


def distance(kind: str, a: np.ndarray, b: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Row-wise distances of feature rows ``a``, ``b`` ``[N, d]`` (see the module docstring)."""
    if kind == "mfcc":
        return np.sqrt((((a - b) / scale) ** 2).sum(axis=1))
    if kind == "classifier":
        return 1.0 - (a * b).sum(axis=1)
    return np.sqrt(((a - b) ** 2).mean(axis=1))


def spread(values: np.ndarray) -> dict:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0}
    q = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "mean": round(float(v.mean()), 4), "sd": round(float(v.std()), 4),
            "q25": round(float(q[0]), 4), "median": round(float(q[1]), 4), "q75": round(float(q[2]), 4)}


def measure(feats: dict[str, dict[str, np.ndarray]], pitches: dict[str, np.ndarray], n_inputs: int) -> dict:
    """Spreads of every distance and pitch error from the features of all inputs' renders."""
    mfcc_scale = np.concatenate([f["mfcc"] for f in feats.values()]).std(axis=0) + 1e-6
    K = len(KEYS)
    out: dict = {}
    for kind in ("mfcc", "classifier", "h"):
        scale = mfcc_scale if kind == "mfcc" else None
        main = feats["main"][kind].reshape(n_inputs, K, -1)
        d = {"neighbour key": np.concatenate([
            distance(kind, feats[n][kind], feats["main"][kind], scale) for n in ("up", "down")]),
            "instruments": np.concatenate([distance(kind, main[i], main[j], scale)
                                           for i, j in itertools.combinations(range(n_inputs), 2)] or [np.zeros(0)])}
        for name in feats:
            if name.startswith("rr:"):
                rr = feats[name][kind].reshape(ROUND_ROBINS, n_inputs * K, -1)
                d[name] = np.concatenate([distance(kind, r, feats["main"][kind], scale) for r in rr])
        out[kind] = {name: spread(v) for name, v in d.items()}
    out["pitch_cents"] = {name: spread(np.abs(v)) for name, v in pitches.items()}
    return out


def markdown(result: dict) -> str:
    lines = [f"# Round robins vs neighbouring keys vs instruments ({result['n_inputs']} inputs, keys {list(KEYS)})", ""]
    names = list(result["distances"]["mfcc"])
    lines += ["| variation | MFCC dist | classifier 1-cos | f's h RMS | |pitch| cents (YIN) |", "|---|---|---|---|---|"]
    for name in names:
        cells = []
        for kind in ("mfcc", "classifier", "h"):
            s = result["distances"][kind][name]
            cells.append(f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['q25']:.3f}, {s['q75']:.3f}]" if s["n"] else "-")
        p = result["distances"]["pitch_cents"].get(name, {"n": 0})
        cells.append(f"{p['median']:.1f} (q75 {p['q75']:.1f}, n {p['n']})" if p["n"] else "-")
        label = name.replace("rr:", "round robin z x").replace(":", ", h x ") if name.startswith("rr:") else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    p = result["distances"]["pitch_cents"]["main"]
    lines.append(f"| main (z = 0, h) | - | - | - | {p['median']:.1f} (q75 {p['q75']:.1f}, n {p['n']}) |")
    lines += ["", "Cells: mean ± sd [quartiles] over inputs x keys (x round robins); pitch: median |error| of the "
              "notes YIN hears as voiced."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    engine = Engine(args.weights, device="cpu", num_threads=args.threads)
    features = Features(engine, args.classifier)
    yin, rate = fm.YinPitch(), engine.mel_cfg.sample_rate
    waves: dict[str, list[np.ndarray]] = {}
    paths = inputs_of(args)
    for path in paths:
        sample = engine.load_sample(path)
        for name, w in render_input(engine, engine.conditioning(sample)).items():
            waves.setdefault(name, []).append(w)
    stacked = {n: np.concatenate([x.reshape(-1, x.shape[-1]) for x in w]) for n, w in waves.items()}
    # Every rr array is [R, K, T] per input: reorder to [R, inputs * K, T] rows, round robin first.
    for n in stacked:
        if n.startswith("rr:"):
            stacked[n] = np.stack(waves[n], axis=1).reshape(-1, stacked[n].shape[-1])
    keys_of = {"main": list(KEYS), "up": [k + 1 for k in KEYS], "down": [k - 1 for k in KEYS]}
    pitches = {}
    for n, w in stacked.items():
        ks = np.array(keys_of.get(n, list(KEYS)) * (len(w) // len(KEYS)))
        est = np.array([yin.midi(x, rate) or np.nan for x in w], float)
        pitches[n] = 100 * (est - ks)
    feats = {n: features(w) for n, w in stacked.items()}
    return {"inputs": [p.name for p in paths], "n_inputs": len(paths), "keys": list(KEYS),
            "scales": [list(s) for s in SCALES], "round_robins": ROUND_ROBINS,
            "distances": measure(feats, pitches, len(paths)), "seconds": round(time.perf_counter() - start, 1)}


TOLERANCE_CENTS = 50.0


def keyboard_waves(engine: Engine, path: Path, keys: list[int], v: Variations,
                   strength: float) -> dict[tuple[int, int], np.ndarray]:
    """``{(layer, rr): waves [K, T]}`` of every variation of ``keys``, as the sampler renders them."""
    refine = DEFAULT_REFINEMENT.at_strength(strength) if strength > 0 else None
    sample = engine.load_sample(path)
    rate = engine.mel_cfg.sample_rate
    main = engine.render(sample, keys=keys, sample_rate=rate, refine=refine)
    variants = engine.render_variations(sample, variations=v, keys=keys, sample_rate=rate, refine=refine)
    out = {}
    for layer, rr in [(v.main_layer, 0), *v.passes()]:
        notes = [main[k] if (layer, rr) == (v.main_layer, 0) else variants[(k, layer, rr)] for k in keys]
        length = max(n.samples.size for n in notes)
        out[(layer, rr)] = np.stack([np.pad(n.samples, (0, length - n.samples.size)) for n in notes])
    return out


def keyboard_spread(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {"mean": round(float(v.mean()), 4), "sd": round(float(v.std()), 4), "min": round(float(v.min()), 4)}


def run_keyboard(args: argparse.Namespace) -> dict:
    """Every variation's pitch over the keyboard (``--keyboard``; see the module docstring)."""
    start = time.perf_counter()
    lo, hi = (int(x) for x in args.keyboard.split("-"))
    keys = list(range(lo, hi + 1, args.key_step))
    v = Variations(round_robins=args.round_robins, velocity_layers=args.velocity_layers)
    engine = Engine(args.weights, device="cpu", num_threads=args.threads)
    rate = engine.mel_cfg.sample_rate
    judges = [fm.YinPitch()]
    try:
        judges.append(fm.PestoPitch("cpu"))
    except ImportError:
        pass
    names = [f"{layer}:{rr}" for layer, rr in [(v.main_layer, 0), *v.passes()]]
    per_input: dict = {}
    for path in inputs_of(args):
        t0 = time.perf_counter()
        waves = keyboard_waves(engine, path, keys, v, args.refine)
        render_s = time.perf_counter() - t0
        entry: dict = {"render_s": round(render_s, 1)}
        for judge in judges:
            cents = {f"{layer}:{rr}": fm.pitch_errors_cents(judge, w, keys, rate) for (layer, rr), w in waves.items()}
            entry[judge.name] = {
                "share": {n: round(float(np.mean(c <= TOLERANCE_CENTS)), 4) for n, c in cents.items()},
                "misses": {n: [[k, None if not np.isfinite(e) else round(float(e))] for k, e in zip(keys, c)
                               if not e <= TOLERANCE_CENTS] for n, c in cents.items()}}
            main = cents[names[0]] <= TOLERANCE_CENTS
            others = np.stack([cents[n] <= TOLERANCE_CENTS for n in names[1:]])
            entry[judge.name]["all"] = round(float(np.mean([c <= TOLERANCE_CENTS for c in cents.values()])), 4)
            entry[judge.name]["variations"] = round(float(others.mean()), 4)
            # Of the keys a variation misses, the share the main one misses too (the key, not the variation).
            miss = ~others
            entry[judge.name]["misses_main_too"] = (round(float((miss & ~main[None]).sum() / miss.sum()), 4)
                                                    if miss.any() else None)
        per_input[path.name] = entry
        print(f"{path.name}: {len(keys)} keys x {v.count} in {render_s:.0f} s; "
              + ", ".join(f"{j.name} all {entry[j.name]['all']:.3f}" for j in judges), flush=True)
    summary = {}
    for judge in judges:
        rows = [e[judge.name] for e in per_input.values()]
        summary[judge.name] = {"per_variation": {n: keyboard_spread([r["share"][n] for r in rows]) for n in names},
                               "all": keyboard_spread([r["all"] for r in rows]),
                               "variations": keyboard_spread([r["variations"] for r in rows])}
    return {"keys": keys, "velocity_layers": v.velocity_layers, "round_robins": v.round_robins,
            "main": names[0], "refine": args.refine, "tolerance_cents": TOLERANCE_CENTS,
            "layer_velocities": [v.layer_velocity(layer) for layer in range(v.velocity_layers)],
            "inputs": per_input, "summary": summary, "seconds": round(time.perf_counter() - start, 1)}


def keyboard_markdown(result: dict) -> str:
    keys, main = result["keys"], result["main"]
    step = keys[1] - keys[0] if len(keys) > 1 else 1
    lines = [f"# Every variation at its pitch: keys {keys[0]}-{keys[-1]} (every {step}), "
             f"{result['velocity_layers']} layers x {result['round_robins']} round robins, refinement "
             f"{result['refine']:g}", "",
             f"Share of keys within {result['tolerance_cents']:g} cents; variation = layer:round robin "
             f"(layers render at velocities {result['layer_velocities']}; {main} is the main one). \"misses main "
             "too\": of the keys a variation misses, the share where the main one misses too.", ""]
    for judge, summary in result["summary"].items():
        names = list(summary["per_variation"])
        lines += [f"## {judge}", "", "| input | " + " | ".join(names) + " | all | all but main | misses main too |",
                  "|---" * (len(names) + 4) + "|"]
        for name, entry in result["inputs"].items():
            e = entry[judge]
            lines.append(f"| {name} | " + " | ".join(f"{e['share'][n]:.3f}" for n in names)
                         + f" | {e['all']:.3f} | {e['variations']:.3f} | {e['misses_main_too']} |")
        cell = lambda s: f"{s['mean']:.3f} ± {s['sd']:.3f}"  # noqa: E731
        lines.append("| mean ± sd | " + " | ".join(cell(summary["per_variation"][n]) for n in names)
                     + f" | {cell(summary['all'])} | {cell(summary['variations'])} | |")
        lines.append("")
        for name, entry in result["inputs"].items():
            misses = {n: m for n, m in entry[judge]["misses"].items() if m}
            if misses:
                lines.append(f"- {name} misses (key, cents; None unvoiced): "
                             + "; ".join(f"{n} {m}" for n, m in misses.items()))
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", type=Path, help="one-shots (default: assets/demo/*.wav)")
    parser.add_argument("--suite", type=Path, default=None, help="an out-of-set suite folder instead")
    parser.add_argument("--every", type=int, default=1, help="every Nth suite file")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--classifier", type=Path, default=default_weights_dir() / "instrument_classifier.safetensors")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keyboard", default=None, metavar="LO-HI",
                        help="measure every variation's pitch over keys LO..HI instead (e.g. 36-90)")
    parser.add_argument("--key-step", type=int, default=1, help="with --keyboard: every Nth key")
    parser.add_argument("--velocity-layers", type=int, default=3, help="with --keyboard")
    parser.add_argument("--round-robins", type=int, default=3, help="with --keyboard")
    parser.add_argument("--refine", type=float, default=0.0,
                        help="with --keyboard: refinement strength, 0 (off) to 2; 1 is the sampler's default")
    parser.add_argument("--out", type=Path, required=True, help="folder for variations.json and variations.md")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.keyboard is not None:
        result = run_keyboard(args)
        text = keyboard_markdown(result)
        write_results(args.out, "variations_keyboard", result, text)
        print(text)
        return 0
    result = run(args)
    text = markdown(result)
    write_results(args.out, "variations", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
