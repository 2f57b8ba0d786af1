"""DATASET.md: the data card written beside every built set (counts, coverage, rejections, licences)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.dataset import SPLITS
from models.signal.mel import MelConfig


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _coverage(labels: dict) -> list[str]:
    """Notes per octave band of MIDI keys, per split."""
    bands = [(21, 35), (36, 47), (48, 59), (60, 71), (72, 83), (84, 95), (96, 108)]
    rows = []
    for lo, hi in bands:
        sel = (labels["pitch"] >= lo) & (labels["pitch"] <= hi)
        rows.append([f"{lo}-{hi}"] + [int((sel & (labels["split"] == k)).sum()) for k in range(len(SPLITS))])
    return _table(["MIDI keys", *SPLITS], rows)


def _source_family(manifest: dict, labels: dict) -> list[str]:
    """Instruments / notes per source (rows) and family (columns); families nobody has are left out."""
    instruments = manifest["instruments"]
    sources, families = list(manifest["sources"]), manifest["families"]
    inst_count = {(i["source"], i["family"]): 0 for i in instruments}
    for i in instruments:
        inst_count[(i["source"], i["family"])] += 1
    note_source = np.array([instruments[k]["source"] for k in range(len(instruments))])[labels["instrument"]] \
        if len(labels["instrument"]) else np.array([], str)
    used = [f for f in families if any((s, f) in inst_count for s in sources)]
    rows = []
    for src in sources:
        cells = []
        for f in used:
            n_inst = inst_count.get((src, f), 0)
            n_notes = int(((note_source == src) & (labels["family"] == families.index(f))).sum())
            cells.append(f"{n_inst} / {n_notes}" if n_inst else "-")
        rows.append([src, *cells])
    return _table(["source", *used], rows)


def render_card(manifest: dict, labels: dict) -> str:
    c = manifest["counts"]
    mel = MelConfig.from_json(manifest["mel"])
    lines = [
        "# NSynth-like training set", "",
        f"{c['notes']} notes from {c['instruments']} instruments, {mel.sample_rate} Hz mono, "
        f"{mel.num_samples} samples ({mel.duration_s:.2f} s) per note, held for "
        f"{manifest['hold_fraction']:.0%} of the clip then released; peak-normalised. Log-mels "
        f"{mel.n_mels} x {mel.n_frames} (n_fft {mel.n_fft}, hop {mel.hop_length}), float16. "
        f"Velocities asked: {manifest['velocities']} (a font preset gets only the velocities that select "
        f"different samples: its renderer maps velocity to loudness only). Seed {manifest['seed']}.", "",
        "Splits are by instrument group (one General MIDI program across all fonts, or presets sharing "
        "most samples), stratified by family.", "",
        "## Per source", "",
    ]
    rows = [[s, c["instruments_per_source"].get(s, 0), c["notes_per_source"].get(s, 0)] for s in manifest["sources"]]
    lines += _table(["source", "instruments", "notes"], rows) + ["", "## Per family", ""]
    rows = [[f, c["instruments_per_family"][f], c["notes_per_family"][f]] for f in manifest["families"]]
    lines += _table(["family", "instruments", "notes"], rows) + ["", "## Per source and family", "",
                                                                  "Instruments / notes.", ""]
    lines += _source_family(manifest, labels) + ["", "## Per split", ""]
    rows = [[s, c["instruments_per_split"][s], c["notes_per_split"][s]] for s in SPLITS]
    lines += _table(["split", "instruments", "notes"], rows) + ["", "## Pitch coverage", ""]
    lines += _coverage(labels) + [""]
    lines += ["## Rejected notes", "",
              f"Unpitched instruments (kept for timbre, not pitch-checked): {c['unpitched_instruments']}. "
              f"Instruments with no usable note: {c['instruments_without_notes']}.", ""]
    lines += _table(["reason", "notes"], [[r, n] for r, n in c["rejected"].items()])
    per_source = c.get("rejected_per_source", {})
    if per_source:
        reasons = list(c["rejected"])
        lines += ["", "Per source:", ""]
        lines += _table(["source", *reasons], [[src, *[row.get(r, 0) for r in reasons]] for src, row in per_source.items()])
    lines += ["", "Details (instrument, key, velocity, measured pitch): rejected.json.", "", "## Presets left out", ""]
    for name, src in manifest["sources"].items():
        for reason, presets in src.get("presets_skipped", {}).items():
            if presets:
                lines.append(f"- {name}, {reason.replace('_', ' ')}: {len(presets)}")
    for name, src in manifest["sources"].items():
        if src.get("slimmed_from_sha256"):
            lines.append(f"- {name}: rendered from a copy slimmed to the rendered presets (`hypergan data "
                         f"slim-fonts`) of the Debian font sha256 {src['slimmed_from_sha256'][:16]}...; its "
                         f"duplicate and reference-mismatch presets were removed before (models/data/font_check.json)")
    lines += ["", "## Sources and licences", ""]
    rows = []
    for name, src in manifest["sources"].items():
        rows.append([name, src.get("file", "-"), src.get("package", "-"), src["licence"],
                     src.get("sha256", "-")[:16]])
    lines += _table(["source", "file", "Debian package", "licence", "sha256 (16)"], rows)
    lines += ["", "Licences are taken from each package's /usr/share/doc/<package>/copyright.", ""]
    return "\n".join(lines)


def write_card(out: Path, manifest: dict, labels: dict[str, np.ndarray]) -> None:
    (out / "DATASET.md").write_text(render_card(manifest, labels))
