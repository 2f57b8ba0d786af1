"""How a weights folder does on sounds from outside the data set: the demo one-shots in assets/demo.

For each input (or the files given), the engine renders a spread of keys; per input it prints
- pitch: the fraction of keys whose independent estimate (``models/signal/pitch.py``, on the audio) is
  within half a semitone of the key, and the median absolute error in cents;
- timbre: the cosine similarity between the evaluation instrument classifier's features (the FID
  features, trained apart from f, so the number compares across f/G pairs) of the input and of
  each rendered key, median over keys; "input vs other inputs" is the same measure between
  different inputs, the level that means "no timbre kept".
Timings, not tests: nothing asserts. Compare two weight folders on the same machine and vocoder.

    python -m bench.demo_inputs --weights assets --vocoder griffinlim
    python -m bench.demo_inputs --weights /work/stage --keys 24-108/4 my_voice.wav
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from engine.instrument import Engine, EngineConfig, default_weights_dir
from models import checkpoint
from models.signal.audio import Audio
from models.nets.classifiers import InstrumentClassifier
from models.signal.mel import LogMel
from models.signal.pitch import estimate_pitch


def parse_keys(text: str) -> list[int]:
    """``"24-108/4"`` -> 24, 28, ... 108."""
    span, _, step = text.partition("/")
    lo, _, hi = span.partition("-")
    return list(range(int(lo), int(hi or lo) + 1, int(step or 1)))


def cents_errors(waves: np.ndarray, keys: list[int], sample_rate: int) -> np.ndarray:
    """|estimated pitch - key| in cents per wave (inf where no pitch was found)."""
    out = []
    for w, k in zip(waves, keys):
        est = estimate_pitch(Audio(w.astype(np.float32), sample_rate))
        out.append(abs(est.midi - k) * 100 if est.confidence > 0 else np.inf)
    return np.array(out)


@torch.inference_mode()
def embed(classifier: InstrumentClassifier, log_mel: LogMel, waves: np.ndarray) -> torch.Tensor:
    feats = classifier.features(log_mel(torch.from_numpy(waves.astype(np.float32))))
    return torch.nn.functional.normalize(feats.float(), dim=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="*", type=Path, help="one-shots (default: assets/demo/*.wav)")
    parser.add_argument("--weights", type=Path, default=default_weights_dir())
    parser.add_argument("--classifier", type=Path, default=default_weights_dir() / "instrument_classifier.safetensors")
    parser.add_argument("--vocoder", default="auto", choices=("auto", "griffinlim", "neural"))
    parser.add_argument("--keys", default="24-108/4")
    args = parser.parse_args(argv)
    inputs = args.inputs or sorted((default_weights_dir() / "demo").glob("*.wav"))
    keys = parse_keys(args.keys)
    engine = Engine(args.weights, device="cpu", vocoder=args.vocoder, cfg=EngineConfig(output_rate=16000))
    rate = engine.mel_cfg.sample_rate
    classifier = checkpoint.load(args.classifier, InstrumentClassifier)[0].eval()
    log_mel = LogMel(engine.mel_cfg)
    print(f"weights {args.weights} ({engine.nets.vocoder_name}); keys {keys[0]}..{keys[-1]} ({len(keys)})")
    print("| input | root | pitch within 50 c | median error c | timbre cos (input vs keys) |")
    print("|---|---|---|---|---|")
    input_feats, hits_all, cos_all = [], [], []
    start = time.perf_counter()
    for path in inputs:
        sample = engine.load_sample(path)
        waves = engine.render_waves(engine.conditioning(sample), keys, rate)
        err = cents_errors(waves, keys, rate)
        feats_in = embed(classifier, log_mel, sample.audio.samples[None])
        cos = (embed(classifier, log_mel, waves) @ feats_in.T).squeeze(1)
        input_feats.append(feats_in)
        hits_all.append(err <= 50)
        cos_all.append(float(cos.median()))
        print(f"| {path.stem} | {sample.root_note} | {np.mean(err <= 50):.2f} | {np.median(err):.0f} | {cos_all[-1]:.3f} |")
    feats = torch.cat(input_feats)
    others = (feats @ feats.T)[~torch.eye(len(feats), dtype=torch.bool)]
    print(f"| **all** | | **{np.mean(np.concatenate(hits_all)):.3f}** | | **{np.mean(cos_all):.3f}** |")
    if len(feats) > 1:
        print(f"input vs other inputs (no timbre kept): cos median {float(others.median()):.3f}")
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
