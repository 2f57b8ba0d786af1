"""Unit tests of the data pieces: font parsing, rendering, procedural notes, filter, splits, file names."""
from __future__ import annotations

import numpy as np
import pytest

from models.data.families import FAMILIES, family_of, nominally_pitched
from models.data.filter import FilterConfig, check_note, is_clipped, is_silent
from models.data.folder import pitch_from_name, velocity_from_name
from models.data.procedural import render_note
from models.data.recipes import RECIPES, draw_timbre
from models.data.render import FontRenderer, NoteTiming, distinct_velocities
from models.data.sf2write import TonePreset, write_tone_font
from models.data.soundfont import FontError, Preset, Zone, read_font
from models.data.splits import Member, assign_splits
from models.data.show import write_png
from models.signal.audio import Audio

TIMING = NoteTiming(16000, 8000)


def sine_pitch(x: np.ndarray, sample_rate: int = 16000) -> float:
    """Independent pitch check for pure tones: rising zero crossings (interpolated) while the note is held."""
    seg = np.asarray(x[len(x) // 10: len(x) * 7 // 10], np.float64)
    rising = np.flatnonzero((seg[:-1] < 0) & (seg[1:] >= 0))
    t = rising + seg[rising] / (seg[rising] - seg[rising + 1])  # sub-sample crossing times
    hz = (len(t) - 1) / (t[-1] - t[0]) * sample_rate
    return 69 + 12 * np.log2(hz / 440)


@pytest.fixture
def tone_font(tmp_path):
    return write_tone_font(tmp_path / "tones.sf2", [TonePreset("Sine", 0, n_harmonics=1),
                                                    TonePreset("Buzz", 5, n_harmonics=6, key_lo=40, key_hi=90)])


def test_read_font_presets_and_key_ranges(tone_font):
    info = read_font(tone_font)
    assert [(p.name, p.bank, p.program) for p in info.presets] == [("Sine", 0, 0), ("Buzz", 0, 5)]
    assert info.presets[1].keys() == list(range(40, 91))
    assert not info.is_sf3 and len(info.sha256) == 64


def test_bad_fonts_raise_clear_errors(tone_font, tmp_path):
    with pytest.raises(FontError, match="not found"):
        read_font(tmp_path / "missing.sf2")
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"hello, not a font" * 10)
    with pytest.raises(FontError, match="not a SoundFont"):
        read_font(junk)
    cut = tmp_path / "cut.sf2"
    cut.write_bytes(tone_font.read_bytes()[:-300])
    with pytest.raises(FontError, match="truncated"):
        read_font(cut)


def test_render_sine_font_at_every_sounding_key(tone_font):
    renderer = FontRenderer(str(tone_font), TIMING)
    for key in (40, 57, 69, 81, 90):
        x = renderer.note(0, 0, key, 100)
        assert x.shape == (TIMING.num_samples,) and x.dtype == np.float32
        assert abs(sine_pitch(x) - key) < 0.1
    assert not np.any(renderer.note(0, 5, 30, 100)), "outside its key range the preset must be silent"


def test_distinct_velocities_follow_velocity_layers():
    layered = Preset("p", 0, 0, (Zone(0, 127, 0, 80, 1), Zone(0, 127, 81, 127, 2)))
    assert distinct_velocities(layered, 60, (60, 95, 127)) == [60, 127]
    single = Preset("p", 0, 0, (Zone(0, 127, 0, 127, 1),))
    assert distinct_velocities(single, 60, (60, 95, 127)) == [127]


@pytest.mark.parametrize("index", range(len(RECIPES)))
def test_procedural_recipes_are_deterministic_and_normalised(index):
    tb = draw_timbre(RECIPES[index], index, seed=3)
    a = render_note(tb, 60, 95, TIMING)
    b = render_note(draw_timbre(RECIPES[index], index, seed=3), 60, 95, TIMING)
    assert np.array_equal(a, b)
    assert a.dtype == np.float32 and np.isclose(np.abs(a).max(), 1.0)
    assert tb.family in FAMILIES
    assert not np.array_equal(a, render_note(draw_timbre(RECIPES[index], index, seed=4), 60, 95, TIMING))


def test_procedural_pitched_recipes_play_their_key():
    from models.signal.audio import Audio
    from models.signal.pitch import estimate_pitch

    timing = NoteTiming(16000, 16000)
    for i, recipe in enumerate(RECIPES):
        if not recipe.pitched:
            continue
        tb = draw_timbre(recipe, i, seed=0)
        for key in (45, 69, 93):
            est = estimate_pitch(Audio(render_note(tb, key, 127, timing), 16000))
            assert abs(est.midi - key) < 0.5, (recipe.name, key, est)


def test_filter_flags_silent_and_clipped(sine_a4, clipped):
    cfg = FilterConfig()
    assert is_silent(Audio(np.zeros(16000, np.float32), 16000), cfg)
    assert is_silent(Audio(sine_a4.samples * np.float32(1e-6), 16000), cfg)
    assert is_clipped(clipped.samples, cfg)
    assert not is_clipped(sine_a4.samples, cfg)
    good = check_note(sine_a4, cfg)
    assert good.reason == "" and abs(good.pitch_estimate - 69) < 0.3


def test_families_from_gm_programs():
    assert family_of(0, 0) == "keyboard" and family_of(0, 40) == "string" and family_of(0, 73) == "flute"
    assert family_of(127, 0) == "keyboard" and family_of(127, 88) == "brass"  # MT-32 map
    assert family_of(3, 122) == "fx" and not nominally_pitched(3, 122)
    assert not nominally_pitched(0, 127) and nominally_pitched(0, 0)


def test_splits_keep_groups_together_and_stratify():
    members = [Member(f"gm:{p}", FAMILIES[p % 11], src) for p in range(100) for src in ("a", "b")]
    members += [Member(f"procedural:{i}", FAMILIES[i % 14], "procedural") for i in range(200)]
    splits = assign_splits(members, seed=1)
    assert splits == assign_splits(members, seed=1)
    by_group: dict[str, set[int]] = {}
    for m, s in zip(members, splits):
        by_group.setdefault(m.group, set()).add(s)
    assert all(len(s) == 1 for s in by_group.values())
    counts = np.bincount(splits, minlength=3) / len(splits)
    assert 0.8 < counts[0] < 0.9 and 0.07 < counts[1] < 0.13 and 0.03 < counts[2] < 0.08
    # Presets sharing most samples join one group even under different programs.
    shared = [Member("gm:1", "keyboard", "f", frozenset({1, 2, 3})), Member("gm:2", "keyboard", "f", frozenset({1, 2, 3, 4}))]
    assert len(set(assign_splits(shared * 1, seed=0))) == 1


@pytest.mark.parametrize("name,midi", [("Piano_C4", 60), ("pad F#3 v90", 54), ("bass-Bb1", 34),
                                       ("note_060", 60), ("A0", 21), ("harp c8", 108), ("kick", None)])
def test_pitch_from_file_names(name, midi):
    assert pitch_from_name(name) == midi


def test_velocity_from_file_names():
    assert velocity_from_name("pad F#3 v90") == 90 and velocity_from_name("x_vel127_C4") == 127
    assert velocity_from_name("C4") == 100


def test_png_writer_round_trip(tmp_path):
    from PySide6.QtGui import QImage

    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[2, 3] = (255, 10, 20)
    write_png(tmp_path / "x.png", rgb)
    img = QImage(str(tmp_path / "x.png"))
    assert (img.width(), img.height()) == (7, 5)
    c = img.pixelColor(3, 2)
    assert (c.red(), c.green(), c.blue()) == (255, 10, 20)


def test_out_of_set_sounds_never_feed_a_build(tmp_path):
    from models.data.folder import FolderConfig, build_folder
    from models.data.dataset import DatasetError
    from models.data.sources import held_out_reason, plan_instruments

    assert held_out_reason("/usr/share/sounds/alsa/Front_Center.wav")
    assert held_out_reason("/usr/share/midi/freepats/Tone_000/000_Acoustic_Grand_Piano.pat")
    assert held_out_reason("/opt/fonts/FreePatsGM.sf2")
    assert not held_out_reason("/usr/share/sounds/sf2/FluidR3_GM.sf2")
    with pytest.raises(FontError, match="out-of-set"):
        plan_instruments(["/usr/share/sounds/sf2/freepats-gm.sf2"], (127,), 0, 0)
    with pytest.raises(DatasetError, match="out-of-set"):
        build_folder(FolderConfig(folder="/usr/share/sounds/freedesktop/stereo", out=str(tmp_path / "x")))
