"""Quality of mel inverters on held-out instruments: the neural vocoder against Griffin-Lim.

Real notes (the held-out split's stored log-mels -> wave, compared with the note's own audio):
mel L1 (natural-log mel on the data's grid), multi-resolution STFT distance (spectral convergence +
log-magnitude L1, see ``models.signal.stft.multi_resolution_stft``) and pitch accuracy (the nearest key
of ``models.signal.pitch.estimate_pitch`` equals the note's key; pitched instruments only). Generated notes
(optional, needs f and G, H if present): G (+ H) renders each held-out note's timbre at its own pitch;
pitch accuracy of the inverted wave, and mel L1 between G's mel and the mel of the inverted wave.

    python -m models.evaluation.vocoder_quality --data DIR --vocoder runs/vocoder/vocoder.safetensors --device cuda
    python -m models.evaluation.vocoder_quality --data DIR --vocoder V.safetensors --weights assets --out runs/vocoder_eval
    python -m models.evaluation.vocoder_quality --data DIR --vocoder V.safetensors --device cuda --steps 0/9/2  # the CPU's steps
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from models.signal.audio import Audio
from models.signal.mel import LogMel, MelConfig
from models.signal.pitch import estimate_pitch
from models.signal.stft import multi_resolution_stft

Inverter = Callable[[torch.Tensor], torch.Tensor]  # a MelInverter: log-mel [B, M, F] -> wave [B, T]
COLUMNS = (  # (key, header, decimals)
    ("mel_l1", "mel L1 ↓", 3), ("mrstft", "MR-STFT ↓", 3), ("sc", "SC ↓", 3), ("log_mag", "log-mag L1 ↓", 3),
    ("pitch_acc", "pitch acc ↑", 3), ("gen_pitch_acc", "gen pitch acc ↑", 3),
    ("gen_mel_l1", "gen mel L1 to G ↓", 3), ("seconds", "invert s", 2),
)


@dataclass(frozen=True)
class VocoderEvalConfig:
    splits: tuple[int, ...] = (1,)   # held-out instruments (1 = valid)
    max_notes: int = 512             # a seeded subsample of the split when it is larger
    batch_size: int = 32
    pitch: bool = True               # pitch accuracy (CPU estimator, ~3 ms a note)
    seed: int = 0


def pick_notes(data, splits: tuple[int, ...], max_notes: int, seed: int) -> np.ndarray:
    """Indices of the notes in ``splits`` (a sorted seeded subsample of at most ``max_notes``)."""
    index = np.nonzero(np.isin(np.asarray(data.split), splits))[0]
    if len(index) > max_notes:
        index = np.sort(np.random.default_rng(seed).choice(index, max_notes, replace=False))
    return index


@torch.no_grad()
def invert_all(inverter: Inverter, mels: torch.Tensor, batch_size: int, device: torch.device) -> tuple[torch.Tensor, float]:
    """Waves ``[N, T]`` (float32, CPU) of log-mels ``[N, M, F]`` in batches, and the seconds it took."""
    out = []
    start = time.perf_counter()
    for part in mels.split(batch_size):
        out.append(inverter(part.to(device).float()).float())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return torch.cat(out).cpu(), seconds


@torch.no_grad()
def spectral_scores(reference: torch.Tensor, estimate: torch.Tensor, mel_cfg: MelConfig, batch_size: int,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """Per-note mel L1, spectral convergence and log-magnitude L1 of ``estimate`` vs ``reference`` ``[N, T]``."""
    log_mel = LogMel(mel_cfg).to(device)
    parts: dict[str, list[torch.Tensor]] = {"mel_l1": [], "sc": [], "log_mag": []}
    for ref, est in zip(reference.split(batch_size), estimate.split(batch_size)):
        ref, est = ref.to(device), est.to(device)
        parts["mel_l1"].append((log_mel(ref) - log_mel(est)).abs().flatten(1).mean(1).cpu())
        sc, lm = multi_resolution_stft(ref, est)
        parts["sc"].append(sc.cpu())
        parts["log_mag"].append(lm.cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def pitch_hits(waves: torch.Tensor, midi: np.ndarray, sample_rate: int) -> np.ndarray:
    """Bool ``[N]``: the estimated nearest key of each wave ``[N, T]`` equals ``midi [N]``."""
    arr = waves.numpy().astype(np.float32)
    return np.array([estimate_pitch(Audio(w, sample_rate)).midi_note == int(m) for w, m in zip(arr, midi)])


def _pitched(data, index: np.ndarray) -> np.ndarray:
    pitched = np.array([bool(i.pitched) for i in data.instruments])
    return pitched[np.asarray(data.instrument)[index]]


def evaluate_real(data, inverters: Mapping[str, Inverter], cfg: VocoderEvalConfig,
                  device: torch.device) -> dict[str, dict[str, float]]:
    """Rows per inverter on the held-out notes' real mels, plus a "real audio" row (the pitch floor)."""
    if data.audio is None:
        from models.errors import UserError
        raise UserError("the dataset holds no audio; rebuild it with `hypergan data build --keep-audio`")
    index = pick_notes(data, cfg.splits, cfg.max_notes, cfg.seed)
    reference = torch.from_numpy(np.asarray(data.audio)[index].astype(np.float32) / 32768.0)
    mels = torch.from_numpy(np.asarray(data.mels)[index].astype(np.float32))
    midi = np.asarray(data.pitch)[index]
    pitched = _pitched(data, index)
    rows: dict[str, dict[str, float]] = {}
    if cfg.pitch and pitched.any():
        rows["real audio"] = {"pitch_acc": float(pitch_hits(reference[pitched], midi[pitched], data.mel_cfg.sample_rate).mean())}
    for name, inverter in inverters.items():
        waves, seconds = invert_all(inverter, mels, cfg.batch_size, device)
        scores = spectral_scores(reference, waves, data.mel_cfg, cfg.batch_size, device)
        row = {k: float(v.mean()) for k, v in scores.items()}
        row["mrstft"] = row["sc"] + row["log_mag"]
        row["seconds"] = seconds
        if cfg.pitch and pitched.any():
            row["pitch_acc"] = float(pitch_hits(waves[pitched], midi[pitched], data.mel_cfg.sample_rate).mean())
        rows[name] = row
    return {name: dict(row, notes=len(index)) for name, row in rows.items()}


