"""SF2 and Bitwig .multisample export: read back by our SF2 parser, played by FluidSynth, unzipped."""
from __future__ import annotations

import errno
import io
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import engine.export as export
from engine.export import FORMATS, ExportError, check_formats, export_pack, zones
from engine.export_sf2 import GEN_RELEASE_VOL_ENV, GEN_ROOT_KEY, timecents
from models.signal.audio import Audio
from models.data.sf2write import GEN_SAMPLE_MODES
from models.data.soundfont import GEN_KEY_RANGE, GEN_SAMPLE_ID, PAD_POINTS, _chunks, _records, read_font
from models.signal.pitch import estimate_pitch
from tests.test_export import RATE, files_under, make_keys

SPARSE = [36, 48, 60, 72, 84]


def sf2_tables(path: Path) -> tuple[list[tuple], list[tuple], list[tuple], np.ndarray]:
    """(shdr, ibag, igen, smpl int16 points) of a SoundFont, via the project's parser helpers."""
    data = path.read_bytes()
    top = _chunks(data, 12, len(data), "t")
    off, size = top["LIST:pdta"]
    pdta = _chunks(data, off + 4, off + size, "t")
    off, size = top["LIST:sdta"]
    smpl_off, smpl_size = _chunks(data, off + 4, off + size, "t")["smpl"]
    smpl = np.frombuffer(data[smpl_off: smpl_off + smpl_size], dtype="<i2")
    return (_records(data, pdta["shdr"], "<20sIIIIIBbHH", "shdr", "t"),
            _records(data, pdta["ibag"], "<HH", "ibag", "t"), _records(data, pdta["igen"], "<HH", "igen", "t"), smpl)


def test_sf2_reads_back_with_zones_roots_and_loops(tmp_path: Path) -> None:
    keys = make_keys(SPARSE)
    pack = export_pack(keys, "Font Pack", tmp_path, formats=("sf2",), release_s=0.5)
    assert sorted(p.name for p in pack.iterdir()) == ["Font_Pack.sf2", "samples"]
    font = read_font(pack / "Font_Pack.sf2")
    assert [(p.name, p.bank, p.program) for p in font.presets] == [("Font_Pack", 0, 0)]
    expected = zones(keys, "Font_Pack")
    got = font.presets[0].zones
    assert [(z.key_lo, z.key_hi, z.vel_lo, z.vel_hi, z.sample) for z in got] == \
        [(z.lokey, z.hikey, 0, 127, i) for i, z in enumerate(expected)]
    assert font.presets[0].keys() == list(range(36, 85))

    shdr, ibag, igen, smpl = sf2_tables(pack / "Font_Pack.sf2")
    assert shdr[-1][0].startswith(b"EOS") and len(shdr) == len(SPARSE) + 1
    gens = [dict(igen[a:b]) for (a, _), (b, _) in zip(ibag, ibag[1:])]
    assert gens[0] == {GEN_RELEASE_VOL_ENV: timecents(0.5) & 0xFFFF}          # global zone: the release
    assert timecents(0.5) == -1200
    for i, (z, g, h) in enumerate(zip(expected, gens[1:], shdr)):
        name, start, end, loop_start, loop_end, rate, pitch, corr, link, kind = h
        k = keys[z.midi]
        assert list(g) == [GEN_KEY_RANGE, GEN_ROOT_KEY, GEN_SAMPLE_MODES, GEN_SAMPLE_ID]   # spec order
        assert g[GEN_KEY_RANGE] == z.lokey | (z.hikey << 8) and g[GEN_SAMPLE_ID] == i
        assert g[GEN_ROOT_KEY] == pitch == k.root_note == z.midi and g[GEN_SAMPLE_MODES] == 1
        assert (rate, corr, link, kind) == (RATE, 0, 0, 1) and name.startswith(b"Font_Pack_0")
        assert (loop_start - start, loop_end - start) == (k.loop_start, k.loop_end)
        assert end - start >= k.loop_end + 8 or end - start == len(k.samples)
        np.testing.assert_allclose(smpl[start: start + k.loop_end] / 32767.0, k.samples[:k.loop_end], atol=1e-4)
        assert not smpl[end: end + PAD_POINTS].any()
        assert i == 0 or start == shdr[i - 1][2] + PAD_POINTS


def test_sf2_guards_a_loop_that_ends_at_the_sample_end(tmp_path: Path) -> None:
    keys = make_keys([60])
    k = keys[60]
    keys[60] = type(k)(k.samples[:k.loop_end].copy(), k.sample_rate, 60, k.loop_start, k.loop_end)
    pack = export_pack(keys, "g", tmp_path, formats=("sf2",))
    (_, start, end, loop_start, loop_end, *_), _eos = sf2_tables(pack / "g.sf2")[0]
    smpl = sf2_tables(pack / "g.sf2")[3]
    assert loop_end == start + k.loop_end and end == loop_end + 8    # interpolation reads the loop start
    np.testing.assert_array_equal(smpl[loop_end:end], smpl[loop_start:loop_start + 8])


