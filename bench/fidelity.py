"""Fidelity benchmark: does each method's instrument sound like the one-shot it was made from?

    python -m bench.fidelity --suite /work/oos --out /work/fid                  # shipped, plain_sampler, g_only
    python -m bench.fidelity --suite /work/oos --methods shipped,g_only --device cuda --keys-step 3 \\
        --out /work/fid --report /work/fid/index.html
    python -m bench.fidelity --suite /work/oos --only voice_sung,pad --root estimated --out /work/fid_est

The suite is a folder from ``python -m models.evaluation.out_of_set``. Per input, each method renders
the keys root-6..root+6 (identification), 36..90 every ``--keys-step`` (pitch) and root+-12 (the
report), all at the model's 16 kHz; the metrics are ``models/evaluation/fidelity.py``'s:

- root L1 / MR-STFT: the root-key note against the input (log-mel L1 on the model's grid; multi-resolution STFT);
- env r: Pearson correlation of their 10 ms RMS envelopes over the input's length;
- id MFCC / id LTAS: share of the 13 notes round the root whose nearest input of the WHOLE suite
  (MFCC 1-19 mean+std; liftered long-term spectrum) is their own source;
- clf cos: cosine of the evaluation instrument classifier's features, input vs notes (median);
- pitch ours / pitch <judge> / pitch yin: share of keys 36..90 within 50 cents, by ``models.signal.pitch``,
  by an independent judge (PESTO if installed, else YIN) and by YIN, on each note's voiced, sounding
  part. The plain sampler's score is the judges' ceiling: on its own exactly repitched notes PESTO
  misses several at key 36 (octave errors below its singing-voice range), YIN and ours do not;
- render s: wall time of the method's render call per input (conditioning included; caches cleared).

Writes ``OUT/inputs/<file>.json`` per input (all methods), ``OUT/summary.json`` and ``OUT/summary.md``;
prints the summary last: mean +- std over inputs, also over the sustained-pitched subset, and our
root estimator's accuracy against the labels. ``--root estimated`` renders around our estimate
instead of the label (root detection is part of the problem).

A method is a name and ``render(engine, sample, keys, rate) -> float32 [K, T]``. Adding one::

    METHODS["refine30"] = Method("refine30", lambda engine, sample, keys, rate: engine.render_waves(
        engine.conditioning(sample, refine=RefineConfig(steps=30)), keys, rate))
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bench.results import write_results
from engine.instrument import Conditioning, Engine, EngineConfig, NearRoot, Sample, default_weights_dir
from models.units import HIGHEST_KEY, LOWEST_KEY
from engine.refine import DEFAULT_REFINEMENT, RefineConfig
from models.evaluation import fidelity as fm
from models.evaluation.out_of_set import load_manifest
from models.nets.hyper import refine as hyper_offsets
from models.signal.audio import Audio, resample
from models.signal.mel import LogMel
from models.signal.pitch import estimate_pitch

Render = Callable[[Engine, Sample, list[int], int], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A way to turn a sample into notes: ``render(engine, sample, keys, rate)`` -> float32 ``[K, T]``."""

    name: str
    render: Render


def render_chunked(engine: Engine, cond: Conditioning, keys: list[int], rate: int) -> np.ndarray:
    """``engine.render_waves`` over ``keys`` in batches (8 on CPU, 64 on a GPU) -> ``[K, T]``."""
    chunk = engine.cfg.max_batch or (8 if engine.device.type == "cpu" else 64)
    return np.concatenate([engine.render_waves(cond, keys[i:i + chunk], rate) for i in range(0, len(keys), chunk)])


def render_shipped(engine: Engine, sample: Sample, keys: list[int], rate: int) -> np.ndarray:
    """What the product plays: h, H's offsets and G."""
    return render_chunked(engine, engine.conditioning(sample), keys, rate)


def render_g_only(engine: Engine, sample: Sample, keys: list[int], rate: int) -> np.ndarray:
    """G conditioned on h alone (no offsets): what H adds is shipped minus this."""
    cond = Conditioning(h=engine.timbre(sample), deltas=None, root_note=sample.root_note)
    return render_chunked(engine, cond, keys, rate)


