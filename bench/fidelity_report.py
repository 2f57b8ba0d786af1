"""The fidelity benchmark's summary (mean +- std over inputs) and its listening report (one HTML page).

``bench/fidelity.py`` calls these; the report folder holds ``index.html`` and ``media/<input>/``
(OGG/Vorbis players and mel PNGs), nothing outside it, so it can be copied or zipped as it is.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from models.evaluation.fidelity import peak_normalised
from models.images import colourise, write_png
from models.signal.mel import LogMel

# (record key, column header): the summary's columns, in order
COLUMNS = (("root_log_mel_l1", "root L1 ↓"), ("root_mrstft", "MR-STFT ↓"), ("envelope_r", "env r ↑"),
           ("id_mfcc", "id MFCC ↑"), ("id_ltas", "id LTAS ↑"), ("clf_cos", "clf cos ↑"),
           ("pitch_ours", "pitch ours ↑"), ("pitch_indep", "pitch {judge} ↑"), ("pitch_yin", "pitch yin ↑"),
           ("render_s", "render s"))


def stats(values: list[float | None]) -> dict | None:
    """mean, std, median, quartiles and count of the non-missing values (None if there are none)."""
    x = np.array([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return None
    q25, median, q75 = np.percentile(x, [25, 50, 75])
    return {"mean": float(x.mean()), "std": float(x.std()), "median": float(median), "q25": float(q25),
            "q75": float(q75), "n": int(x.size)}


def summarise(records: list[dict], methods: list[str]) -> dict:
    """{method: {"all": {metric: stats}, "sustained_pitched": {...}}} over the per-input records."""
    subsets = {"all": records, "sustained_pitched": [r for r in records if r["sustained_pitched"]]}
    return {m: {name: {key: stats([r["methods"][m][key] for r in subset]) for key, _ in COLUMNS}
                for name, subset in subsets.items()} for m in methods}


def root_accuracy(records: list[dict]) -> dict:
    """Counts of our root estimate within a semitone of the label ("ok"), an octave off, or wrong."""
    def counts(subset: list[dict]) -> dict:
        out = {"n": len(subset), "ok": 0, "octave": 0, "wrong": 0}
        for r in subset:
            out[r["root_check"]] += 1
        return out

    sources = sorted({r["root_source"] for r in records})
    return {"all": counts(records), "sustained_pitched": counts([r for r in records if r["sustained_pitched"]]),
            **{f"source:{s}": counts([r for r in records if r["root_source"] == s]) for s in sources},
            "misses": [f"{r['file']} label {r['root_label']} ours {r['root_estimated']} ({r['root_check']})"
                       for r in records if r["root_check"] != "ok"]}


def _cell(s: dict | None) -> str:
    return "-" if s is None else f"{s['mean']:.2f} ± {s['std']:.2f}"


def format_summary(summary: dict) -> str:
    """Markdown: one table for all inputs, one for the sustained-pitched ones, then root accuracy."""
    c = summary["config"]
    columns = [(k, h) for k, h in COLUMNS if not (k == "pitch_yin" and c["pitch_judge"] == "yin")]  # no twice
    headers = [h.format(judge=c["pitch_judge"]) for _, h in columns]
    lines = [f"Fidelity: {c['n_inputs']} inputs (suite of {c['n_suite']}), root {c['root']}, pitch keys "
             f"{c['pitch_lo']}-{c['pitch_hi']} step {c['keys_step']}, identification root±{c['id_span']}, "
             f"{c['device']} ({c['vocoder']}); mean ± std over inputs"]
    for subset in ("all", "sustained_pitched"):
        first = next(iter(summary["methods"].values()))[subset]
        n = max((s["n"] for s in first.values() if s is not None), default=0)
        lines += ["", f"{'All inputs' if subset == 'all' else 'Sustained pitched'} ({n})", "",
                  "| method | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
        for method, by_subset in summary["methods"].items():
            lines.append(f"| {method} | " + " | ".join(_cell(by_subset[subset][k]) for k, _ in columns) + " |")
    acc = summary["root_accuracy"]
    parts = [f"{name.replace('source:', '')} {v['ok']}/{v['n']} (octave {v['octave']}, wrong {v['wrong']})"
             for name, v in acc.items() if name != "misses"]
    lines += ["", "Root estimator (models.signal.pitch) within 1 semitone of the label: " + "; ".join(parts)]
    lines += [f"  miss: {m}" for m in acc["misses"]]
    return "\n".join(lines)


class Media:
    """Writes the report's players (OGG/Vorbis) and mel pictures (PNG) under ``media/<input>/``."""

    def __init__(self, folder: Path, log_mel: LogMel) -> None:
        self.folder = Path(folder)
        self.log_mel = log_mel

    def _dir(self, file_name: str) -> Path:
        path = self.folder / Path(file_name).stem
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _png(self, path: Path, wave: np.ndarray) -> None:
        with torch.no_grad():
            mel = self.log_mel(torch.from_numpy(peak_normalised(wave))).numpy()  # [M, F]
        m, f = (mel.shape[0] // 2) * 2, (mel.shape[1] // 2) * 2
        small = mel[:m, :f].reshape(m // 2, 2, f // 2, 2).mean(axis=(1, 3))  # half size: the folder stays small
        hi = float(small.max())
        write_png(path, colourise(np.flipud(small), hi - 14.0, hi))

    def _ogg(self, path: Path, wave: np.ndarray, rate: int) -> None:
        sf.write(path, 0.9 * peak_normalised(wave), rate, format="OGG", subtype="VORBIS")

    def input(self, file_name: str, wave: np.ndarray, rate: int) -> None:
        folder = self._dir(file_name)
        self._ogg(folder / "input.ogg", wave, rate)
        self._png(folder / "input.png", wave)

    def notes(self, file_name: str, method: str, keys: list[int], waves: np.ndarray, rate: int, root: int) -> None:
        folder = self._dir(file_name)
        for key, wave in zip(keys, waves):
            self._ogg(folder / f"{method}_{key}.ogg", wave, rate)
            if key == root:
                self._png(folder / f"{method}_root.png", wave)


def _metrics_text(r: dict, judge: str) -> str:
    def f(key: str) -> str:
        v = r.get(key)
        return "-" if v is None else f"{v:.2f}"

    return (f"L1 {f('root_log_mel_l1')} · MR-STFT {f('root_mrstft')} · env r {f('envelope_r')}<br>"
            f"id MFCC {f('id_mfcc')} · id LTAS {f('id_ltas')} · clf cos {f('clf_cos')}<br>"
            f"pitch ours {f('pitch_ours')} · {judge} {f('pitch_indep')} · yin {f('pitch_yin')}"
            f" · {r['render_s']:.2f} s / {r['n_keys']} keys")


def _audio(src: str) -> str:
    return f'<audio controls preload="none" src="{html.escape(src)}"></audio>'


def write_index(path: Path, records: list[dict], summary: dict, summary_text: str) -> None:
    """``index.html`` beside ``media/``: the summary, then per input its players, mels and metrics."""
    judge = summary["config"]["pitch_judge"]
    out = ["<!doctype html><meta charset='utf-8'><title>Fidelity report</title>",
           "<style>body{font-family:sans-serif;margin:1em}td{vertical-align:top;padding:4px 8px}"
           "audio{width:190px}pre{background:#f4f4f4;padding:8px}h2{margin-top:2em}</style>",
           "<h1>Fidelity report</h1>", f"<pre>{html.escape(summary_text)}</pre>"]
    for r in records:
        stem = Path(r["file"]).stem
        media = f"media/{stem}"
        root = r["root_note"]
        out.append(f"<h2 id='{html.escape(stem)}'>{html.escape(r['file'])}</h2><p>{html.escape(r['category'])}"
                   f"{', sustained pitched' if r['sustained_pitched'] else ''}; root label {r['root_label']} "
                   f"({r['root_source']}), ours {r['root_estimated']} ({r['root_check']}); rendered around "
                   f"{r['root_used']} (key {root})</p>")
        out.append("<table><tr><th></th><th>root-12</th><th>root</th><th>root+12</th><th>mel at root</th>"
                   "<th>metrics</th></tr>")
        out.append(f"<tr><td><b>input</b></td><td></td><td>{_audio(media + '/input.ogg')}</td><td></td>"
                   f"<td><img src='{media}/input.png'></td><td></td></tr>")
        for method, m in r["methods"].items():
            cells = [_audio(f"{media}/{method}_{k}.ogg") if (path.parent / media / f"{method}_{k}.ogg").exists()
                     else "" for k in (root - 12, root, root + 12)]
            out.append(f"<tr><td><b>{html.escape(method)}</b></td><td>" + "</td><td>".join(cells) +
                       f"</td><td><img src='{media}/{method}_root.png'></td><td>{_metrics_text(m, judge)}</td></tr>")
        out.append("</table>")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(out) + "\n")
