"""``hypergan render --round-robins N --velocity-layers N``: the pack has every variation."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_engine_cli import render
from tests.test_engine_real import write_tiny_weights
from tests.test_engine_variations import write_tiny_velocity
from tests.test_export import read_sfz


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_velocity(write_tiny_weights(tmp_path_factory.mktemp("w"), steps=10))


@pytest.fixture(scope="module")
def pluck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    from models.signal.tones import plucked_string

    path = tmp_path_factory.mktemp("sounds") / "pluck.wav"
    sf.write(path, plucked_string(52, sample_rate=22050, duration_s=1.0), 22050)
    return path


def test_round_robins_and_velocity_layers_reach_the_pack(weights: Path, pluck: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = render(str(pluck), "--keys", "52,55", "--out", str(tmp_path), "--refine", "0", "--round-robins", "2",
                "--velocity-layers", "2", weights=weights)
    out, err = capsys.readouterr()
    assert rc == 0, err
    pack = Path(out.strip())
    assert "6/6 samples" in err and "6 more samples" in err
    regions = read_sfz(pack / "pluck.sfz")
    assert len(regions) == 8 and {r["seq_length"] for r in regions} == {"2"}
    assert len(list((pack / "samples").glob("*.wav"))) == 8


@pytest.mark.parametrize("flag, value, message", [("--round-robins", "9", "round robins: give 1 to 8"),
                                                  ("--velocity-layers", "0", "velocity layers: give 1 to 5")])
def test_bad_counts_are_one_line_errors(weights: Path, pluck: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        flag: str, value: str, message: str) -> None:
    assert render(str(pluck), "--out", str(tmp_path), flag, value, weights=weights) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_velocity_layers_without_a_fitting_velocity_timbre_fail_before_rendering(
        tmp_path: Path, pluck: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = write_tiny_weights(tmp_path / "bare", steps=1)    # h of 16: the shipped velocity timbre does not fit
    assert render(str(pluck), "--out", str(tmp_path / "out"), "--velocity-layers", "3", weights=bare) == 2
    err = capsys.readouterr().err
    assert "do not fit h of size 16" in err and "rendering" not in err