def repitch(samples: np.ndarray, sample_rate: int, semitones: float, rate: int, length: int) -> np.ndarray:
    """``samples`` played ``semitones`` higher (faster, as a tape or a plain sampler), at ``rate``, cut/padded to ``length``."""
    # Samples recorded at sample_rate and played at sample_rate * ratio sound ratio times higher;
    # resampling from that rate to ``rate`` keeps the new pitch (band-limited either way).
    played_rate = int(round(sample_rate * 2.0 ** (semitones / 12.0)))
    out = resample(Audio(np.ascontiguousarray(samples, np.float32), played_rate), rate).samples
    return np.pad(out, (0, max(0, length - len(out))))[:length]


def render_plain_sampler(engine: Engine, sample: Sample, keys: list[int], rate: int) -> np.ndarray:
    """The baseline: the one-shot itself, repitched from its root (``sample.midi``, fractional) to each key."""
    audio = sample.audio
    length = int(round(engine.mel_cfg.num_samples * rate / engine.mel_cfg.sample_rate))
    return np.stack([repitch(audio.samples, audio.sample_rate, key - sample.midi, rate, length) for key in keys])


def refined(cfg: RefineConfig, near_root: int = 0) -> Render:
    """Refinement ``cfg`` (``engine/refine.py``), optionally with the sample itself near its root."""
    def render(engine: Engine, sample: Sample, keys: list[int], rate: int) -> np.ndarray:
        cond = engine.conditioning(sample, refine=cfg)
        if near_root <= 0:
            return render_chunked(engine, cond, keys, rate)
        return engine.render_waves(cond, keys, rate, NearRoot(sample, near_root))
    return render


def h_passes(n_passes: int) -> Render:
    """H applied iteratively (HyperStyle): each pass feeds f of the last render back."""
    def render(engine: Engine, sample: Sample, keys: list[int], rate: int) -> np.ndarray:
        h = engine.timbre(sample)
        midi = torch.full((1,), sample.root_note, dtype=torch.long, device=engine.device)
        with torch.inference_mode():
            deltas = hyper_offsets(engine.nets.G, engine.nets.f, engine.nets.H, h, midi, n_passes=n_passes)
        return render_chunked(engine, Conditioning(h=h, deltas=deltas, root_note=sample.root_note), keys, rate)
    return render


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("shipped", render_shipped),
    Method("plain_sampler", render_plain_sampler),
    Method("g_only", render_g_only),
    Method("h_3passes", h_passes(3)),
    Method("refine", refined(DEFAULT_REFINEMENT)),                      # the product's default
    Method("refine_static_correction", refined(replace(DEFAULT_REFINEMENT, steps=30, lr=0.01, pitch_keys=(),
                                                       correction_over_time=False, correction_harmonics=0.0))),
    Method("refine_offsets_only", refined(replace(DEFAULT_REFINEMENT, mel_correction=0.0))),
    Method("mel_correction_only", refined(replace(DEFAULT_REFINEMENT, steps=0))),
    Method("refine_repitched_targets", refined(replace(DEFAULT_REFINEMENT, key_offsets=(0, -7, 7, -4, 4, -12, 12)))),
    Method("refine_10_steps", refined(replace(DEFAULT_REFINEMENT, steps=10))),
    Method("refine_60_steps", refined(replace(DEFAULT_REFINEMENT, steps=60))),
    Method("refine_near_root3", refined(DEFAULT_REFINEMENT, near_root=3)),
    Method("shipped_near_root3", refined(replace(DEFAULT_REFINEMENT, steps=0, mel_correction=0.0), near_root=3)),
    Method("refine_static_envelope", refined(replace(DEFAULT_REFINEMENT, steps=30, lr=0.01, pitch_keys=(),
                                                     correction_over_time=False))),
    Method("refine_without_pitch_term", refined(replace(DEFAULT_REFINEMENT, steps=30, lr=0.01, pitch_keys=()))),
    Method("refine_15_steps_without_pitch_term", refined(replace(DEFAULT_REFINEMENT, steps=15, lr=0.01, pitch_keys=()))),
    Method("refine_30_steps", refined(replace(DEFAULT_REFINEMENT, steps=30, lr=0.01))),
    Method("refine_15_steps_lr02", refined(replace(DEFAULT_REFINEMENT, steps=15, lr=0.02))),
    Method("refine_correction_limit3", refined(replace(DEFAULT_REFINEMENT, correction_limit=3.0))),
    Method("refine_without_detail", refined(replace(DEFAULT_REFINEMENT, detail=0.0))),
    Method("refine_detail_span12", refined(replace(DEFAULT_REFINEMENT, detail_span=12.0, detail_fade=12.0))),
    Method("refine_detail_half", refined(replace(DEFAULT_REFINEMENT, detail=0.5))),
    Method("refine_without_contour", refined(replace(DEFAULT_REFINEMENT, contour_below=0.0))),
    Method("refine_without_far_keys", refined(replace(DEFAULT_REFINEMENT, far_from=math.inf))),
    Method("refine_far_own_gap", refined(replace(DEFAULT_REFINEMENT, far_own_gap=True))),
    Method("refine_far_from3", refined(replace(DEFAULT_REFINEMENT, far_from=3.0, far_fade=3.0))),
    Method("refine_detail_ungated", refined(replace(DEFAULT_REFINEMENT, steady_low=-2.0, steady_high=-1.0))),
    Method("refine_anchor_half", refined(replace(DEFAULT_REFINEMENT, anchor_weight=0.5))),
    Method("refine_lr03_anchor_half", refined(replace(DEFAULT_REFINEMENT, lr=0.03, anchor_weight=0.5))),
    Method("refine_lr02", refined(replace(DEFAULT_REFINEMENT, lr=0.02))),
    Method("refine_without_pitch_check", refined(replace(DEFAULT_REFINEMENT, pitch_check_cents=math.inf))),
    Method("refine_pitch_check100", refined(replace(DEFAULT_REFINEMENT, pitch_check_cents=100.0))),
)}