def _midi_file(path: Path, notes: list[tuple[int, int]], note_s: float, gap_s: float) -> None:
    import mido

    mid = mido.MidiFile(ticks_per_beat=480)                 # 120 bpm: 960 ticks a second
    track = mido.MidiTrack()
    mid.tracks.append(track)
    on, off = round(note_s * 960), round(gap_s * 960)
    for note, velocity in notes:
        track.append(mido.Message("note_on", note=note, velocity=velocity, time=off))
        track.append(mido.Message("note_off", note=note, velocity=0, time=on))
    mid.save(str(path))


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth (the CLI synth) is not installed")
def test_fluidsynth_plays_the_sf2_in_tune(tmp_path: Path) -> None:
    pack = export_pack(make_keys(SPARSE), "fs", tmp_path, formats=("sf2",))
    notes = [(m, v) for m in [*SPARSE, 62] for v in (40, 110)]   # 62: key 60's sample, transposed
    note_s, gap_s = 1.0, 0.5
    _midi_file(tmp_path / "notes.mid", notes, note_s, gap_s)
    out = tmp_path / "out.wav"
    subprocess.run(["fluidsynth", "-ni", "-R", "0", "-C", "0", "-F", str(out), "-r", str(RATE),
                    str(pack / "fs.sf2"), str(tmp_path / "notes.mid")], check=True, capture_output=True, timeout=60)
    audio, rate = sf.read(out, dtype="float32")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    levels = []
    for i, (note, velocity) in enumerate(notes):
        begin = round(((i + 1) * gap_s + i * note_s + 0.1) * rate)
        segment = mono[begin: begin + round(0.8 * rate)]         # past the 0.6 s sample: the loop plays
        est = estimate_pitch(Audio(np.ascontiguousarray(segment), rate))
        assert abs(est.midi - note) * 100 < 50, (note, velocity, est)
        levels.append(float(np.sqrt(np.mean(segment ** 2))))
    assert min(levels) > 1e-3                                    # every note sounds, held to the end
    assert all(soft < loud for soft, loud in zip(levels[::2], levels[1::2]))   # velocity still scales


def test_multisample_zip_references_its_samples(tmp_path: Path) -> None:
    keys = make_keys(SPARSE)
    pack = export_pack(keys, "Bitwig Pack", tmp_path, formats=("multisample",))
    assert sorted(p.name for p in pack.iterdir()) == ["Bitwig_Pack.multisample", "samples"]
    with zipfile.ZipFile(pack / "Bitwig_Pack.multisample") as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        root = ET.fromstring(zf.read("multisample.xml"))
        wavs = {n: zf.read(n) for n in names if n.endswith(".wav")}
    assert root.tag == "multisample" and root.get("name") == "Bitwig_Pack"
    assert [c.tag for c in root][:5] == ["generator", "category", "creator", "description", "keywords"]
    samples = root.findall("./layer/sample")
    assert [layer.get("name") for layer in root.findall("layer")] == ["Default"] and len(samples) == len(SPARSE)
    assert {s.get("file") for s in samples} == set(wavs) and names == set(wavs) | {"multisample.xml"}
    for z, s in zip(zones(keys, "Bitwig_Pack"), samples):
        k = keys[z.midi]
        data, rate = sf.read(io.BytesIO(wavs[s.get("file")]), dtype="float32")
        np.testing.assert_allclose(data, k.samples, atol=2.0 ** -22)
        assert wavs[s.get("file")] == (pack / z.wav).read_bytes()
        key, vel, loop = s.find("key"), s.find("velocity"), s.find("loop")
        assert (int(key.get("root")), int(key.get("low")), int(key.get("high"))) == (k.root_note, z.lokey, z.hikey)
        assert (vel.get("low"), vel.get("high"), float(key.get("track"))) == ("0", "127", 1.0)
        assert loop.get("mode") == "sustain"
        assert (float(loop.get("start")), float(loop.get("stop"))) == (k.loop_start, k.loop_end)
        assert (float(s.get("sample-start")), float(s.get("sample-stop"))) == (0, len(data))


def test_all_formats_and_the_cli_names(tmp_path: Path) -> None:
    assert check_formats(["all"]) == FORMATS and check_formats(["sf2", "ALL"])[0] == "sf2"
    assert check_formats(" multisample,sf2 ".split(",")) == ("multisample", "sf2")
    with pytest.raises(ExportError, match="sf3"):
        check_formats(["sf3"])
    pack = export_pack(make_keys([60, 64]), "a", tmp_path, formats=("all",))
    assert sorted(p.name for p in pack.iterdir()) == ["a.dspreset", "a.multisample", "a.sf2", "a.sfz", "samples"]


def test_a_failing_zip_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "write_multisample", no_space)
    with pytest.raises(ExportError, match="No space left"):
        export_pack(make_keys([60]), "z", tmp_path / "packs", formats=("sf2", "multisample"))
    assert files_under(tmp_path) == []


def test_sf2_sizes_are_the_header_sizes(tmp_path: Path) -> None:
    pack = export_pack(make_keys([60, 61, 62]), "s", tmp_path, formats=("sf2",))
    data = (pack / "s.sf2").read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"sfbk" and struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    top = _chunks(data, 12, len(data), "t")
    off, size = top["LIST:INFO"]
    info = _chunks(data, off + 4, off + size, "t")
    assert data[info["ifil"][0]: info["ifil"][0] + 4] == struct.pack("<HH", 2, 1)
    assert all(info[c][1] % 2 == 0 and data[info[c][0] + info[c][1] - 1] == 0 for c in ("isng", "INAM"))
