"""Font slimming (what travels to the GPU machine) and the user-folder import."""
from __future__ import annotations

import numpy as np
import pytest

from models.data.dataset import load_noteset
from models.data.folder import FolderConfig, build_folder
from models.data.render import FontRenderer, NoteTiming
from models.data.sf2write import TonePreset, write_tone_font
from models.signal.audio import Audio, save_wav
from models.data.slim import slim_font
from models.data.soundfont import FontError, read_font
from models.signal.tones import harmonic_tone

TIMING = NoteTiming(16000, 8000)


def test_slimmed_font_keeps_presets_and_renders_the_same(tmp_path):
    full = write_tone_font(tmp_path / "full.sf2", [TonePreset("A", 0, n_harmonics=2), TonePreset("B", 7, n_harmonics=5),
                                                   TonePreset("C", 9, bank=8, n_harmonics=9, key_lo=30, key_hi=80)])
    slim = slim_font(full, {(0, 7), (8, 9)}, tmp_path / "slim.sf2")
    info = read_font(slim)
    assert [(p.bank, p.program, p.name) for p in info.presets] == [(0, 7, "B"), (8, 9, "C")]
    assert info.presets[1].keys() == list(range(30, 81))
    assert info.slimmed and info.origin_sha256 == read_font(full).sha256
    assert slim.stat().st_size < full.stat().st_size
    a, b = FontRenderer(str(full), TIMING), FontRenderer(str(slim), TIMING)
    for bank, program, key in ((0, 7, 40), (0, 7, 90), (8, 9, 60)):
        # Equal up to float rounding: the renderer's playback position is absolute in its sample buffer.
        x, y = a.note(bank, program, key, 100), b.note(bank, program, key, 100)
        assert np.abs(x).max() > 0.1 and np.abs(x - y).max() < 1e-5
    with pytest.raises(FontError, match="not found"):
        slim_font(full, {(0, 99)}, tmp_path / "x.sf2")


def test_timgm_slimmed_renders_like_the_original(tmp_path):
    src = "/usr/share/sounds/sf2/TimGM6mb.sf2"
    slim = slim_font(src, {(0, 0), (0, 40), (0, 73)}, tmp_path / "TimGM6mb.sf2")
    assert slim.stat().st_size < 1_500_000
    a, b = FontRenderer(src, TIMING), FontRenderer(str(slim), TIMING)
    for program in (0, 40, 73):
        x, y = a.note(0, program, 64, 110), b.note(0, program, 64, 110)
        assert np.abs(x - y).max() < 1e-4 * np.abs(x).max()


def test_folder_import_labels_from_names_and_estimates(tmp_path):
    root = tmp_path / "mine"
    (root / "bell").mkdir(parents=True)
    save_wav(root / "bell" / "bell_C4_v90.wav", Audio(harmonic_tone(60, decay_s=0.5), 16000), "PCM_16")
    save_wav(root / "bell" / "bell_G4.wav", Audio(harmonic_tone(67, decay_s=0.5), 16000), "PCM_16")
    save_wav(root / "bell" / "bell_A4.wav", Audio(harmonic_tone(57, decay_s=0.5), 16000), "PCM_16")  # named wrong
    save_wav(root / "pluck_unnamed.wav", Audio(harmonic_tone(45, decay_s=0.3), 16000), "PCM_16")
    save_wav(root / "silent_C3.wav", Audio(np.zeros(8000, np.float32), 16000), "PCM_16")
    out = build_folder(FolderConfig(folder=str(root), out=str(tmp_path / "data"), mel="tiny", keep_audio=True))
    ns = load_noteset(out)
    names = {i.name: i for i in ns.instruments}
    assert set(names) == {"folder/bell", "folder/pluck unnamed"}
    bell = list(names).index("folder/bell")
    assert sorted(ns.pitch[ns.instrument == bell].tolist()) == [60, 67]
    assert 90 in ns.velocity[ns.instrument == bell].tolist()
    assert ns.pitch[ns.instrument == list(names).index("folder/pluck unnamed")].tolist() == [45]
    counts = ns.manifest["counts"]["rejected"]
    assert counts["mistuned"] == 1 and counts["silent"] == 1


def test_transcoded_font_is_sf3_smaller_and_in_tune(tmp_path):
    from models.data.transcode import TranscodeConfig
    from tests.test_data_units import sine_pitch

    full = write_tone_font(tmp_path / "full.sf2", [TonePreset("A", 0, n_harmonics=1), TonePreset("B", 7, n_harmonics=3)])
    slim = slim_font(full, {(0, 0), (0, 7)}, tmp_path / "slim.sf3", TranscodeConfig())
    info = read_font(slim)
    assert info.is_sf3 and info.slimmed and slim.stat().st_size < full.stat().st_size / 1.5  # tiny samples: Ogg headers weigh
    a, b = FontRenderer(str(full), TIMING), FontRenderer(str(slim), TIMING)
    for key in (45, 69, 90):
        x, y = a.note(0, 0, key, 100), b.note(0, 0, key, 100)
        assert abs(sine_pitch(y) - key) < 0.02 and abs(np.abs(y).max() / np.abs(x).max() - 1) < 0.05
    pcm = slim_font(full, {(0, 0)}, tmp_path / "slim_pcm.sf2", TranscodeConfig(ogg=False))
    assert not read_font(pcm).is_sf3
    assert abs(sine_pitch(FontRenderer(str(pcm), TIMING).note(0, 0, 69, 100)) - 69) < 0.02


def test_resampling_keeps_loops_whole_and_rates_follow_transposition():
    from models.data.transcode import SampleData, TranscodeConfig, resample

    cycle = np.sin(2 * np.pi * np.arange(101) / 101)            # one period of 101 points at 44.1 kHz
    pcm = np.round(np.tile(cycle, 60) * 20000).astype(np.int16)
    out = resample(SampleData(pcm, 44100, (1010, 1111)), 22050)
    loop_len = out.loop[1] - out.loop[0]
    assert loop_len == 50 and out.rate == round(44100 * 50 / 101)  # the period, not 50.5 points rounded
    assert abs(out.rate / loop_len - 44100 / 101) < 0.01 * 44100 / 101 / 100  # pitch within 0.01 %
    # A long loop of a prime length: an exact ratio would need a kernel of ~9,000 x 18,000 values;
    # the rate ratio (1/2) is used and the loop rounded to whole points.
    long = resample(SampleData(np.round(np.sin(np.arange(40000) * 0.05) * 20000).astype(np.int16), 44100,
                               (1000, 1000 + 17989)), 22050)
    assert long.rate == 22050 and abs((long.loop[1] - long.loop[0]) - 17989 / 2) <= 0.5
    cfg = TranscodeConfig()
    assert cfg.rate_for(44100, 0) == 22050 and cfg.rate_for(16000, 0) == 16000
    assert cfg.rate_for(44100, 12) == 32000 and cfg.rate_for(44100, 24) == 44100