@dataclass(frozen=True)
class BenchConfig:
    keys_step: int = 6                # pitch keys 36..90 every this many
    pitch_lo: int = 36
    pitch_hi: int = 90
    id_span: int = 6                  # identification keys root-6..root+6
    report_span: int = 12             # report players at root-12, root, root+12
    root: str = "labelled"            # or "estimated"

    def pitch_keys(self) -> list[int]:
        return list(range(self.pitch_lo, self.pitch_hi + 1, self.keys_step))

    def id_keys(self, root: int) -> list[int]:
        return [k for k in range(root - self.id_span, root + self.id_span + 1) if LOWEST_KEY <= k <= HIGHEST_KEY]

    def report_keys(self, root: int) -> list[int]:
        return [k for k in (root - self.report_span, root, root + self.report_span) if LOWEST_KEY <= k <= HIGHEST_KEY]


@dataclass
class SuiteInput:
    """One suite file loaded as the engine loads a drop, with its label and our estimate."""

    file: str
    entry: dict
    sample: Sample        # its ``midi`` is the root the methods render around
    estimated_midi: float
    estimated_confidence: float


def load_suite(engine: Engine, suite_dir: Path, root: str) -> list[SuiteInput]:
    """Every file of the suite's manifest, at the model rate; ``root``: "labelled" or "estimated"."""
    out = []
    for file_name, entry in load_manifest(suite_dir).items():
        sample = engine.load_sample(suite_dir / file_name)  # estimate_pitch, as on a drop
        estimated, confidence = sample.midi, sample.confidence
        if root == "labelled":
            sample = dataclasses.replace(sample, midi=float(entry["root_midi"]), confidence=1.0)
        out.append(SuiteInput(file_name, entry, sample, estimated, confidence))
    return out


