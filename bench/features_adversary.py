"""Compare pitch-adversary variants of stage S1 (f) at a fixed step budget on a small CPU set.

Each variant is the real stage (``models.train.features.train``) with ``--set`` overrides, on a subset
of a built set with its log-mels average-pooled 2x2 (256x256 -> 128x128) and a smaller f (4 stages,
12..64 channels; h and the pitch head as shipped), so that a variant takes minutes on one core.
Prints a markdown table of the stage's own final metrics; one JSON line per variant goes to
``OUT/results.jsonl``.

    OMP_NUM_THREADS=1 python -m bench.features_adversary --data /work/hgdata --out /tmp/fadv \\
        --train-instruments 100 --steps 800 --variants grl,confusion
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from models.train import common, features

# probe_weight=0 first: variants start from no probe penalty (the shipped default is 6) and add their own
BASE = ("probe_weight=0", "batch_size=64", "log_every=50", "eval_every=100000", "save_every=100000", "net.channels=12,24,48,64")
VARIANTS: dict[str, tuple[str, ...]] = {
    "none": ("pitch_objective=confusion", "pitch_weight=0"),  # the head only watches: f gets no pitch gradient
    "grl": ("pitch_objective=grl",),
    "confusion": ("pitch_objective=confusion",),
    "confusion_head5x": ("pitch_objective=confusion", "head_lr_mult=5"),
    "confusion_reset": ("pitch_objective=confusion", "head_reset_every=200"),
    "confusion_linear": ("pitch_objective=confusion", "net.pitch_hidden=0"),
    "confusion_w3": ("pitch_objective=confusion", "pitch_weight=3"),
    "confusion_balanced": ("pitch_objective=confusion", "balance_pitch=true"),
    "probe": ("pitch_objective=confusion", "probe_weight=1"),
    "probe_w3": ("pitch_objective=confusion", "probe_weight=3"),
    "probe_w10": ("pitch_objective=confusion", "probe_weight=10"),
    "probe_w3_bank16k": ("pitch_objective=confusion", "probe_weight=3", "probe_bank=16384"),
    "probe_only": ("pitch_objective=confusion", "pitch_weight=0", "probe_weight=1"),
    "grl_probe": ("pitch_objective=grl", "probe_weight=1"),
    "grl_head5x": ("pitch_objective=grl", "head_lr_mult=5"),
    "grl_reset": ("pitch_objective=grl", "head_reset_every=200"),
}


def small_set(root: str, train_instruments: int, valid_instruments: int, seed: int = 0) -> SimpleNamespace:
    """A subset of the set at ``root``: ``train_instruments`` of split 0 and ``valid_instruments`` of
    split 1 (0: all), chosen at random; log-mels pooled 2x2. Same fields as a NoteSet."""
    data = common.load_data(root)
    rng = np.random.default_rng(seed)
    split_of = np.array([i.split for i in data.instruments])
    keep_inst = []
    for split, n in ((0, train_instruments), (1, valid_instruments)):
        ids = np.nonzero(split_of == split)[0]
        keep_inst.extend(rng.permutation(ids)[:n] if n > 0 else ids)
    rows = np.nonzero(np.isin(np.asarray(data.instrument), keep_inst))[0]
    mels = np.empty((len(rows), data.mel_cfg.n_mels // 2, data.mel_cfg.n_frames // 2), np.float16)
    for start in range(0, len(rows), 512):
        chunk = torch.from_numpy(np.asarray(data.mels[rows[start:start + 512]]).astype(np.float32))
        mels[start:start + 512] = F.avg_pool2d(chunk[:, None], 2)[:, 0].numpy()  # [B, M/2, F/2]
    mel_cfg = dataclasses.replace(data.mel_cfg, n_mels=data.mel_cfg.n_mels // 2, n_frames=data.mel_cfg.n_frames // 2)
    pick = lambda a: np.asarray(a)[rows]  # noqa: E731
    return SimpleNamespace(mels=mels, pitch=pick(data.pitch), velocity=pick(data.velocity),
                           instrument=pick(data.instrument), family=pick(data.family), split=pick(data.split),
                           instruments=data.instruments, families=data.families, mel_cfg=mel_cfg)


def run_variant(data, out: Path, name: str, steps: int, extra: tuple[str, ...]) -> dict:
    overrides = BASE + VARIANTS[name] + extra
    start = time.monotonic()
    final = features.train(data, out / name, common.RunOptions(minutes=1e9, max_steps=steps, overrides=overrides,
                                                                device="cpu"))
    rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    last = ([{}] + [r for r in rows if "loss_inst" in r])[-1]
    return {"variant": name, "steps": steps, "minutes": round((time.monotonic() - start) / 60, 1), **final,
            **{k: last[k] for k in ("loss_inst", "loss_pitch_adv", "adv_acc", "probe_r2") if k in last}}


def table(results: list[dict]) -> str:
    cols = ("pitch_probe_acc", "pitch_probe_acc_holdout", "pitch_head_acc_unseen", "inst_acc_holdout",
            "family_acc_unseen", "loss_pitch_adv")
    lines = ["| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in results:
        lines.append(f"| {r['variant']} | " + " | ".join(f"{r[c]:.3f}" if c in r else "-" for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-instruments", type=int, default=100)
    ap.add_argument("--valid-instruments", type=int, default=0, help="0: every valid instrument")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--set", nargs="*", default=[], help="extra overrides for every variant")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = small_set(args.data, args.train_instruments, args.valid_instruments)
    print(f"{len(data.pitch)} notes, split counts {np.bincount(data.split).tolist()}, mel {data.mel_cfg.n_mels}x"
          f"{data.mel_cfg.n_frames}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.variants.split(","):
        results.append(run_variant(data, out, name, args.steps, tuple(args.set)))
        with open(out / "results.jsonl", "a") as fh:
            fh.write(json.dumps(results[-1]) + "\n")
        print(json.dumps(results[-1]), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
