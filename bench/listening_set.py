"""Before/after listening set: held-out instruments rendered by G alone and by G + H.

    python -m bench.listening_set --data DATA --weights assets --out listening/

Takes one note near MIDI 60 (loudest velocity) from each of ``--inputs`` pitched test-split
instruments of different families, sends it through the product path (``Engine.load_sample`` at
the note's labelled pitch, f, then H), renders ``--keys`` with G alone and with G + H, and writes small
Ogg Vorbis files per instrument (``<name>/input.ogg``, ``g_<key>.ogg``, ``gh_<key>.ogg``) and
``index.md``: per key the independent pitch estimate's error and the cosine of the evaluation
classifier's features input vs render (as in ``bench/demo_inputs.py``). A listening aid, not a test.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench.demo_inputs import embed
from engine.instrument import Engine, default_weights_dir
from models import checkpoint
from models.signal.audio import Audio
from models.nets.classifiers import InstrumentClassifier
from models.signal.mel import LogMel
from models.signal.pitch import estimate_pitch
from models.train.common import load_data

KEYS = (36, 48, 60, 72, 84)


def pick_notes(notes, n_inputs: int, target_midi: int = 60) -> list[int]:
    """One note per instrument, pitched test-split instruments of distinct families first."""
    test = notes.indices("test")
    by_inst: dict[int, list[int]] = {}
    for i in test:
        if notes.instruments[notes.instrument[i]].pitched:
            by_inst.setdefault(int(notes.instrument[i]), []).append(int(i))
    chosen, families = [], set()
    for strict in (True, False):
        for inst, rows in sorted(by_inst.items()):
            family = notes.instruments[inst].family
            if len(chosen) == n_inputs or (strict and family in families) or any(notes.instrument[c] == inst for c in chosen):
                continue
            rows = sorted(rows, key=lambda r: (abs(int(notes.pitch[r]) - target_midi), -int(notes.velocity[r])))
            chosen.append(rows[0])
            families.add(family)
    return chosen


def without_hyper(weights: Path, into: Path) -> Path:
    """A weights folder of links to everything in ``weights`` but H: the engine then runs G alone."""
    for path in weights.glob("*.safetensors"):
        if path.name != "hyper.safetensors":
            (into / path.name).symlink_to(path.resolve())
    return into


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--weights", type=Path, default=default_weights_dir())
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--inputs", type=int, default=6)
    parser.add_argument("--keys", default=",".join(map(str, KEYS)))
    parser.add_argument("--vocoder", default="auto", choices=("auto", "griffinlim", "neural"))
    args = parser.parse_args(argv)
    keys = [int(k) for k in args.keys.split(",")]
    if not (args.weights / "hyper.safetensors").is_file():
        parser.error(f"{args.weights} has no hyper.safetensors: nothing to compare G alone with")
    notes = load_data(args.data)
    if notes.audio is None:
        parser.error(f"{args.data} was built without --keep-audio: the inputs need the notes' audio")
    rate = notes.mel_cfg.sample_rate
    classifier = checkpoint.load(args.weights / "instrument_classifier.safetensors", InstrumentClassifier)[0].eval()
    log_mel = LogMel(notes.mel_cfg)
    with tempfile.TemporaryDirectory() as tmp:
        engines = {"g": Engine(without_hyper(args.weights, Path(tmp)), device="cpu", vocoder=args.vocoder),
                   "gh": Engine(args.weights, device="cpu", vocoder=args.vocoder)}
        lines = [f"# Listening set: G alone vs G + H\n\nweights `{args.weights}`, vocoder "
                 f"`{engines['gh'].nets.vocoder_name}`, {rate} Hz Ogg Vorbis. Per key: pitch error of the "
                 "independent estimate (cents) and the evaluation classifier's feature cosine input vs key.\n",
                 "| input | root | key | G alone: cents / cos | G + H: cents / cos |", "|---|---|---|---|---|"]
        totals = {"g": [], "gh": []}
        for row in pick_notes(notes, args.inputs):
            info = notes.instruments[notes.instrument[row]]
            name = f"{slug(info.family)}_{slug(info.name)}"
            folder = args.out / name
            folder.mkdir(parents=True, exist_ok=True)
            wave = notes.audio[row].astype(np.float32) / 32768.0
            sf.write(folder / "input.ogg", wave, rate, format="OGG", subtype="VORBIS")
            feats_in = embed(classifier, log_mel, wave[None])
            cells: dict[int, list[str]] = {k: [] for k in keys}
            for tag, engine in engines.items():
                sample = engine.load_sample(Audio(wave, rate), name=name, midi=float(notes.pitch[row]))
                waves = engine.render_waves(engine.conditioning(sample), keys, rate)
                cos = (embed(classifier, log_mel, waves) @ feats_in.T).squeeze(1)
                for j, key in enumerate(keys):
                    peak = float(np.abs(waves[j]).max()) or 1.0
                    sf.write(folder / f"{tag}_{key}.ogg", 0.9 * waves[j] / peak, rate, format="OGG", subtype="VORBIS")
                    est = estimate_pitch(Audio(waves[j].astype(np.float32), rate)).midi
                    cents = abs(100.0 * (est - key)) if np.isfinite(est) else float("nan")
                    cells[key].append(f"{cents:.0f} / {float(cos[j]):.2f}")
                totals[tag].append(float(cos.mean()))
            for key in keys:
                lines.append(f"| {name} | {int(notes.pitch[row])} | {key} | {cells[key][0]} | {cells[key][1]} |")
        lines.append(f"\nMean cosine over inputs and keys: G alone **{np.mean(totals['g']):.3f}**, "
                     f"G + H **{np.mean(totals['gh']):.3f}**.")
    (args.out / "index.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