class Judges:
    """The features and pitch judges every method is measured with (built once)."""

    def __init__(self, engine: Engine, suite: list[SuiteInput], classifier_path: Path | None,
                 independent: str = "pesto") -> None:
        self.rate = engine.mel_cfg.sample_rate
        self.log_mel = LogMel(engine.mel_cfg)
        self.ours = fm.OurPitch()
        self.yin = fm.YinPitch()  # a second independent judge: PESTO misreads many notes at key 36 (65 Hz)
        self.independent = fm.independent_judge(engine.device if engine.device.type == "cuda" else "cpu", independent)
        inputs = np.stack([s.sample.audio.samples for s in suite])
        self.suite_mfcc = fm.mfcc_stats(inputs, self.rate)
        self.suite_ltas = fm.ltas_envelope(inputs, self.rate)
        self.classifier = _load_classifier(classifier_path, engine)
        self.suite_clf = self.classify(inputs) if self.classifier is not None else None

    @torch.inference_mode()
    def classify(self, waves: np.ndarray) -> np.ndarray | None:
        """Unit-norm evaluation-classifier features ``[B, d]`` (None without a classifier)."""
        if self.classifier is None:
            return None
        x = torch.from_numpy(np.stack([fm.peak_normalised(w) for w in waves]))
        feats = self.classifier.features(self.log_mel(x))
        return torch.nn.functional.normalize(feats.float(), dim=1).numpy()


def _load_classifier(path: Path | None, engine: Engine) -> torch.nn.Module | None:
    """The evaluation instrument classifier, if present and on the engine's mel grid."""
    if path is None or not path.is_file():
        return None
    from models import checkpoint
    from models.nets.classifiers import InstrumentClassifier

    net, cfg, _ = checkpoint.load(path, InstrumentClassifier)
    return net.eval() if cfg.mel == engine.mel_cfg else None


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def measure(judges: Judges, suite: list[SuiteInput], index: int, keys: list[int], waves: np.ndarray,
            cfg: BenchConfig) -> dict:
    """Every metric of one method on one input; ``waves [K, T]`` at the model rate, one per key."""
    item = suite[index]
    x = item.sample.audio.samples
    rate = judges.rate
    by_key = dict(zip(keys, waves))
    root = item.sample.root_note
    note = by_key[root]
    id_keys = cfg.id_keys(root)
    notes = np.stack([by_key[k] for k in id_keys])
    id_mfcc, picks = fm.identification(fm.mfcc_stats(notes, rate), judges.suite_mfcc, index)
    id_ltas, _ = fm.identification(fm.ltas_envelope(notes, rate), judges.suite_ltas, index)
    pitch_keys = cfg.pitch_keys()
    pitch_waves = np.stack([by_key[k] for k in pitch_keys])
    ours = fm.pitch_errors_cents(judges.ours, pitch_waves, pitch_keys, rate)
    indep = fm.pitch_errors_cents(judges.independent, pitch_waves, pitch_keys, rate)
    yin = indep if judges.independent.name == "yin" else fm.pitch_errors_cents(judges.yin, pitch_waves, pitch_keys, rate)
    out = {
        "root_log_mel_l1": _finite(fm.log_mel_l1(judges.log_mel, x, note)),
        "root_mrstft": _finite(fm.mrstft_distance(x, note)),
        "envelope_r": _finite(fm.envelope_correlation(x, note, rate)),
        "id_mfcc": id_mfcc, "id_ltas": id_ltas,
        "id_mfcc_picks": [suite[int(p)].file for p in picks],
        "pitch_ours": float(np.mean(ours <= 50)), "pitch_indep": float(np.mean(indep <= 50)),
        "pitch_yin": float(np.mean(yin <= 50)), "pitch_keys": pitch_keys,
        "pitch_ours_cents": [_finite(c) for c in ours], "pitch_indep_cents": [_finite(c) for c in indep],
        "pitch_yin_cents": [_finite(c) for c in yin],
        "clf_cos": None,
    }
    if judges.suite_clf is not None:
        cos = judges.classify(notes) @ judges.suite_clf[index]
        out["clf_cos"] = round(float(np.median(cos)), 4)
    return out