@torch.no_grad()
def generated_mels(data, synth: Callable, index: np.ndarray, f: torch.nn.Module, batch_size: int,
                   device: torch.device) -> torch.Tensor:
    """G's (+ H's) rendering of each note's timbre at its own pitch -> log-mels ``[N, M, F]`` (CPU)."""
    out = []
    for part in np.array_split(index, max(1, int(np.ceil(len(index) / batch_size)))):
        x = torch.from_numpy(np.asarray(data.mels)[part].astype(np.float32)).to(device)
        midi = torch.from_numpy(np.asarray(data.pitch)[part].astype(np.int64)).to(device)
        out.append(synth(f(x), midi, midi).float().cpu())
    return torch.cat(out)


def evaluate_generated(data, inverters: Mapping[str, Inverter], synth: Callable, f: torch.nn.Module,
                       cfg: VocoderEvalConfig, device: torch.device) -> dict[str, dict[str, float]]:
    """Per inverter: pitch accuracy of inverted G renders and mel L1 between G's mel and the wave's mel."""
    index = pick_notes(data, cfg.splits, cfg.max_notes, cfg.seed)
    pitched = _pitched(data, index)
    mels = generated_mels(data, synth, index, f, cfg.batch_size, device)
    log_mel = LogMel(data.mel_cfg).to(device)
    rows = {}
    for name, inverter in inverters.items():
        waves, _ = invert_all(inverter, mels, cfg.batch_size, device)
        l1 = [(log_mel(w.to(device)) - m.to(device)).abs().mean().item() * len(w)
              for w, m in zip(waves.split(cfg.batch_size), mels.split(cfg.batch_size))]
        row = {"gen_mel_l1": sum(l1) / len(waves)}
        if pitched.any():
            row["gen_pitch_acc"] = float(pitch_hits(waves[pitched], np.asarray(data.pitch)[index][pitched],
                                                    data.mel_cfg.sample_rate).mean())
        rows[name] = row
    return rows


