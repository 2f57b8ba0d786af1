"""models/evaluation/out_of_set.py: the GUS patch parser on synthetic in-memory patches, crop/normalise, and the build."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import soundfile as sf

from models.evaluation.out_of_set import (MODE_16BIT, MODE_LOOPING, MODE_PINGPONG, MODE_UNSIGNED, BuildConfig, GusSample, build,
                              crop_normalise, missing_packages, parse_gus_patch, pick_gus_wave, unroll_loop)


def gus_patch(waves: list[tuple[bytes, int, int, int, int, int]]) -> bytes:
    """A GF1PATCH110 file: ``(pcm, modes, loop_start_bytes, loop_end_bytes, rate, root_mhz)`` per wave."""
    header = bytearray(239)
    header[:22] = b"GF1PATCH110\0ID#000002\0"
    header[82] = 1  # instruments
    header[151] = 1  # layers
    header[198] = len(waves)
    out = bytes(header)
    for pcm, modes, loop_start, loop_end, rate, root_mhz in waves:
        # name, fractions, length, loop start/end, rate, low/high/root freq, tune, balance, envelope..vibrato, modes
        wave_header = struct.pack("<7sBIIIHIIIhB18sB", b"wave", 0, len(pcm), loop_start, loop_end, rate,
                                  20000, 8000000, root_mhz, 0, 7, bytes(18), modes)
        out += wave_header + bytes(96 - len(wave_header)) + pcm
    return out


EXPECTED = np.array([0.0, 0.5, -0.5, -1.0])
PCM_CASES = {  # (pcm bytes, modes) that all decode to EXPECTED
    "8-bit unsigned": (bytes([128, 192, 64, 0]), MODE_UNSIGNED),
    "8-bit signed": (np.array([0, 64, -64, -128], np.int8).tobytes(), 0),
    "16-bit signed": (np.array([0, 16384, -16384, -32768], "<i2").tobytes(), MODE_16BIT),
    "16-bit unsigned": (np.array([32768, 49152, 16384, 0], "<u2").tobytes(), MODE_16BIT | MODE_UNSIGNED),
}


@pytest.mark.parametrize("case", PCM_CASES)
@pytest.mark.parametrize("looped", [False, True])
def test_parse_pcm_formats(case: str, looped: bool) -> None:
    pcm, modes = PCM_CASES[case]
    width = 2 if modes & MODE_16BIT else 1
    modes |= MODE_LOOPING if looped else 0
    (wave,) = parse_gus_patch(gus_patch([(pcm, modes, 1 * width, 3 * width, 22050, 261626)]))
    assert wave.samples.dtype == np.float32
    np.testing.assert_allclose(wave.samples, EXPECTED)
    assert (wave.loop_start, wave.loop_end) == (1, 3)  # bytes on disk, samples here
    assert wave.looping == looped
    assert wave.sample_rate == 22050
    assert wave.root_hz == pytest.approx(261.626)
    assert wave.root_midi == pytest.approx(60.0, abs=0.01)


def test_parse_several_waves_and_pick_nearest_root(tmp_path) -> None:
    pcm = np.zeros(8, "<i2").tobytes()
    roots_mhz = (65406, 523251, 246942)  # C2, C5, B3
    data = gus_patch([(pcm, MODE_16BIT, 0, 0, 44100, r) for r in roots_mhz])
    waves = parse_gus_patch(data)
    assert [round(w.root_midi) for w in waves] == [36, 72, 59]
    assert all(len(w.samples) == 8 for w in waves)
    path = tmp_path / "three.pat"
    path.write_bytes(data)
    assert round(pick_gus_wave(path, 60.0).root_midi) == 59


def test_parse_rejects_bad_files() -> None:
    with pytest.raises(ValueError, match="not a GUS patch"):
        parse_gus_patch(b"RIFF" + bytes(300))
    with pytest.raises(ValueError, match="truncated"):
        parse_gus_patch(gus_patch([(bytes(10), 0, 0, 0, 8000, 440000)])[:-4])


def gus_sample(n: int, loop_start: int, loop_end: int, modes: int) -> GusSample:
    return GusSample(np.arange(n, dtype=np.float32), 1000, 440.0, loop_start, loop_end, modes)


def test_unroll_loop() -> None:
    plain = gus_sample(10, 4, 8, MODE_16BIT)
    assert unroll_loop(plain, 100) is plain.samples  # no loop: the recording as is
    forward = unroll_loop(gus_sample(10, 4, 8, MODE_16BIT | MODE_LOOPING), 20)
    np.testing.assert_array_equal(forward, [0, 1, 2, 3, 4, 5, 6, 7] + [4, 5, 6, 7] * 3)
    pingpong = unroll_loop(gus_sample(10, 4, 7, MODE_16BIT | MODE_LOOPING | MODE_PINGPONG), 12)
    np.testing.assert_array_equal(pingpong, [0, 1, 2, 3, 4, 5, 6, 4, 5, 6, 6, 5, 4])
    bad = gus_sample(10, 8, 4, MODE_16BIT | MODE_LOOPING)  # end before start: left alone
    assert len(unroll_loop(bad, 50)) == 10


def test_crop_normalise_stereo_trim_cap_fade_peak() -> None:
    rate = 1000
    cfg = BuildConfig(max_duration_s=2.0, fade_out_s=0.05, peak_dbfs=-1.0)
    tone = 0.3 * np.sin(2 * np.pi * 50 * np.arange(3 * rate) / rate)
    mono = np.concatenate([np.zeros(500), tone])
    stereo = np.stack([mono, mono], axis=1)  # [T, C]: soundfile's layout
    before = stereo.copy()
    out = crop_normalise(stereo, rate, cfg)
    np.testing.assert_array_equal(stereo, before)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == 2 * rate  # leading silence trimmed, then capped at 2 s
    assert np.max(np.abs(out)) == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    assert out[-1] == 0.0 and np.max(np.abs(out[-5:])) < 0.1  # faded out
    assert np.max(np.abs(out[:20])) > 0.5  # starts at the sound, not in silence


def test_crop_normalise_short_and_silent() -> None:
    short = np.concatenate([np.zeros(10), 0.01 * np.hanning(300), np.zeros(100)]).astype(np.float32)
    out = crop_normalise(short, 16000)
    assert len(out) < 300 and np.max(np.abs(out)) == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    assert crop_normalise(np.zeros(1000, np.float32), 16000) is None
    assert crop_normalise(np.full(1000, 1e-6, np.float32), 16000) is None


@pytest.mark.skipif(bool(missing_packages()),
                    reason="needs Debian alsa-utils freepats sound-theme-freedesktop espeak-ng")
def test_build_end_to_end(tmp_path) -> None:
    manifest = build(tmp_path)
    assert 20 <= len(manifest) <= 30
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert {e["category"] for e in manifest.values()} == {"voice", "inst", "fx", "synthvoice"}
    for file_name, entry in manifest.items():
        samples, rate = sf.read(tmp_path / file_name, dtype="float32")
        assert file_name.startswith(entry["category"] + "_") and samples.ndim == 1
        assert 0 < len(samples) <= 2 * rate
        assert np.max(np.abs(samples)) == pytest.approx(10 ** (-1 / 20), abs=1e-3)
        assert (entry["root_midi"] is not None) == (entry["package"] == "freepats")


def test_cli_names_missing_packages(monkeypatch, tmp_path, capsys) -> None:
    from models.evaluation import out_of_set

    for package in out_of_set.PACKAGE_PROBES:  # the others present, whatever this machine has installed
        monkeypatch.setitem(out_of_set.PACKAGE_PROBES, package, tmp_path)
    monkeypatch.setitem(out_of_set.PACKAGE_PROBES, "freepats", tmp_path / "absent")
    assert out_of_set.main(["--out", str(tmp_path / "oos")]) == 2
    assert "missing Debian packages: freepats" in capsys.readouterr().err
    assert not (tmp_path / "oos").exists()