def render_timed(method: Method, engine: Engine, sample: Sample, keys: list[int], rate: int) -> tuple[np.ndarray, float]:
    """(waves ``[K, T]`` float32, seconds) with the engine's caches cleared first (conditioning is timed too)."""
    engine.cache.clear()
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    start = time.perf_counter()
    waves = method.render(engine, sample, keys, rate)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    seconds = time.perf_counter() - start
    waves = np.asarray(waves, dtype=np.float32)
    if waves.shape[0] != len(keys) or waves.ndim != 2:
        raise ValueError(f"method {method.name} returned shape {waves.shape} for {len(keys)} keys")
    return waves, seconds


def select(suite: list[SuiteInput], only: str | None, every: int, limit: int | None,
           shard: tuple[int, int] = (0, 1)) -> list[int]:
    """Indices of the inputs to render: names or categories containing any ``only`` word, every
    ``every``-th, then shard ``k`` of ``n`` (every n-th from the k-th, for parallel processes)."""
    words = [w for w in (only or "").split(",") if w]
    chosen = [i for i, s in enumerate(suite) if not words or any(w in s.file for w in words)][::every]
    chosen = chosen[:limit] if limit else chosen
    k, n = shard
    return chosen[k::n]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 0 <= K < N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shard is K/N, e.g. 0/4, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"a shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def merge(out: Path, methods: list[str] | None = None) -> dict:
    """Summarise the per-input JSON files under ``out/inputs`` (from sharded runs) into ``out/summary.*``."""
    from bench import fidelity_report as report

    records = [json.loads(p.read_text()) for p in sorted((out / "inputs").glob("*.json"))]
    if not records:
        raise SystemExit(f"no per-input results under {out / 'inputs'}")
    methods = methods or list(records[0]["methods"])
    shard_summary = out / "summary.json"   # the last shard's: its settings are every shard's
    if not shard_summary.exists():
        raise SystemExit(f"no {shard_summary}: run the shards with --out {out} first")
    config = {**json.loads(shard_summary.read_text())["config"], "n_inputs": len(records)}
    summary = {"config": config,
               "root_accuracy": report.root_accuracy(records),
               "methods": report.summarise(records, methods)}
    text = report.format_summary(summary)
    write_results(out, "summary", summary, text + "\n")
    print(text)
    return summary


def input_record(item: SuiteInput) -> dict:
    e = item.entry
    return {"file": item.file, "category": e["category"], "sustained_pitched": e["sustained_pitched"],
            "root_label": e["root_midi"], "root_source": e["root_source"],
            "root_estimated": round(item.estimated_midi, 2), "root_confidence": round(item.estimated_confidence, 3),
            "root_check": fm.root_check(item.estimated_midi, e["root_midi"]),
            "root_used": round(item.sample.midi, 2), "root_note": item.sample.root_note, "methods": {}}


