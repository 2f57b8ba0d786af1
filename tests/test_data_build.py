"""End-to-end: a tiny set from a synthesised font, TimGM6mb and the procedural family, with TINY_MEL."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data.build import BuildConfig, build
from models.data.dataset import DatasetError, load_noteset
from models.data.sf2write import TonePreset, write_tone_font
from models.data.soundfont import FontError
from models.signal.mel import TINY_MEL, LogMel
from tests.test_data_units import sine_pitch


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.suffix in (".npy", ".json", ".md")
            and p.name != "build_log.json"}


@pytest.fixture(scope="module")
def font(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fonts") / "Tones.sf2"
    return write_tone_font(path, [TonePreset("Sine", 0, n_harmonics=1), TonePreset("Organ", 19, n_harmonics=5),
                                  TonePreset("Buzz", 81, n_harmonics=8, key_lo=40, key_hi=90)])


@pytest.fixture(scope="module")
def config(font, tmp_path_factory) -> BuildConfig:
    out = tmp_path_factory.mktemp("data") / "tiny"
    return BuildConfig(out=str(out), sources=(str(font), "timgm6mb", "procedural"), mel="tiny",
                       velocities=(60, 127), procedural_count=17, limit_instruments=2, keep_audio=True, workers=1)


@pytest.fixture(scope="module")
def built(config) -> Path:
    return build(config)


def test_shapes_labels_and_manifest(built, config):
    ns = load_noteset(built)
    n = len(ns)
    assert ns.mel_cfg == TINY_MEL
    assert ns.mels.shape == (n, TINY_MEL.n_mels, TINY_MEL.n_frames) and ns.mels.dtype == np.float16
    assert ns.audio.shape == (n, TINY_MEL.num_samples) and ns.audio.dtype == np.int16
    assert ns.pitch.min() >= 21 and ns.pitch.max() <= 108
    assert {i.source for i in ns.instruments} == {"tones", "timgm6mb", "procedural"}
    assert len(ns.instruments) == 2 + 2 + 2 and set(np.unique(ns.instrument)) == set(range(6))
    assert set(ns.families) >= {ns.instruments[i].family for i in range(6)}
    # Every kept note is peak-normalised and its mel is the log-mel of its audio.
    assert np.all(np.abs(ns.audio).max(axis=1) == 32767)
    rows = np.arange(0, n, max(1, n // 7))
    wave = torch.from_numpy(ns.audio[rows].astype(np.float32) / 32767)
    assert np.allclose(LogMel(TINY_MEL)(wave).numpy(), ns.mels[rows].astype(np.float32), atol=0.02)
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["counts"]["notes"] == n
    assert sum(manifest["counts"]["notes_per_source"].values()) == n
    assert "| tones | 2 |" in (built / "DATASET.md").read_text()


def test_labels_agree_with_an_independent_pitch_estimate(built):
    ns = load_noteset(built)
    sine = [i for i, info in enumerate(ns.instruments) if info.preset == "0:0"][0]
    rows = np.flatnonzero(ns.instrument == sine)
    assert len(rows) == 88, "a sine preset covering every key keeps all 88 notes at one velocity"
    for r in rows:
        assert abs(sine_pitch(ns.audio[r]) - ns.pitch[r]) < 0.1
    pitched = np.array([ns.instruments[i].pitched for i in ns.instrument])
    assert np.all(np.abs(ns.pitch_estimate[pitched] - ns.pitch[pitched]) <= 0.5)


def test_key_ranges_are_respected(built):
    ns = load_noteset(built)
    buzz = [i for i, info in enumerate(ns.instruments) if info.preset == "0:81"]
    if buzz:  # limit_instruments may pick it; when it does, only keys 40..90 exist
        keys = ns.pitch[ns.instrument == buzz[0]]
        assert keys.min() >= 40 and keys.max() <= 90


def test_splits_are_disjoint_by_instrument(built):
    ns = load_noteset(built)
    for i, info in enumerate(ns.instruments):
        assert set(np.unique(ns.split[ns.instrument == i])) == {info.split}
    assert sum(len(ns.indices(s)) for s in ("train", "valid", "test")) == len(ns)


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_with_any_worker_count(built, config, tmp_path):
    log: list[str] = []
    again = build(replace(config, out=str(tmp_path / "again"), workers=2), progress=log.append)
    assert _files(built) == _files(again)
    assert sum(m.startswith("[") for m in log) == 6, "each finished instrument is reported as it lands"


@pytest.mark.slow
def test_resume_after_a_crash_and_clear_font_errors(built, config, font, tmp_path):
    cfg = replace(config, out=str(tmp_path / "resumed"))
    seen = []

    def crash_after_two(msg: str) -> None:
        seen.append(msg)
        if sum(m.startswith("[") for m in seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(cfg, progress=crash_after_two)
    parts = sorted((tmp_path / "resumed" / "parts").glob("*.npz"))
    assert len(parts) == 2
    # A missing or corrupt font stops the next run before anything is rendered; the parts survive.
    with pytest.raises(FontError, match="not found"):
        build(replace(cfg, sources=(str(tmp_path / "Missing.sf2"), "procedural")))
    bad = tmp_path / "Broken.sf2"
    bad.write_bytes(font.read_bytes()[: len(font.read_bytes()) // 2])
    with pytest.raises(FontError, match="truncated"):
        build(replace(cfg, sources=(str(bad), "procedural")))
    assert sorted((tmp_path / "resumed" / "parts").glob("*.npz")) == parts
    log = []
    build(cfg, progress=log.append)
    assert any(m.startswith("resuming: 2/6") for m in log)
    assert _files(built) == _files(tmp_path / "resumed")
    # A finished build is reused, not rebuilt.
    log.clear()
    build(cfg, progress=log.append)
    assert any("already complete" in m for m in log)


def test_manifest_and_arrays_must_agree(built, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    np.save(copy / "pitch.npy", np.zeros(3, np.int16))
    with pytest.raises(DatasetError, match="pitch.npy"):
        load_noteset(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="no finished build"):
        load_noteset(copy)


def test_show_writes_contact_sheets_and_wavs(built, tmp_path):
    from PySide6.QtGui import QImage

    from models.data.show import show

    files = show(built, tmp_path / "show")
    pngs = [f for f in files if f.suffix == ".png"]
    assert len(pngs) == 2 and all(not QImage(str(p)).isNull() for p in pngs)
    assert any(f.suffix == ".wav" for f in files)
    assert "measured MIDI" in (tmp_path / "show" / "legend.txt").read_text()
