"""Pick one of several S3 (hyper-pre) runs trained side by side; install it as the ``hyper-pre`` run.

    python -m models.runs.pick_hyper RUN_DIR... --into runs/hyper-pre

H is trained against f's features, so f's own distance can be gamed; the score is f-independent:
the mean cosine of the evaluation instrument classifier's features between a held-out note and
G + H's renders of it at other keys (``valid_cls_cos_other_gh`` of the final probe). A run whose
pitch accuracy at other keys falls more than ``PITCH_SLACK`` below G alone's is not eligible.
The winner's hyper_pre.safetensors, resume state and metrics are copied into ``--into``;
``picked.json`` there records every run's numbers.
"""
from __future__ import annotations

from pathlib import Path

from models.errors import UserError
from models.runs.pick_features import cli, final_metrics, install

PITCH_SLACK = 0.02
SCORE = "valid_cls_cos_other_gh"


def eligible(metrics: dict[str, float]) -> bool:
    """G + H keeps pitch: at most ``PITCH_SLACK`` below G alone at other keys (when measured)."""
    if "valid_pitch_gh" not in metrics or "valid_pitch_g" not in metrics:
        return True
    return float(metrics["valid_pitch_gh"]) >= float(metrics["valid_pitch_g"]) - PITCH_SLACK


def pick(runs: list[Path], into: Path) -> Path:
    """Copy the best finished, eligible run of ``runs`` into ``into``; returns the chosen run."""
    scored = []
    for run in runs:
        m = final_metrics(run, "hyper_pre.safetensors")
        if m is not None and SCORE in m:
            scored.append((float(m[SCORE]) if eligible(m) else float("-inf"), run, m))
    if not scored:
        raise UserError(f"none of {[str(r) for r in runs]} has a finished hyper-pre run with {SCORE}")
    best_score, best, _ = max(scored, key=lambda s: s[0])
    if best_score == float("-inf"):
        raise UserError(f"every hyper-pre run loses more than {PITCH_SLACK} pitch accuracy against G alone")
    install(best, into, [best / "hyper_pre.safetensors", best / "metrics.jsonl", *best.glob("state-*.safetensors")],
            f"max {SCORE}, pitch within {PITCH_SLACK} of G alone", scored)
    return best


def main(argv: list[str] | None = None) -> int:
    return cli(argv, __doc__, pick, "hyper-pre")


if __name__ == "__main__":
    raise SystemExit(main())