def run(args: argparse.Namespace) -> dict:
    """The benchmark: renders, measures, writes per-input JSON, the summary and (optionally) the report."""
    from bench import fidelity_report as report

    cfg = BenchConfig(keys_step=args.keys_step, root=args.root)
    methods = [METHODS[name] for name in args.methods.split(",")]
    engine = Engine(args.weights, device=args.device, vocoder=args.vocoder, num_threads=args.threads,
                    cfg=EngineConfig(output_rate=16000))
    rate = engine.mel_cfg.sample_rate
    suite = load_suite(engine, args.suite, cfg.root)
    judges = Judges(engine, suite, args.classifier, args.independent)
    chosen = select(suite, args.only, args.every, args.limit, args.shard)
    (args.out / "inputs").mkdir(parents=True, exist_ok=True)
    media = report.Media(args.report.parent / "media", judges.log_mel) if args.report else None
    print(f"{len(chosen)} of {len(suite)} inputs; methods {', '.join(m.name for m in methods)}; "
          f"pitch judge {judges.independent.name}; classifier {'yes' if judges.classifier is not None else 'no'}; "
          f"{engine.device} ({engine.nets.vocoder_name})", flush=True)
    for method in methods:  # warm-up (lazy inits, kernels), not timed
        method.render(engine, suite[chosen[0]].sample, [suite[chosen[0]].sample.root_note], rate)
    records = []
    for n, index in enumerate(chosen):
        item = suite[index]
        record = input_record(item)
        root = item.sample.root_note
        keys = sorted(set(cfg.id_keys(root)) | set(cfg.pitch_keys()) | set(cfg.report_keys(root)))
        if media is not None:
            media.input(item.file, item.sample.audio.samples, rate)
        for method in methods:
            waves, seconds = render_timed(method, engine, item.sample, keys, rate)
            metrics = measure(judges, suite, index, keys, waves, cfg)
            record["methods"][method.name] = {"render_s": round(seconds, 3), "n_keys": len(keys), **metrics}
            if media is not None:
                rk = cfg.report_keys(root)
                media.notes(item.file, method.name, rk, np.stack([waves[keys.index(k)] for k in rk]), rate, root)
        (args.out / "inputs" / f"{Path(item.file).stem}.json").write_text(json.dumps(record, indent=1) + "\n")
        records.append(record)
        print(f"[{n + 1}/{len(chosen)}] {item.file}: " + "; ".join(
            f"{m} L1 {r['root_log_mel_l1']:.2f} id {r['id_mfcc']:.2f}/{r['id_ltas']:.2f} "
            f"pitch {r['pitch_indep']:.2f} {r['render_s']:.1f}s" for m, r in record["methods"].items()), flush=True)
    summary = {"config": {**dataclasses.asdict(cfg), "suite": str(args.suite), "weights": str(args.weights),
                          "device": str(engine.device), "vocoder": engine.nets.vocoder_name,
                          "pitch_judge": judges.independent.name, "n_suite": len(suite), "n_inputs": len(chosen)},
               "root_accuracy": report.root_accuracy([input_record(s) for s in suite]),
               "methods": report.summarise(records, [m.name for m in methods])}
    text = report.format_summary(summary)
    write_results(args.out, "summary", summary, text + "\n")
    if args.report:
        report.write_index(args.report, records, summary, text)
    print(text)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", type=Path, required=True, help="folder built by models.evaluation.out_of_set")
    parser.add_argument("--out", type=Path, required=True, help="folder for inputs/*.json, summary.json, summary.md")
    parser.add_argument("--methods", default="shipped,plain_sampler,g_only", help=f"of: {', '.join(METHODS)}")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--weights", type=Path, default=default_weights_dir())
    parser.add_argument("--vocoder", default="auto", choices=("auto", "griffinlim", "neural"))
    parser.add_argument("--classifier", type=Path, default=default_weights_dir() / "instrument_classifier.safetensors",
                        help="evaluation instrument classifier (skipped if absent or on another mel grid)")
    parser.add_argument("--keys-step", type=int, default=6, help="pitch keys 36..90 every this many")
    parser.add_argument("--root", choices=("labelled", "estimated"), default="labelled")
    parser.add_argument("--independent", choices=("pesto", "yin"), default="pesto",
                        help="the independent pitch judge (YIN when pesto-pitch is missing)")
    parser.add_argument("--only", help="comma-separated words: inputs whose file name holds one (e.g. voice_sung,pad)")
    parser.add_argument("--every", type=int, default=1, help="every n-th chosen input (a spread subset)")
    parser.add_argument("--limit", type=int, help="at most this many inputs")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), help="K/N: this process's share of the inputs")
    parser.add_argument("--threads", type=int, help="CPU threads of the engine")
    parser.add_argument("--report", type=Path, help="write a listening report here (e.g. OUT/index.html)")
    parser.add_argument("--merge", action="store_true",
                        help="only summarise OUT/inputs/*.json written by sharded runs into OUT/summary.*")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.out, args.methods.split(",") if args.methods != parser.get_default("methods") else None)
        return 0
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
