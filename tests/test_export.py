"""Pack export: SFZ read back by an independent parser (sfzlint), dspreset by xml.etree, WAVs by soundfile."""
from __future__ import annotations

import errno
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.export import ExportError, PackExistsError, export_pack, read_loop_chunk, zones
from engine.key_cache import KeySample
from engine.loops import make_loop
from models.signal.audio import Audio
from models.units import midi_to_hz
from models.signal.tones import harmonic_tone

RATE = 48000


def make_keys(notes, rate: int = RATE) -> dict[int, KeySample]:
    keys = {}
    for midi in notes:
        wave = harmonic_tone(midi, sample_rate=rate, duration_s=0.6, decay_s=0.5, seed=midi)
        looped, start, end = make_loop(Audio(wave, rate), midi_to_hz(midi))
        keys[midi] = KeySample(looped.samples, rate, midi, start, end)
    return keys


def read_sfz(path: Path) -> list[dict[str, str]]:
    """Parse with sfzlint; any error or warning (unknown opcode, bad value, missing sample) fails."""
    from sfzlint.parser import SFZValidatorConfig, validate

    problems: list[tuple] = []
    sfz = validate(path, err_cb=lambda *args: problems.append(args[:2]),
                   config=SFZValidatorConfig(file_path=path))
    assert problems == []
    return [{str(k): str(v) for k, v in region.items()} for region in sfz.regions]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def keys() -> dict[int, KeySample]:
    return make_keys(range(21, 109))


def test_full_pack_round_trip(keys: dict[int, KeySample], tmp_path: Path) -> None:
    pack = export_pack(keys, "Test Pack!", tmp_path)
    assert pack == tmp_path / "Test_Pack"
    assert sorted(p.name for p in pack.iterdir()) == ["Test_Pack.dspreset", "Test_Pack.sfz", "samples"]
    assert len(list((pack / "samples").glob("*.wav"))) == 88
    regions = read_sfz(pack / "Test_Pack.sfz")
    mapped = [k for r in regions for k in range(int(r["lokey"]), int(r["hikey"]) + 1)]
    assert sorted(mapped) == list(range(21, 109))           # every key maps exactly once
    for r in regions:
        midi = int(r["pitch_keycenter"])
        key = keys[midi]
        assert r["lokey"] == r["hikey"] == str(midi) and r["loop_mode"] == "loop_continuous"
        assert (int(r["loop_start"]), int(r["loop_end"])) == (key.loop_start, key.loop_end - 1)
        assert float(r["ampeg_release"]) == pytest.approx(0.3)
        data, rate = sf.read(pack / r["sample"], dtype="float32")
        info = sf.info(pack / r["sample"])
        assert info.subtype == "PCM_24" and rate == RATE and data.ndim == 1
        assert 0 <= int(r["loop_start"]) < int(r["loop_end"]) < len(data)
        np.testing.assert_allclose(data, key.samples, atol=2.0 ** -22)
        assert read_loop_chunk(pack / r["sample"]) == (midi, key.loop_start, key.loop_end - 1)

    root = ET.parse(pack / "Test_Pack.dspreset").getroot()
    assert root.tag == "DecentSampler"
    samples = root.findall("./groups/group/sample")
    assert len(samples) == 88
    by_note = {int(s.get("rootNote")): s for s in samples}
    for r in regions:
        s = by_note[int(r["pitch_keycenter"])]
        assert s.get("path") == r["sample"] and (pack / s.get("path")).is_file()
        assert (s.get("loNote"), s.get("hiNote")) == (r["lokey"], r["hikey"])
        assert (s.get("loopStart"), s.get("loopEnd")) == (r["loop_start"], r["loop_end"])
        assert s.get("loopEnabled") == "true"


def test_sparse_keys_cover_the_gaps_once(tmp_path: Path) -> None:
    sparse = make_keys([36, 40, 43, 60, 61])
    pack = export_pack(sparse, "sparse", tmp_path, formats=("sfz",))
    regions = read_sfz(pack / "sparse.sfz")
    mapped = [k for r in regions for k in range(int(r["lokey"]), int(r["hikey"]) + 1)]
    assert sorted(mapped) == list(range(36, 62))
    assert [(z.lokey, z.hikey) for z in zones(sparse, "s")] == [(36, 38), (39, 41), (42, 51), (52, 60), (61, 61)]
    assert not (pack / "sparse.dspreset").exists()


def test_wav_only_and_unknown_formats(tmp_path: Path) -> None:
    pack = export_pack(make_keys([60]), "w", tmp_path, formats=("wav",))
    assert [p.name for p in pack.iterdir()] == ["samples"]
    with pytest.raises(ExportError, match="mp3"):
        export_pack(make_keys([60]), "x", tmp_path, formats=("sfz", "mp3"))
    assert not (tmp_path / "x").exists()


def test_pack_folder_has_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        pack = export_pack(make_keys([60]), "perm", tmp_path, formats=("wav",))
    finally:
        os.umask(old)
    assert pack.stat().st_mode & 0o777 == 0o755


def test_never_overwrites_unless_forced(tmp_path: Path) -> None:
    first = export_pack(make_keys([60, 62]), "p", tmp_path)
    marker = first / "mine.txt"
    marker.write_text("keep")
    with pytest.raises(PackExistsError, match="--force"):
        export_pack(make_keys([48]), "p", tmp_path)
    assert marker.read_text() == "keep"
    export_pack(make_keys([48]), "p", tmp_path, force=True)
    assert not marker.exists()
    assert sorted(p.name for p in (first / "samples").iterdir()) == ["p_048.wav"]
    assert [p.name for p in tmp_path.iterdir()] == ["p"]        # no temporary folders left


def test_disk_full_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write, written = sf.write, []

    def failing_write(path, *args, **kwargs):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(sf, "write", failing_write)
    out = tmp_path / "new" / "packs"
    with pytest.raises(ExportError, match="No space left"):
        export_pack(make_keys(range(60, 70)), "full", out)
    assert len(written) == 3
    assert files_under(tmp_path) == []                           # not even the folders it made


def test_disk_full_while_replacing_keeps_the_old_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = export_pack(make_keys([60]), "p", tmp_path)
    before = files_under(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sf, "write", no_space)
    with pytest.raises(ExportError):
        export_pack(make_keys([61]), "p", tmp_path, force=True)
    assert files_under(tmp_path) == before and (old / "samples" / "p_060.wav").is_file()


def test_unwritable_target_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    for folder in (blocker, blocker / "sub"):
        with pytest.raises(ExportError, match="folder"):
            export_pack(make_keys([60]), "p", folder)
    assert files_under(tmp_path) == [blocker]
    with pytest.raises(ExportError):
        export_pack({}, "p", tmp_path)
    with pytest.raises(ExportError, match="name"):
        export_pack(make_keys([60]), "///", tmp_path)
    assert files_under(tmp_path) == [blocker]
