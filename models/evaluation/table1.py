"""``hypergan eval``: the paper's Table 1 on held-out instruments, for G alone and G + H.

Tasks (models/README.md, "`hypergan eval`"), each repeated for several seeds (different notes, targets, pairs, mixes):
- reconstruction: a held-out note x at its own pitch -> x_fine; MSE between the instrument
  classifier's features of x and x_fine; pitch accuracy of x_fine.
- synthesis: the timbre of a note x at the pitch of another note x_t of the same instrument; FID of
  the instrument classifier's features vs all held-out real notes; pitch accuracy; and timbre
  identification: the instrument recognised from f(generated) by the nearest one-shot (one gallery
  note per held-out instrument), against the same for the real x_t.
- interpolation: h = (1 - a) h_1 + a h_2 of two instruments at a random pitch; FID; pitch accuracy.
Pitch metrics skip unpitched instruments. A "real notes" row gives the floors: the pitch
classifier on real notes, the FID of a real subsample of the same size, identification of real notes.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.evaluation import metrics
from models.errors import UserError
from models.nets.hyper import HyperNetwork, refine, zero_z

SPLITS = {"valid": (1,), "test": (2,), "heldout": (1, 2)}
COLUMNS = (  # (key, header, decimals)
    ("recon_mse", "Recon MSE ↓", 3), ("recon_pitch", "Recon pitch ↑", 3),
    ("synth_fid", "Synth FID ↓", 2), ("synth_pitch", "Synth pitch ↑", 3),
    ("interp_fid", "Interp FID ↓", 2), ("interp_pitch", "Interp pitch ↑", 3),
    ("ident", "Timbre ident ↑", 3),
)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate on and how much."""

    split: str = "valid"
    n_inputs: int = 512
    seeds: tuple[int, ...] = (0, 1, 2)
    batch_size: int = 32
    gallery_midi: int = 60
    n_passes: int | None = None


@dataclass
class Judges:
    """The frozen networks that score generated mels (f also gives the timbre features)."""

    f: nn.Module
    pitch_classifier: nn.Module
    instrument_classifier: nn.Module


@dataclass
class HeldOut:
    """Held-out notes (indices into the NoteSet) with what the metrics need, all numpy ``[N]``."""

    index: np.ndarray
    pitch: np.ndarray
    instrument: np.ndarray
    pitched: np.ndarray
    gallery: np.ndarray  # positions (into ``index``) of one one-shot per instrument

    @property
    def queries(self) -> np.ndarray:
        """Positions usable as inputs and targets: every held-out note but the gallery one-shots."""
        return np.setdiff1d(np.arange(len(self.index)), self.gallery)


def held_out(notes, split: str, gallery_midi: int = 60) -> HeldOut:
    """Select the held-out instruments' notes of a NoteSet; pick each instrument's gallery one-shot.

    The one-shot is the note nearest ``gallery_midi``, at the loudest velocity among those.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    index = np.flatnonzero(np.isin(np.asarray(notes.split), SPLITS[split]))
    if index.size == 0:
        raise UserError(f"the data set has no {split} notes")
    pitch = np.asarray(notes.pitch)[index].astype(np.int64)
    instrument = np.asarray(notes.instrument)[index].astype(np.int64)
    velocity = np.asarray(notes.velocity)[index].astype(np.int64)
    pitched_of = np.array([info.pitched for info in notes.instruments], dtype=bool)
    gallery = []
    for inst in np.unique(instrument):
        pos = np.flatnonzero(instrument == inst)
        order = np.lexsort((-velocity[pos], np.abs(pitch[pos] - gallery_midi)))
        gallery.append(pos[order[0]])
    return HeldOut(index, pitch, instrument, pitched_of[instrument], np.array(gallery))


class Synth:
    """G alone (``H=None``) or G refined by H; z = 0 throughout."""

    def __init__(self, G: nn.Module, f: nn.Module, H: HyperNetwork | None = None, n_passes: int | None = None):
        self.G, self.f, self.H, self.n_passes = G, f, H, n_passes

    @torch.no_grad()
    def __call__(self, h: torch.Tensor, midi_ref: torch.Tensor, midi: torch.Tensor) -> torch.Tensor:
        """Timbre ``h [B, h_dim]`` at ``midi [B]``; H's offsets come from a first render at ``midi_ref``."""
        deltas = None if self.H is None else refine(self.G, self.f, self.H, h, midi_ref, self.n_passes)
        return self.G(h, zero_z(self.G, h.shape[0], h.device), midi, deltas)


