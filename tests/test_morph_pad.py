"""The morph pad and saved instruments in the window, headless (same fakes as tests/test_app.py)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import soundfile as sf
from PySide6.QtCore import QPointF, Qt

from app.morph_pad import MorphPad
from engine.envelope import Envelope
from engine.mix import pad_weights
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_app import RATE, drop, engine, make_window, sounds, wait_rendered, weights, window  # noqa: F401


@pytest.fixture
def quad(sounds, tmp_path) -> dict[str, Path]:  # noqa: F811
    low, high = tmp_path / "low.wav", tmp_path / "high.wav"
    sf.write(low, harmonic_tone(48, sample_rate=RATE, duration_s=1.2, decay_s=0.6, seed=4), RATE)
    sf.write(high, plucked_string(64, sample_rate=RATE, duration_s=1.2), RATE)
    return {"A": sounds["c4"], "B": sounds["pluck"], "C": low, "D": high}


def test_pad_keys_mouse_and_weights(qtbot):
    pad = MorphPad(settle_ms=20)
    qtbot.addWidget(pad)
    pad.resize(240, 240)
    pad.show()
    pad.set_names({"A": "a", "B": "b", "C": "c"})
    assert pad.position == (0.0, 0.0) and pad.weights() == {"A": 1.0, "B": 0.0, "C": 0.0}
    moves = []
    pad.positionChanged.connect(lambda x, y: moves.append((x, y)))
    with qtbot.waitSignal(pad.positionChanged, timeout=1000):
        for _ in range(3):
            qtbot.keyPress(pad, Qt.Key_Right)
        qtbot.keyPress(pad, Qt.Key_Down, Qt.ShiftModifier)
        qtbot.keyPress(pad, Qt.Key_Up)                         # clamped at the top edge
    assert moves == [pytest.approx((0.15, 0.0))]              # one emission once the puck rests
    qtbot.keyPress(pad, Qt.Key_Home)
    assert pad.position == (0.5, 0.5)
    assert pad.weights() == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})   # D empty: spread evenly
    corner = pad.point_of(1.0, 1.0)
    qtbot.mouseClick(pad, Qt.LeftButton, pos=corner.toPoint())
    assert pad.position == pytest.approx((1.0, 1.0), abs=0.01)
    assert pad.position_at(QPointF(pad.point_of(0.25, 0.75))) == pytest.approx((0.25, 0.75))
    assert "a 33 %" in pad.accessibleDescription()
    pad.grab()                                                  # paints without errors


def load_quad(qtbot, window, quad, n: int = 4) -> None:  # noqa: F811
    for slot in "ABCD"[:n]:
        assert drop(window.slots[slot], quad[slot])
    wait_rendered(qtbot, window)


def test_two_sounds_keep_the_slider_and_a_third_brings_the_pad(qtbot, window, quad):  # noqa: F811
    drop(window.slots["A"], quad["A"])
    drop(window.slots["C"], quad["C"])
    assert window.mix.isVisible() and window.mix.isEnabled() and not window.pad.isVisible()
    assert window.mix.value_label.text() == "100 % A / 0 % C"
    window.mix.set_alpha(0.4)
    qtbot.waitUntil(lambda: window.instrument.alpha == pytest.approx(0.4), timeout=2000)
    drop(window.slots["B"], quad["B"])
    assert window.pad.isVisible() and not window.mix.isVisible()
    assert window.instrument.pad == pytest.approx((0.0, 0.4))  # on the A-C edge, where the slider was
    assert window.instrument.weights() == pytest.approx({"A": 0.6, "B": 0.0, "C": 0.4})
    assert window.pad.position == pytest.approx((0.0, 0.4)) and window.settings.pad == pytest.approx((0.0, 0.4))
    window.instrument.clear("B")
    assert window.mix.isVisible() and window.instrument.alpha == pytest.approx(0.4)
    wait_rendered(qtbot, window)


@pytest.mark.slow
def test_a_pad_move_rerenders_in_the_background_and_a_newer_one_cancels_it(qtbot, window, quad, engine):  # noqa: F811
    window.sound.set_refine(0.0, notify=False)
    window.instrument.refine_strength = 0.0
    load_quad(qtbot, window, quad)
    before = dict(window.instrument.keys)
    engine.calls.clear()
    with qtbot.waitSignal(window.pad.positionChanged, timeout=2000):
        window.pad.set_position(0.3, 0.6)
    job = window.instrument.job
    assert not job.fresh and job.weights == tuple(pad_weights(0.3, 0.6, "ABCD").values())
    assert set(window.instrument.keys) == set(before)          # old keys stay playable meanwhile
    window.instrument.set_pad(0.8, 0.1)                        # a newer move before the first finished
    assert job.cancel.is_set()
    wait_rendered(qtbot, window)
    assert window.instrument.job.weights == tuple(pad_weights(0.8, 0.1, "ABCD").values())
    last = engine.calls[-1]["keys"]
    assert len(last) == 88 and all(key is last[m] for m, key in window.instrument.keys.items())
    # The older render stopped between keys, or never started when the worker found it superseded.
    assert len(engine.calls) == 1 or (len(engine.calls) == 2 and len(engine.calls[0]["keys"]) < 88)
    assert engine.calls[-1]["sound"] == "c4 + pluck + low + high"
    assert window.settings.pad == pytest.approx((0.3, 0.6))    # the pad's own last resting place


@pytest.mark.slow
def test_pad_moves_reuse_each_sounds_refinement(qtbot, window, quad, engine):  # noqa: F811
    load_quad(qtbot, window, quad, n=3)
    engine.calls.clear()
    window.instrument.set_pad(0.5, 0.5)
    wait_rendered(qtbot, window)
    assert [(c["sound"], c["refine"] is not None) for c in engine.calls] == [("c4 + pluck + low", True)]
    assert window.progress.message.text().endswith("(refined)")


def state(window) -> dict:
    inst = window.instrument
    return {"sounds": {s: (inst.samples[s].name, inst.samples[s].content_hash, inst.samples[s].root_note)
                       for s in inst.filled},
            "alpha": inst.alpha, "pad": inst.pad, "refine": inst.refine_strength, "volume": window.sound.volume(),
            "envelope": window.sound.envelope(), "job": inst.job}


@pytest.mark.slow
def test_save_and_open_round_trip_and_the_recent_list(qtbot, tmp_path, engine, quad):  # noqa: F811
    window = make_window(qtbot, tmp_path, engine)
    load_quad(qtbot, window, quad, n=3)
    window.slots["B"].root_box.setValue(40)
    window.instrument.set_pad(0.2, 0.7)
    window.sound.set_envelope(Envelope(0.02, 3.0, 0.4, 1.2))
    window.sound.set_volume(0.3)
    saved = state(window)
    path = tmp_path / "trio.hgi"
    window.files.choose_save = lambda parent, start: path
    assert window.files.save() == path and "Saved" in window.progress.message.text()
    assert zipfile.ZipFile(path).testzip() is None
    window.instrument.clear("C")
    window.instrument.set_alpha(0.9)
    window.sound.set_volume(0.8)
    assert window.files.open(path=path)
    assert {k: v for k, v in state(window).items() if k != "job"} == {k: v for k, v in saved.items() if k != "job"}
    assert window.pad.isVisible() and window.pad.position == pytest.approx((0.2, 0.7))
    assert window.slots["B"].root_box.text() == "E2" and window.slots["B"].auto_button.isEnabled()
    assert window.instrument.job.fresh
    assert window.settings.recent_instruments == [path]
    wait_rendered(qtbot, window)
    window.shutdown()
    again = make_window(qtbot, tmp_path, engine, restore=False)
    recent = again.files.recent_menu.actions()
    assert recent[0].text() == "trio.hgi" and recent[0].toolTip() == str(path)
    recent[0].trigger()
    assert again.instrument.filled == ["A", "B", "C"]
    wait_rendered(qtbot, again)
    path.unlink()
    assert not again.files.open_recent(path) and "gone" in again.progress.message.text()
    assert again.settings.recent_instruments == [] and not again.files.recent_menu.isEnabled()
    again.shutdown()


@pytest.mark.parametrize("damage", ["not_zip", "newer", "missing_audio", "bad_type"])
def test_a_bad_instrument_file_changes_nothing(qtbot, window, quad, tmp_path, damage):  # noqa: F811
    load_quad(qtbot, window, quad, n=3)
    good = tmp_path / "good.hgi"
    window.files.choose_save = lambda parent, start: good
    window.files.save()
    bad = tmp_path / "bad.hgi"
    if damage == "not_zip":
        bad.write_bytes(b"PK\x03\x04 truncated")
    else:
        import json
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
            manifest = json.loads(src.read("manifest.json"))
            manifest.update(version=9) if damage == "newer" else None
            if damage == "bad_type":
                manifest["sounds"][0]["root"] = "C4"
            dst.writestr("manifest.json", json.dumps(manifest))
            for name in src.namelist()[1:]:
                if not (damage == "missing_audio" and name.endswith("C.wav")):
                    dst.writestr(name, src.read(name))
    window.instrument.set_pad(0.6, 0.6)
    before, keys = state(window), dict(window.instrument.keys)
    assert not window.files.open(path=bad)
    assert state(window) == before and window.instrument.keys == keys
    assert window.progress.message.text().startswith("Open failed: bad.hgi: ")
    assert window.settings.recent_instruments == [good]


def test_saving_without_a_sound_or_into_a_missing_folder_says_why(qtbot, window, quad, tmp_path):  # noqa: F811
    window.files.choose_save = lambda parent, start: tmp_path / "nowhere" / "x.hgi"
    assert window.files.save() is None and "drop a sound first" in window.progress.message.text()
    drop(window.slots["A"], quad["A"])
    assert window.files.save() is None
    assert window.progress.message.text().startswith("Save failed: cannot save")
    assert window.settings.recent_instruments == []
    wait_rendered(qtbot, window)


def test_an_instrument_keeps_its_variations_and_near_root(qtbot, tmp_path, quad):  # noqa: F811
    import json
    from dataclasses import replace

    from engine.instrument_file import open_instrument, save_instrument
    from engine.key_cache import PLAIN, Variations
    from tests.test_instrument_file import rewrite

    window = make_window(qtbot, tmp_path, None)     # no model: nothing renders; files still save and open
    try:
        for slot in "AB":
            drop(window.slots[slot], quad[slot])
        layered = Variations(round_robins=2, velocity_layers=3)
        window.variations.set_variations(layered)
        window.sound.near_root_box.setValue(3)
        path = tmp_path / "layered.hgi"
        window.files.choose_save = lambda parent, start: path
        assert window.files.save() == path
        assert open_instrument(path).variations == layered and open_instrument(path).near_root == 3
        window.variations.set_variations(PLAIN)
        window.sound.near_root_box.setValue(0)
        assert window.instrument.variations == PLAIN and window.instrument.near_root == 0
        assert window.files.open(path=path)
        assert window.variations.variations() == layered and window.instrument.variations == layered
        assert window.settings.variations == layered
        assert window.sound.near_root() == window.instrument.near_root == window.settings.near_root == 3
        # Settings without a control (seed, round-robin spread) survive a count changed in the panel.
        seeded = replace(layered, seed=7, rr_h_scale=0.2)
        assert window.files.open(path=save_instrument(tmp_path / "seeded.hgi",
                                                      replace(open_instrument(path), variations=seeded)))
        window.variations.round_robins.setValue(4)
        assert window.instrument.variations == replace(seeded, round_robins=4)
        assert open_instrument(window.files.save(path=path)).variations == replace(seeded, round_robins=4)
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        del manifest["variations"]                  # a file saved before variations existed
        older = rewrite(path, tmp_path / "older.hgi", manifest=manifest)
        assert window.files.open(path=older)
        assert window.variations.variations() == PLAIN and window.instrument.variations == PLAIN
    finally:
        window.shutdown()
