"""Pick one of several f runs (variants trained side by side) and install it as the ``features`` run.

    python -m models.runs.pick_features RUN_DIR... --into runs/features

Each run's final evaluation (the ``final`` line of its metrics.jsonl) is scored as
``inst_acc_holdout - pitch_probe_acc``: f must name instruments from one note (timbre) and a linear
probe must not read the key from its features (pitch invariance); both in [0, 1], weighted alike.
The winner's features.safetensors and metrics are copied into ``--into`` and ``picked.json`` there
records every run's score, so the choice can be read back later.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from models.errors import UserError


def final_metrics(run: Path, weights_name: str = "features.safetensors") -> dict[str, float] | None:
    """The last ``final`` line of a run's metrics.jsonl, or None if the run has not finished."""
    path = run / "metrics.jsonl"
    if not path.is_file() or not (run / weights_name).is_file():
        return None
    final = None
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("final"):
            final = row
    return final


def score(metrics: dict[str, float]) -> float:
    """Higher is better: instrument accuracy on held-out notes minus the pitch probe's accuracy."""
    return float(metrics["inst_acc_holdout"]) - float(metrics.get("pitch_probe_acc", 1.0))


def pick(runs: list[Path], into: Path) -> Path:
    """Copy the best finished run of ``runs`` into ``into``; returns the chosen run."""
    scored = []
    for run in runs:
        m = final_metrics(run)
        if m is not None and "inst_acc_holdout" in m:
            scored.append((score(m), run, m))
    if not scored:
        raise UserError(f"none of {[str(r) for r in runs]} has a finished f run (metrics.jsonl with a final line)")
    best_score, best, _ = max(scored, key=lambda s: s[0])
    install(best, into, [best / "features.safetensors", best / "metrics.jsonl"],
            "inst_acc_holdout - pitch_probe_acc", scored)
    return best


def install(best: Path, into: Path, files: list[Path], rule: str,
            scored: list[tuple[float, Path, dict[str, float]]]) -> None:
    """Copy the winner's ``files`` into ``into`` (stale resume shards removed) and record every run's
    final metrics and score (None for an ineligible run) in ``into/picked.json``."""
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob("state-*.safetensors"):
        old.unlink()
    for path in files:
        shutil.copy2(path, into / path.name)
    record = {"picked": str(best), "rule": rule,
              "runs": {str(r): dict(m, score=round(s, 4) if s != float("-inf") else None) for s, r, m in scored}}
    (into / "picked.json").write_text(json.dumps(record, indent=1))


def cli(argv: list[str] | None, doc: str, pick_fn, what: str) -> int:
    """``python -m models.train.pick_* RUN_DIR... --into DIR`` for a ``pick_fn(runs, into)``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help=f"{what} run folders")
    parser.add_argument("--into", required=True, type=Path, help=f"the {what} run folder later stages read")
    args = parser.parse_args(argv)
    best = pick_fn(args.runs, args.into)
    print(f"{what}: {best} -> {args.into}")
    print((args.into / "picked.json").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli(argv, __doc__, pick, "features")


if __name__ == "__main__":
    raise SystemExit(main())
