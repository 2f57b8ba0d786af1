"""models/evaluation/out_of_set.py and gus_patch.py: the GUS patch parser on synthetic in-memory patches,
crop/normalise, the sox and espeak recipes, root labels, and the build."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import soundfile as sf

from models.evaluation.gus_patch import (MODE_16BIT, MODE_LOOPING, MODE_PINGPONG, MODE_UNSIGNED, GusSample,
                                         parse_gus_patch, pick_gus_wave, unroll_loop)
from models.evaluation.out_of_set import (SOX_TONES, BuildConfig, SoxTone, build, crop_normalise, load_manifest,
                                          lowpass_sweep, measured_root, missing_packages, sox_command, summary,
                                          vibrato_bends)
from models.signal.tones import harmonic_tone


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


def test_lowpass_sweep_opens_up() -> None:
    rate = 16000
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(2 * rate)
    out = lowpass_sweep(noise, rate, 200.0, 6000.0, 2.0)
    assert np.isfinite(out).all() and out.shape == noise.shape

    def high_share(x: np.ndarray) -> float:  # power above 2 kHz over all
        spec = np.abs(np.fft.rfft(x)) ** 2
        return float(spec[len(spec) * 2000 // (rate // 2):].sum() / spec.sum())

    assert high_share(out[:rate // 4]) < 0.01 < 0.3 < high_share(out[-rate // 4:])


def test_vibrato_bends_swing_around_the_root() -> None:
    bends = vibrato_bends(5.0, 30.0, 2.0).split()[3:]
    cents = [float(b.split(",")[1]) for b in bends]
    assert cents[0] == 30.0 and set(cents[1:]) == {-60.0, 60.0}
    assert abs(np.cumsum(cents)).max() <= 30.0  # never beyond +-depth
    assert sum(float(b.split(",")[2]) for b in bends) <= 2.0


def test_sox_command_gives_the_exact_root(tmp_path) -> None:
    tone = SoxTone("t", "pad", 57, "synth 2 sawtooth {0} synth 2 sawtooth mix {1}", (1.0, 2.0))
    command = sox_command(tone, tmp_path / "t.wav")
    assert command[:3] == ["sox", "-R", "-n"]  # repeatable
    assert "220.0000" in command and "440.0000" in command
    assert all(t.effects.count("{") == len(t.ratios) for t in SOX_TONES)


def test_measured_root_reads_a_tone_and_refuses_noise() -> None:
    midi, source = measured_root(harmonic_tone(43.3, sample_rate=22050, duration_s=1.0), 22050)
    assert source == "measured" and midi == pytest.approx(43.3, abs=0.05)
    rng = np.random.default_rng(1)
    assert measured_root(rng.standard_normal(22050).astype(np.float32), 22050) == (None, "")


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_packages()),
                    reason="needs Debian alsa-utils freepats sound-theme-freedesktop espeak-ng sox")
def test_build_end_to_end(tmp_path) -> None:
    manifest = build(tmp_path)
    assert 40 <= len(manifest) <= 80
    assert load_manifest(tmp_path) == manifest
    assert {e["category"] for e in manifest.values()} == {
        "voice_spoken", "voice_sung", "inst_sustained", "inst_plucked", "bell", "hit", "pad", "sweep", "alert"}
    assert sum(e["sustained_pitched"] for e in manifest.values()) >= 20
    for file_name, entry in manifest.items():
        samples, rate = sf.read(tmp_path / file_name, dtype="float32")
        assert file_name.startswith(entry["category"] + "_") and file_name.endswith(".flac") and samples.ndim == 1
        assert 0 < len(samples) <= 2 * rate
        assert np.max(np.abs(samples)) == pytest.approx(10 ** (-1 / 20), abs=1e-3)
        assert 21 <= entry["root_midi"] <= 108
        expected = {"sox": {"synth"}, "freepats": {"patch"}}.get(entry["package"], {"measured", "measured_weak"})
        assert entry["root_source"] in expected
    by_name = {name.split(".")[0]: e for name, e in manifest.items()}
    assert by_name["pad_saw_pad_vibrato"]["root_midi"] == 48.0  # sox: exact
    assert by_name["voice_sung_a_en_low"]["root_midi"] < 40  # the low sung vowel (~73 Hz)
    assert "total: " in summary(manifest)
    again = tmp_path / "again"
    build(again)
    for file_name in manifest:  # deterministic: the same bytes twice
        assert (again / file_name).read_bytes() == (tmp_path / file_name).read_bytes()


def test_cli_names_missing_packages(monkeypatch, tmp_path, capsys) -> None:
    from models.evaluation import out_of_set

    for package in out_of_set.PACKAGE_PROBES:  # the others present, whatever this machine has installed
        monkeypatch.setitem(out_of_set.PACKAGE_PROBES, package, tmp_path)
    monkeypatch.setitem(out_of_set.PACKAGE_PROBES, "freepats", tmp_path / "absent")
    assert out_of_set.main(["--out", str(tmp_path / "oos")]) == 2
    assert "missing Debian packages: freepats" in capsys.readouterr().err
    assert not (tmp_path / "oos").exists()
