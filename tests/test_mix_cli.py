"""``hypergan render --mix SOUND:WEIGHT ...``: parsing, clear errors, and a three-sound pack."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.render_cli import default_name, parse_mix
from models.errors import UserError
from tests.test_engine_cli import render, sounds, weights  # noqa: F401 - fixtures


def test_parse_mix_weights_and_the_older_syntax(tmp_path: Path) -> None:
    named = tmp_path / "odd:0.5.wav"
    named.write_bytes(b"")
    assert parse_mix(None, None) == []
    assert parse_mix(["b.wav"], None) == [(Path("b.wav"), 0.5)]
    assert parse_mix(["b.wav"], 0.25) == [(Path("b.wav"), 0.25)]
    assert parse_mix(["b.wav:0.3"], None) == [(Path("b.wav"), 0.3)]
    assert parse_mix(["b.wav:0.3", "dir/c.flac:.2"], None) == [(Path("b.wav"), 0.3), (Path("dir/c.flac"), 0.2)]
    assert parse_mix([str(named)], None) == [(named, 0.5)]            # a colon in a file's own name
    assert parse_mix(["C:\\sounds\\b.wav"], None) == [(Path("C:\\sounds\\b.wav"), 0.5)]
    assert parse_mix(["b.wav:0.5", "c.wav:0.5"], None)[1][1] == 0.5   # the first sound may get nothing
    assert default_name(Path("a.wav"), [(Path("b.wav"), 0.3), (Path("c.wav"), 0.2)]) == "a_x_b_30_x_c_20"
    assert default_name(Path("a.wav"), [(Path("b.wav"), 0.25)]) == "a_x_b_25"


@pytest.mark.parametrize("entries, alpha, message", [
    (None, 0.3, "--alpha needs --mix"),
    (["b.wav"], 1.5, "--alpha must lie within"),
    (["b.wav:x"], None, "'x' is not a number"),
    (["b.wav:1.2"], None, "within [0, 1]"),
    (["b.wav:-0.1"], None, "within [0, 1]"),
    (["b.wav:nan"], None, "within [0, 1]"),
    (["b.wav:0.7", "c.wav:0.6"], None, "add up to 1.3"),
    (["b.wav:0.3", "c.wav"], None, "give each a weight, e.g. --mix c.wav:0.3"),
    (["b.wav:0.3"], 0.3, "--alpha goes with one --mix"),
])
def test_parse_mix_refuses_bad_weights(entries, alpha, message) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_mix(entries, alpha)


def test_render_blends_three_sounds(weights: Path, sounds: dict[str, Path], tmp_path: Path,  # noqa: F811
                                    capsys: pytest.CaptureFixture[str]) -> None:
    third = tmp_path / "third.wav"
    third.write_bytes(sounds["pluck"].read_bytes())
    rc = render(str(sounds["pluck"]), "--mix", f"{sounds['tone']}:0.3", "--mix", f"{third}:0.2", "--keys", "60",
                "--out", str(tmp_path), "--format", "wav", "--refine", "0", weights=weights)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert Path(out.strip()) == tmp_path / "pluck_x_tone_30_x_third_20"
    assert "tone: root key" in err and "third: root key" in err
    rc = render(str(sounds["pluck"]), "--mix", f"{sounds['tone']}:0.8", "--mix", f"{third}:0.8", "--keys", "60",
                "--out", str(tmp_path / "bad"), weights=weights)
    err = capsys.readouterr().err
    assert rc == 2 and "add up to 1.6" in err and err.count("\n") == 1 and not (tmp_path / "bad").exists()


def test_render_a_saved_instrument(weights: Path, sounds: dict[str, Path], tmp_path: Path,  # noqa: F811
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from engine.envelope import Envelope
    from engine.instrument_file import SavedInstrument, SavedSound, save_instrument
    from models.signal.audio import load_audio

    saved = [SavedSound(slot, path.stem, load_audio(path, 16000), midi, 1.0, root)
             for slot, path, midi, root in (("A", sounds["pluck"], 52.0, None), ("B", sounds["tone"], 64.0, 62),
                                            ("C", sounds["pluck"], 52.0, 40))]
    inst = save_instrument(tmp_path / "trio.hgi", SavedInstrument(tuple(saved), pad=(0.5, 0.0), refine_strength=0,
                                                                  envelope=Envelope(release_s=1.25)))
    rc = render("--instrument", str(inst), "--keys", "60", "--out", str(tmp_path), "--format", "sfz",
                weights=weights)
    out, err = capsys.readouterr()
    assert rc == 0, err
    pack = Path(out.strip())
    assert pack == tmp_path / "trio" and "ampeg_release=1.25" in (pack / "trio.sfz").read_text()
    assert "tone: root key 62 (saved), weight 0.50" in err and "root key 40 (saved), weight 0.00" in err
    assert "refin" not in err and "velocity layer" not in err     # the file asks for one sample per key
    for extra, message in [([str(sounds["pluck"])], "leave out SAMPLE"), (["--alpha", "0.2"], "leave out SAMPLE"),
                           ([], "no such file")]:
        target = str(tmp_path / "nope.hgi") if message == "no such file" else str(inst)
        assert render("--instrument", target, *extra, "--keys", "60", "--out", str(tmp_path / "x"),
                      weights=weights) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert render("--keys", "60", "--out", str(tmp_path / "x"), weights=weights) == 2
    assert "give a SAMPLE to render, or --instrument FILE" in capsys.readouterr().err