@torch.no_grad()
def _score(mels: torch.Tensor, judges: Judges) -> dict[str, torch.Tensor]:
    return {"ic": judges.instrument_classifier.features(mels).float().cpu(),
            "pc": judges.pitch_classifier.logits(mels).float().cpu(),
            "f": judges.f(mels).float().cpu()}


def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def score_real(notes, held: HeldOut, judges: Judges, device: torch.device, batch_size: int) -> dict[str, torch.Tensor]:
    """Judge features of every held-out real note (f features are the h used as G's input)."""
    parts = []
    for start in range(0, len(held.index), batch_size):
        idx = held.index[start:start + batch_size]
        mels = torch.from_numpy(np.asarray(notes.mels[idx], dtype=np.float32)).to(device)
        parts.append(_score(mels, judges))
    return _cat(parts)


def score_generated(synth: Synth, judges: Judges, h: torch.Tensor, midi_ref: np.ndarray, midi: np.ndarray,
                    device: torch.device, batch_size: int) -> dict[str, torch.Tensor]:
    parts = []
    for start in range(0, len(h), batch_size):
        sl = slice(start, start + batch_size)
        mels = synth(h[sl].to(device), torch.from_numpy(midi_ref[sl]).to(device), torch.from_numpy(midi[sl]).to(device))
        parts.append(_score(mels, judges))
    return _cat(parts)


@dataclass
class Draw:
    """One seed's random choices (positions into HeldOut arrays)."""

    recon: np.ndarray
    synth_in: np.ndarray
    synth_target: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    alpha: np.ndarray
    interp_target: np.ndarray


def draw(held: HeldOut, n: int, seed: int) -> Draw:
    rng = np.random.default_rng(seed)
    pool = held.queries
    pick = lambda: rng.choice(pool, n, replace=n > len(pool))  # noqa: E731
    synth_in = pick()
    by_inst = {i: pool[held.instrument[pool] == i] for i in np.unique(held.instrument[pool])}
    target = np.array([_other(rng, by_inst[held.instrument[p]], p) for p in synth_in])
    a, b = pick(), pick()
    for _ in range(20):  # redraw partners from the same instrument (impossible with one instrument)
        same = held.instrument[a] == held.instrument[b]
        if not same.any() or len(by_inst) < 2:
            break
        b[same] = rng.choice(pool, int(same.sum()))
    return Draw(pick(), synth_in, target, a, b, rng.uniform(0, 1, n).astype(np.float32), pick())


def _other(rng: np.random.Generator, candidates: np.ndarray, p: int) -> int:
    others = candidates[candidates != p]
    return int(rng.choice(others)) if len(others) else int(p)


