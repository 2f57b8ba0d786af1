"""The window's widgets on their own: keyboard geometry and playing, slot labels, controls, meter."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from app.keyboard import COLORS, WHITE_KEYS, KeyboardWidget, is_black
from app.level_meter import FLOOR_DB, LevelMeter
from app.mix_slider import MixSlider
from app.sample_slot import note_name
from app.sound_panel import SoundPanel
from engine.envelope import Envelope
from engine.keys import MAX_NEAR_ROOT


@pytest.fixture
def keyboard(qtbot) -> KeyboardWidget:
    kb = KeyboardWidget()
    qtbot.addWidget(kb)
    kb.resize(1040, 120)
    kb.show()
    return kb


def record(kb: KeyboardWidget) -> list[tuple]:
    events: list[tuple] = []
    kb.noteOn.connect(lambda n, v: events.append(("on", n, v)))
    kb.noteOff.connect(lambda n: events.append(("off", n)))
    return events


def test_every_key_is_where_it_is_drawn(keyboard):
    assert len(WHITE_KEYS) == 52 and sum(is_black(m) for m in range(21, 109)) == 36
    for midi in range(21, 109):
        center = keyboard.key_rect(midi).center()
        assert keyboard.note_at(center.x(), center.y()) == midi
    low = keyboard.key_rect(61)   # a black key's lower end is outside it: the white key below
    assert keyboard.note_at(low.center().x(), keyboard.height() - 3) in (60, 62)


def test_mouse_plays_louder_lower_and_glides(qtbot, keyboard):
    events = record(keyboard)
    c4 = keyboard.key_rect(60).center().toPoint()
    qtbot.mousePress(keyboard, Qt.LeftButton, pos=QPoint(c4.x(), 10))
    qtbot.mouseRelease(keyboard, Qt.LeftButton, pos=QPoint(c4.x(), 10))
    qtbot.mousePress(keyboard, Qt.LeftButton, pos=QPoint(c4.x(), keyboard.height() - 5))
    assert events[0][:2] == ("on", 60) and events[2][:2] == ("on", 60) and events[2][2] > events[0][2]
    d4 = keyboard.key_rect(62).center().toPoint()
    qtbot.mouseMove(keyboard, pos=QPoint(d4.x(), keyboard.height() - 5))
    assert events[3:5] == [("off", 60), ("on", 62, events[4][2])] and keyboard.held == {62}
    qtbot.mouseRelease(keyboard, Qt.LeftButton, pos=d4)
    assert events[-1] == ("off", 62) and keyboard.held == set()


def test_computer_keys_play_two_octaves_and_shift(qtbot, keyboard):
    events = record(keyboard)
    keyboard.setFocus()
    for key in (Qt.Key_Z, Qt.Key_S, Qt.Key_Comma, Qt.Key_Q, Qt.Key_I):
        qtbot.keyPress(keyboard, key)
    assert [e[1] for e in events] == [48, 49, 60, 60, 72]
    for key in (Qt.Key_Z, Qt.Key_S, Qt.Key_Comma, Qt.Key_Q, Qt.Key_I):
        qtbot.keyRelease(keyboard, key)
    events.clear()
    qtbot.keyClick(keyboard, Qt.Key_Right)
    qtbot.keyPress(keyboard, Qt.Key_Z)
    assert events == [("on", 60, 100)]
    repeat = QKeyEvent(QEvent.KeyPress, Qt.Key_Z, Qt.NoModifier, "z", True)   # auto-repeat
    QApplication.sendEvent(keyboard, repeat)
    assert len(events) == 1
    keyboard.clearFocus()                       # focus lost while held: no hanging note
    assert events[-1] == ("off", 60) and keyboard.held == set()


def test_key_colors_tell_rendered_stale_missing_and_held(keyboard):
    keyboard.set_keys(rendered={60, 61, 62}, fresh={60, 61})
    keyboard.show_note(64, True)
    assert keyboard._color(60) == COLORS["white"] and keyboard._color(61) == COLORS["black"]
    assert keyboard._color(62) == COLORS["white_stale"] and keyboard._color(63) == COLORS["black_missing"]
    assert keyboard._color(64) == COLORS["held"]
    keyboard.show_note(64, False)
    assert keyboard._color(64) == COLORS["white_missing"]


@pytest.mark.parametrize("midi, text", [(60.0, "C4"), (69.12, "A4 +12 ct"), (20.6, "A0 -40 ct"), (108.0, "C8")])
def test_note_names(midi, text):
    assert note_name(midi) == text


def test_sound_panel_round_trips_and_signals(qtbot):
    panel = SoundPanel()
    qtbot.addWidget(panel)
    env = Envelope(attack_s=0.02, decay_s=3.0, sustain=0.4, release_s=0.8)
    panel.set_envelope(env, notify=False)
    got = panel.envelope()
    for name in ("attack_s", "decay_s", "release_s"):
        assert getattr(got, name) == pytest.approx(getattr(env, name), rel=0.1)
    assert got.sustain == pytest.approx(0.4)
    with qtbot.waitSignal(panel.envelopeChanged) as blocker:
        panel.sliders["sustain"].setValue(90)
    assert blocker.args[0].sustain == pytest.approx(0.9)
    with qtbot.waitSignal(panel.volumeChanged) as blocker:
        panel.sliders["volume"].setValue(100)
    assert blocker.args == [1.0] and panel.labels["volume"].text() == "0.0 dB"


def test_sound_panel_near_root_box(qtbot):
    panel = SoundPanel()
    qtbot.addWidget(panel)
    box = panel.near_root_box
    assert panel.near_root() == 0 and box.text() == "off"
    assert "ignored while two or more sounds are mixed" in box.toolTip()
    with qtbot.waitSignal(panel.nearRootChanged) as got:
        qtbot.keyClick(box, Qt.Key_Up)
    assert got.args == [1] and box.text() == "\u00b11 st"
    with qtbot.assertNotEmitted(panel.nearRootChanged):
        panel.set_near_root(99, notify=False)
    assert panel.near_root() == MAX_NEAR_ROOT


def test_mix_slider_waits_for_the_slider_to_rest(qtbot):
    mix = MixSlider(settle_ms=50)
    qtbot.addWidget(mix)
    seen = []
    mix.alphaChanged.connect(seen.append)
    for value in (10, 20, 30, 40):
        mix.slider.setValue(value)
    qtbot.waitUntil(lambda: seen == [0.4], timeout=2000)
    mix.set_alpha(0.8, notify=False)
    qtbot.wait(120)
    assert seen == [0.4] and mix.value_label.text() == "20 % A / 80 % B"


def test_level_meter_follows_peaks_and_falls(qtbot):
    peaks = [1.0, 0.0, 0.0]
    meter = LevelMeter(lambda: peaks.pop(0) if peaks else 0.0)
    qtbot.addWidget(meter)
    meter.poll()
    assert meter.level_db == pytest.approx(0.0) and meter.hold_db == pytest.approx(0.0)
    meter.poll()
    assert FLOOR_DB < meter.level_db < 0.0          # falls, does not drop
    for _ in range(200):
        meter.poll()
    assert meter.level_db == FLOOR_DB and meter.hold_db == FLOOR_DB
