"""``hypergan render --round-robins N --velocity-layers N``: the pack has every variation."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.key_cache import Variations
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


def test_a_saved_instrument_brings_its_variations_and_the_counts_given_win(weights: Path, pluck: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from engine.instrument_file import SavedInstrument, SavedSound, save_instrument
    from models.signal.audio import load_audio

    audio = load_audio(pluck, 16000)
    sounds = tuple(SavedSound(slot, f"pluck{slot}", audio, 52.0, 1.0, root)
                   for slot, root in (("A", None), ("B", 55), ("C", 48)))
    inst = save_instrument(tmp_path / "trio.hgi", SavedInstrument(
        sounds, pad=(0.4, 0.3), refine_strength=0, variations=Variations(round_robins=2, velocity_layers=2)))
    for flags, line, regions in (([], "2 velocity layer(s) x 2 round robin(s): 6 more samples", 8),
                                 (["--round-robins", "1"], "2 velocity layer(s) x 1 round robin(s): 2 more samples", 4),
                                 (["--velocity-layers", "1", "--round-robins", "1"], None, 2)):
        out_dir = tmp_path / f"out{len(flags)}"
        rc = render("--instrument", str(inst), "--keys", "52,55", "--out", str(out_dir), *flags, weights=weights)
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert (line in err) if line else "velocity layer" not in err
        assert len(read_sfz(Path(out.strip()) / "trio.sfz")) == regions


def test_variations_of_keeps_a_saved_instrument_s_other_settings() -> None:
    from argparse import Namespace

    from engine.instrument_file import SavedInstrument
    from engine.key_cache import PLAIN
    from engine.render_cli import variations_of

    saved = SavedInstrument((), variations=Variations(round_robins=4, velocity_layers=2, seed=7, rr_h_scale=0.2))
    given = Namespace(round_robins=None, velocity_layers=3)
    assert variations_of(given, saved) == Variations(round_robins=4, velocity_layers=3, seed=7, rr_h_scale=0.2)
    assert variations_of(Namespace(round_robins=None, velocity_layers=None), None) == PLAIN
    assert variations_of(Namespace(round_robins=2, velocity_layers=None), None) == Variations(round_robins=2,
                                                                                              velocity_layers=1)