def markdown_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    used = [c for c in COLUMNS if any(c[0] in r for r in rows.values())]
    lines = ["| inverter | " + " | ".join(h for _, h, _ in used) + " |", "|---" * (len(used) + 1) + "|"]
    for name, row in rows.items():
        cells = [f"{row[k]:.{d}f}" if k in row else "" for k, _, d in used]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_synth(weights: Path, device: torch.device):
    """(synth, f) from ``weights`` (features, generator, and hyper or hyper_pre if present), or None."""
    from models import checkpoint
    from models.evaluation.table1 import Synth
    from models.nets.features import FeatureExtractor
    from models.nets.generator import Generator
    from models.nets.hyper import HyperNetwork

    if not ((weights / "features.safetensors").is_file() and (weights / "generator.safetensors").is_file()):
        return None
    f = checkpoint.load(weights / "features.safetensors", FeatureExtractor, device)[0].eval().requires_grad_(False)
    G = checkpoint.load(weights / "generator.safetensors", Generator, device)[0].eval().requires_grad_(False)
    H = None
    for name in ("hyper.safetensors", "hyper_pre.safetensors"):
        if (weights / name).is_file():
            H = checkpoint.load(weights / name, HyperNetwork, device)[0].eval().requires_grad_(False)
            break
    return Synth(G, f, H), f


def quality_table(data, vocoder_path: str | Path, weights: str | Path | None = None,
                  cfg: VocoderEvalConfig = VocoderEvalConfig(), device: str = "cpu",
                  gl_iters: int = 32, steps: tuple[int, ...] | None = None) -> dict[str, dict[str, float]]:
    """The quality table: the vocoder at ``vocoder_path`` vs Griffin-Lim (``gl_iters``) on held-out notes.
    ``steps`` (refine_iters, [coarse_projections,] mel_projections) overrides the vocoder's counts for ``device``."""
    from models.errors import UserError
    from models.signal.mel import GriffinLim
    from models.nets.vocoder import load_vocoder

    dev = torch.device(device)
    vocoder = load_vocoder(vocoder_path, dev, steps)
    if vocoder.cfg.mel != data.mel_cfg:
        raise UserError(f"the vocoder's mel grid {vocoder.cfg.mel} differs from the data's {data.mel_cfg}")
    inverters = {"neural vocoder": vocoder, f"Griffin-Lim {gl_iters}": GriffinLim(data.mel_cfg, n_iter=gl_iters).to(dev)}
    rows = evaluate_real(data, inverters, cfg, dev)
    loaded = load_synth(Path(weights), dev) if weights else None
    if loaded is not None:
        for name, row in evaluate_generated(data, inverters, loaded[0], loaded[1], cfg, dev).items():
            rows[name].update(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--vocoder", required=True, help="vocoder.safetensors")
    parser.add_argument("--weights", help="folder with features/generator(/hyper) weights: adds the generated-notes columns")
    parser.add_argument("--splits", type=int, nargs="+", default=[1])
    parser.add_argument("--max-notes", type=int, default=512)
    parser.add_argument("--gl-iters", type=int, default=32)
    parser.add_argument("--steps", help="R/P or R/C/P: the vocoder's refine_iters / (coarse_projections /) "
                                        "mel_projections on any device "
                                        "(default: VocoderSchedule's counts for the device), e.g. 0/9/2 for the CPU's on a GPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="folder for vocoder_eval.md and vocoder_eval.json")
    args = parser.parse_args(argv)
    from models.train.common import load_data

    cfg = VocoderEvalConfig(splits=tuple(args.splits), max_notes=args.max_notes)
    steps = tuple(int(n) for n in args.steps.split("/")) if args.steps else None
    rows = quality_table(load_data(args.data), args.vocoder, args.weights, cfg, args.device, args.gl_iters, steps)
    table = markdown_table(rows)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "vocoder_eval.md").write_text(table + "\n")
        (out / "vocoder_eval.json").write_text(json.dumps({"config": asdict(cfg), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