def _pitch(logits: torch.Tensor, midi: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return float("nan")
    return metrics.pitch_accuracy(logits[torch.from_numpy(mask)], torch.from_numpy(midi[mask]))


def evaluate_seed(synth: Synth | None, judges: Judges, held: HeldOut, real: dict[str, torch.Tensor], d: Draw,
                  device: torch.device, batch_size: int) -> dict[str, float]:
    """All metrics of one row for one seed; ``synth=None`` scores the real notes instead."""
    h, pc, ic, gallery = real["f"], real["pc"], real["ic"], held.gallery
    labels = torch.from_numpy(held.instrument)
    out: dict[str, float] = {}
    if synth is None:
        out["recon_mse"] = 0.0
        out["recon_pitch"] = _pitch(pc[d.recon], held.pitch[d.recon], held.pitched[d.recon])
        out["synth_fid"] = metrics.fid(ic[d.synth_target], ic)
        out["synth_pitch"] = _pitch(pc[d.synth_target], held.pitch[d.synth_target], held.pitched[d.synth_target])
        out["interp_fid"] = metrics.fid(ic[d.interp_target], ic)
        target = d.interp_target
        out["interp_pitch"] = _pitch(pc[target], held.pitch[target], held.pitched[target])
        queries = h[d.synth_target]
    else:
        rec = score_generated(synth, judges, h[d.recon], held.pitch[d.recon], held.pitch[d.recon], device, batch_size)
        out["recon_mse"] = metrics.feature_mse(rec["ic"], ic[d.recon])
        out["recon_pitch"] = _pitch(rec["pc"], held.pitch[d.recon], held.pitched[d.recon])
        syn = score_generated(synth, judges, h[d.synth_in], held.pitch[d.synth_in], held.pitch[d.synth_target],
                              device, batch_size)
        out["synth_fid"] = metrics.fid(syn["ic"], ic)
        out["synth_pitch"] = _pitch(syn["pc"], held.pitch[d.synth_target], held.pitched[d.synth_in])
        alpha = torch.from_numpy(d.alpha)[:, None]
        mix = (1 - alpha) * h[d.pair_a] + alpha * h[d.pair_b]
        target = held.pitch[d.interp_target]
        itp = score_generated(synth, judges, mix, target, target, device, batch_size)
        out["interp_fid"] = metrics.fid(itp["ic"], ic)
        out["interp_pitch"] = _pitch(itp["pc"], target, held.pitched[d.pair_a] & held.pitched[d.pair_b])
        queries = syn["f"]
    out["ident"] = metrics.identification_accuracy(queries, labels[d.synth_in], h[gallery], labels[gallery])
    return out


def evaluate(notes, G: nn.Module, judges: Judges, hypers: dict[str, HyperNetwork | None], cfg: EvalConfig,
             device: str | torch.device = "cpu") -> dict:
    """Table 1 as a dict: ``rows[name][metric] = {"mean", "std", "values"}`` (one value per seed).

    ``hypers`` maps row names to H (``None`` = G alone); a "real notes" row is always added.
    """
    device = torch.device(device)
    held = held_out(notes, cfg.split, cfg.gallery_midi)
    real = score_real(notes, held, judges, device, cfg.batch_size)
    per_row: dict[str, list[dict[str, float]]] = {name: [] for name in ["real notes", *hypers]}
    for seed in cfg.seeds:
        d = draw(held, cfg.n_inputs, seed)
        per_row["real notes"].append(evaluate_seed(None, judges, held, real, d, device, cfg.batch_size))
        for name, H in hypers.items():
            synth = Synth(G, judges.f, H, cfg.n_passes)
            per_row[name].append(evaluate_seed(synth, judges, held, real, d, device, cfg.batch_size))
    rows = {name: {key: _summary([r[key] for r in runs]) for key, _, _ in COLUMNS} for name, runs in per_row.items()}
    return {"config": asdict(cfg), "n_notes": int(len(held.index)), "n_instruments": int(len(held.gallery)),
            "n_pitched_notes": int(held.pitched.sum()), "rows": rows}


def _summary(values: Sequence[float]) -> dict:
    finite = [v for v in values if np.isfinite(v)]
    mean, std = metrics.mean_std(finite) if finite else (float("nan"), float("nan"))
    return {"mean": mean, "std": std, "values": list(values)}


def markdown_table(result: dict) -> str:
    """The result as a Markdown table of ``mean ± std`` over seeds."""
    head = "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, row in result["rows"].items():
        cells = [f"{row[k]['mean']:.{n}f} ± {row[k]['std']:.{n}f}" for k, _, n in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cfg = result["config"]
    lines.append(f"\n{result['n_instruments']} held-out instruments ({cfg['split']}), {result['n_notes']} notes "
                 f"({result['n_pitched_notes']} pitched); {cfg['n_inputs']} inputs per task and seed, "
                 f"seeds {list(cfg['seeds'])}. Real-notes FID = FID of a real subsample of the same size.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n")[0]
    parser.epilog = ("examples:\n"
                     "  hypergan eval --data data/nsynth_like --weights assets --out runs/eval\n"
                     "  hypergan eval --data data/nsynth_like --weights assets/ --hyper-pre runs/hyper-pre/hyper_pre.safetensors "
                     "--split test --seeds 0 1 2 3 4")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--data", required=True, help="NoteSet folder (hypergan data build)")
    parser.add_argument("--weights", default=None,
                        help="folder holding features, generator, pitch_classifier, instrument_classifier "
                             "(and optionally hyper_pre, hyper) .safetensors; the single-file flags override")
    for name in ("features", "generator", "pitch-classifier", "instrument-classifier", "hyper-pre", "hyper-adv"):
        parser.add_argument(f"--{name}", default=None, help=f"{name} weights (.safetensors)")
    parser.add_argument("--split", default="valid", choices=sorted(SPLITS))
    parser.add_argument("--n-inputs", type=int, default=EvalConfig.n_inputs, help="notes per task and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(EvalConfig.seeds))
    parser.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)
    parser.add_argument("--passes", type=int, default=None, help="H refinement passes (default: H's config)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="folder for table.md and results.json")


WEIGHT_FILES = {"features": "features.safetensors", "generator": "generator.safetensors",
                "pitch-classifier": "pitch_classifier.safetensors",
                "instrument-classifier": "instrument_classifier.safetensors",
                "hyper-pre": "hyper_pre.safetensors", "hyper-adv": "hyper.safetensors"}


def _weight_path(args: argparse.Namespace, name: str, required: bool) -> Path | None:
    given = getattr(args, name.replace("-", "_"))
    if given:
        return Path(given)
    if args.weights and (Path(args.weights) / WEIGHT_FILES[name]).is_file():
        return Path(args.weights) / WEIGHT_FILES[name]
    if required:
        raise UserError(f"no {name} weights: pass --{name} or --weights DIR with {WEIGHT_FILES[name]}")
    return None


def run(args: argparse.Namespace) -> int:
    from models import checkpoint
    from models.nets.classifiers import InstrumentClassifier, PitchClassifier
    from models.nets.features import FeatureExtractor
    from models.nets.generator import Generator
    from models.train.common import load_data

    device = torch.device(args.device)
    load = lambda name, cls: checkpoint.load(_weight_path(args, name, True), cls, device)[0].eval()  # noqa: E731
    f, G = load("features", FeatureExtractor), load("generator", Generator)
    judges = Judges(f, load("pitch-classifier", PitchClassifier), load("instrument-classifier", InstrumentClassifier))
    hypers: dict[str, HyperNetwork | None] = {"GANStrument (G)": None}
    for name, row in (("hyper-pre", "HyperGANStrument-Pre (S3)"), ("hyper-adv", "HyperGANStrument (S4)")):
        path = _weight_path(args, name, False)
        if path is not None:
            hypers[row] = checkpoint.load(path, HyperNetwork, device)[0].eval()
    notes = load_data(args.data)
    if notes.mel_cfg != G.cfg.mel:
        raise UserError(f"the data's mel grid {notes.mel_cfg} differs from G's {G.cfg.mel}")
    cfg = EvalConfig(split=args.split, n_inputs=args.n_inputs, seeds=tuple(args.seeds), batch_size=args.batch_size,
                     n_passes=args.passes)
    print(f"eval: {cfg}")
    result = evaluate(notes, G, judges, hypers, cfg, device)
    table = markdown_table(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(table + "\n")
        (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"eval: wrote {out / 'table.md'} and {out / 'results.json'}")
    return 0
