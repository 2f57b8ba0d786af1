"""ADSR envelope, master volume, refinement strength and near-root range controls."""
from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QSlider, QSpinBox, QWidget

from engine.envelope import Envelope
from engine.keys import MAX_NEAR_ROOT


def log_scale(lo: float, hi: float) -> tuple[Callable[[int], float], Callable[[float], float]]:
    """Slider position 0..100 <-> a value from ``lo`` to ``hi`` on a log scale (times)."""
    ratio = math.log(hi / lo)
    return (lambda v: lo * math.exp(ratio * v / 100)), (lambda x: 100 * math.log(x / lo) / ratio)


def seconds(x: float) -> str:
    return f"{1000 * x:.0f} ms" if x < 1 else f"{x:.2f} s"


# name -> (label, slider position -> value, value -> slider position, value -> text)
CONTROLS = {
    "attack_s": ("Attack", *log_scale(0.001, 2.0), seconds),
    "decay_s": ("Decay", *log_scale(0.05, 10.0), seconds),
    "sustain": ("Sustain", lambda v: v / 100, lambda x: 100 * x, lambda x: f"{100 * x:.0f} %"),
    "release_s": ("Release", *log_scale(0.01, 5.0), seconds),
}


def gain_to_db(gain: float) -> str:
    return "-inf dB" if gain <= 0 else f"{20 * math.log10(gain):.1f} dB"


def strength_text(percent: int) -> str:
    return "off" if percent <= 0 else f"{percent} %"


class SoundPanel(QWidget):
    """Emits ``envelopeChanged(Envelope)``, ``volumeChanged(gain)`` (linear, 0..1),
    ``refineChanged(strength)`` (0..2, 0 = off) once the Refine slider rests for ``settle_ms``, and
    ``nearRootChanged(semitones)`` (0 = off)."""

    envelopeChanged = Signal(object)
    volumeChanged = Signal(float)
    refineChanged = Signal(float)
    nearRootChanged = Signal(int)

    def __init__(self, settle_ms: int = 300, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        self.sliders: dict[str, QSlider] = {}
        self.labels: dict[str, QLabel] = {}
        rows = list(CONTROLS.items()) + [("volume", ("Volume", lambda v: v / 100, lambda x: 100 * x, gain_to_db))]
        for row, (name, (label, _, _, _)) in enumerate(rows):
            slider = QSlider(Qt.Horizontal)
            slider.setRange(0, 100)
            value = QLabel()
            value.setMinimumWidth(60)
            grid.addWidget(QLabel(label), row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(value, row, 2)
            self.sliders[name], self.labels[name] = slider, value
            slider.valueChanged.connect(lambda _v, n=name: self._changed(n))
        self._specs = dict(rows)
        self._refine_row(grid, len(rows), settle_ms)
        self._near_root_row(grid, len(rows) + 1)
        self.set_envelope(Envelope(), notify=False)
        self.set_volume(0.5, notify=False)
        self.set_refine(1.0, notify=False)

    def _refine_row(self, grid: QGridLayout, row: int, settle_ms: int) -> None:
        self.refine_slider = QSlider(Qt.Horizontal)
        self.refine_slider.setRange(0, 200)       # percent of the engine's default refinement
        self.refine_slider.setSingleStep(5)
        self.refine_slider.setPageStep(25)
        self.refine_slider.setToolTip(
            "After the quick render, a few seconds of optimisation pull the instrument closer to the dropped "
            "sound; the keys are then replaced one by one. 0 % turns it off, 100 % is the default.")
        self.refine_label = QLabel()
        grid.addWidget(QLabel("Refine"), row, 0)
        grid.addWidget(self.refine_slider, row, 1)
        grid.addWidget(self.refine_label, row, 2)
        # One render per resting position, not one per pixel of a drag (each would restart refinement).
        self._refine_timer = QTimer(self)
        self._refine_timer.setSingleShot(True)
        self._refine_timer.setInterval(settle_ms)
        self._refine_timer.timeout.connect(lambda: self.refineChanged.emit(self.refine_strength()))
        self.refine_slider.valueChanged.connect(self._refine_moved)

    def _near_root_row(self, grid: QGridLayout, row: int) -> None:
        self.near_root_box = QSpinBox()
        self.near_root_box.setRange(0, MAX_NEAR_ROOT)
        self.near_root_box.setPrefix("\u00b1")
        self.near_root_box.setSuffix(" st")               # semitones
        self.near_root_box.setSpecialValueText("off")     # shown at 0
        self.near_root_box.setKeyboardTracking(False)     # typing "12" renders once, not for 1 and then 12
        self.near_root_box.setToolTip(
            "Keys within this many semitones of the sound's root play the sound itself, repitched, cross-faded "
            "into the generated keys over the next two. Off (0) plays generated keys everywhere. Single sounds "
            "only: ignored while two or more sounds are mixed.")
        grid.addWidget(QLabel("Sample near root"), row, 0)
        grid.addWidget(self.near_root_box, row, 1, Qt.AlignLeft)
        self.near_root_box.valueChanged.connect(self.nearRootChanged.emit)

    def near_root(self) -> int:
        return self.near_root_box.value()

    def set_near_root(self, semitones: int, notify: bool = True) -> None:
        self.near_root_box.blockSignals(not notify)
        self.near_root_box.setValue(min(max(int(semitones), 0), MAX_NEAR_ROOT))
        self.near_root_box.blockSignals(False)

    def refine_strength(self) -> float:
        return self.refine_slider.value() / 100.0

    def set_refine(self, strength: float, notify: bool = True) -> None:
        self.refine_slider.blockSignals(not notify)
        self.refine_slider.setValue(int(round(100 * min(max(strength, 0.0), 2.0))))
        self.refine_slider.blockSignals(False)
        self.refine_label.setText(strength_text(self.refine_slider.value()))

    def _refine_moved(self, percent: int) -> None:
        self.refine_label.setText(strength_text(percent))
        self._refine_timer.start()

    def _value(self, name: str) -> float:
        return self._specs[name][1](self.sliders[name].value())

    def envelope(self) -> Envelope:
        return Envelope(**{name: self._value(name) for name in CONTROLS})

    def volume(self) -> float:
        return self._value("volume")

    def set_envelope(self, env: Envelope, notify: bool = True) -> None:
        for name in CONTROLS:
            self._set(name, getattr(env, name), notify)

    def set_volume(self, gain: float, notify: bool = True) -> None:
        self._set("volume", gain, notify)

    def _set(self, name: str, value: float, notify: bool) -> None:
        slider = self.sliders[name]
        slider.blockSignals(not notify)
        slider.setValue(int(round(min(max(self._specs[name][2](max(value, 1e-9)), 0), 100))))
        slider.blockSignals(False)
        self.labels[name].setText(self._specs[name][3](self._value(name)))

    def _changed(self, name: str) -> None:
        self.labels[name].setText(self._specs[name][3](self._value(name)))
        if name == "volume":
            self.volumeChanged.emit(self.volume())
        else:
            self.envelopeChanged.emit(self.envelope())
