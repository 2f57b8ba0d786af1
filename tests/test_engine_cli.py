"""``hypergan render`` end to end on tiny real networks: pack out, progress on stderr, clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import soundfile as sf

from app.cli import main
from engine.refine import DEFAULT_REFINEMENT
from engine.render_cli import parse_keys
from models.errors import UserError
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_engine_real import write_tiny_weights
from tests.test_export import read_sfz


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("w"), steps=10)


@pytest.fixture(scope="module")
def sounds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sounds")
    paths = {name: folder / f"{name}.wav" for name in ("pluck", "tone", "silent", "corrupt")}
    sf.write(paths["pluck"], plucked_string(52, sample_rate=44100, duration_s=1.5), 44100)
    sf.write(paths["tone"], harmonic_tone(64, sample_rate=22050, duration_s=1.0, decay_s=0.5), 22050)
    sf.write(paths["silent"], np.zeros(22050, np.float32), 22050)
    paths["corrupt"].write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really a wave file")
    return paths


def render(*args: str, weights: Path) -> int:
    return main(["render", *args, "--weights", str(weights), "--device", "cpu", "--vocoder", "griffinlim",
                 "--threads", "1", "--rate", "22050"])


def test_render_writes_a_pack(weights: Path, sounds: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = render(str(sounds["pluck"]), "--keys", "48-52,55", "--out", str(tmp_path), weights=weights)
    out, err = capsys.readouterr()
    assert rc == 0, err
    pack = Path(out.strip())
    assert pack == tmp_path / "pluck"
    assert "root key 52" in err and "6/6 keys" in err and "first key" in err
    regions = read_sfz(pack / "pluck.sfz")
    assert sorted(int(r["pitch_keycenter"]) for r in regions) == [48, 49, 50, 51, 52, 55]
    assert (pack / "pluck.dspreset").is_file()
    data, rate = sf.read(pack / "samples" / "pluck_055.wav")
    assert rate == 22050 and np.abs(data).max() > 0.01


def test_mix_and_existing_pack(weights: Path, sounds: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(sounds["pluck"]), "--mix", str(sounds["tone"]), "--alpha", "0.25", "--keys", "60",
            "--out", str(tmp_path), "--format", "wav"]
    assert render(*args, weights=weights) == 0
    pack = tmp_path / "pluck_x_tone_25"
    assert Path(capsys.readouterr().out.strip()) == pack
    assert sorted(p.name for p in pack.rglob("*")) == ["pluck_x_tone_25_060.wav", "samples"]
    before = (pack / "samples" / "pluck_x_tone_25_060.wav").stat().st_mtime_ns
    assert render(*args, weights=weights) == 2
    assert "already exists" in capsys.readouterr().err
    assert (pack / "samples" / "pluck_x_tone_25_060.wav").stat().st_mtime_ns == before
    assert render(*args, "--force", weights=weights) == 0


@pytest.mark.parametrize("strength", ["0", "1"])
def test_refine_strength_renders_single_sounds_and_mixes(weights: Path, sounds: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], strength: str) -> None:
    for extra in ([], ["--mix", str(sounds["tone"])]):
        rc = render(str(sounds["pluck"]), *extra, "--keys", "52,60", "--out", str(tmp_path), "--format", "wav",
                    "--refine", strength, weights=weights)
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert len(list((Path(out.strip()) / "samples").glob("*.wav"))) == 2
        if strength == "0":
            assert "refin" not in err
        else:
            refined = [line for line in err.splitlines() if line.startswith("refining")]
            steps = f"step {DEFAULT_REFINEMENT.steps}/{DEFAULT_REFINEMENT.steps}"
            assert refined == [f"refining pluck: {steps}"] + ([f"refining tone: {steps}"] if extra else [])
            assert "refined in " in err and f"({DEFAULT_REFINEMENT.steps} steps per sound)" in err


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("folder", "is a folder, not an audio file"),
    ("mix_folder", "is a folder, not an audio file"),
    ("corrupt", "corrupt.wav"),
    ("silent", "silent"),
    ("keys", "--keys"),
    ("alpha_without_mix", "--mix"),
    ("alpha_range", "alpha"),
    ("format", "mp3"),
    ("weights", "weights"),
    ("refine_range", "--refine"),
    ("refine_text", "--refine"),
    ("near_root", "--near-root"),
])
def test_bad_inputs_give_one_line_and_no_files(weights: Path, sounds: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    out = tmp_path / "out"
    sample = {"missing": str(tmp_path / "nope.wav"), "corrupt": str(sounds["corrupt"]),
              "silent": str(sounds["silent"]), "folder": str(sounds["pluck"].parent) + "/"}.get(
        case, str(sounds["pluck"]))
    extra = {"keys": ["--keys", "10-200"], "alpha_without_mix": ["--alpha", "0.5"],
             "mix_folder": ["--mix", str(sounds["tone"].parent)],
             "alpha_range": ["--mix", str(sounds["tone"]), "--alpha", "1.5"],
             "format": ["--format", "sfz,mp3"], "refine_range": ["--refine", "2.5"],
             "refine_text": ["--refine", "lots"], "near_root": ["--near-root", "30"]}.get(case, [])
    used_weights = tmp_path / "no_weights" if case == "weights" else weights
    rc = render(sample, "--out", str(out), "--keys", "60", *extra, weights=used_weights)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("hypergan render: error:") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_near_root_plays_the_sound_itself_near_its_root(weights: Path, sounds: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    common = (str(sounds["pluck"]), "--keys", "52,53", "--refine", "0", "--format", "wav", "--root", "52")
    assert render(*common, "--out", str(tmp_path / "plain"), weights=weights) == 0
    assert render(*common, "--near-root", "1", "--out", str(tmp_path / "near"), weights=weights) == 0
    capsys.readouterr()
    for key in (52, 53):
        plain, _ = sf.read(next((tmp_path / "plain").rglob(f"*_{key:03d}.wav")))
        near, _ = sf.read(next((tmp_path / "near").rglob(f"*_{key:03d}.wav")))
        assert not np.allclose(plain, near, atol=1e-3)


def test_parse_keys() -> None:
    assert parse_keys("21-108") == list(range(21, 109))
    assert parse_keys("60, 48-50") == [48, 49, 50, 60]
    for bad in ("", "x", "50-40", "0-10", "100-120"):
        with pytest.raises(UserError):
            parse_keys(bad)
