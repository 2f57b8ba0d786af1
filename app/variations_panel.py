"""Velocity layers and round robins: how many samples each key gets, and their playing order."""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from engine.key_cache import MAX_ROUND_ROBINS, MAX_VELOCITY_LAYERS, Variations


class VariationsPanel(QWidget):
    """Emits ``variationsChanged(Variations)`` when a count changes and ``randomChanged(bool)``.

    Only the counts have controls; the other fields (seed, how far round robins move) stay as last set,
    e.g. by an opened instrument.
    """

    variationsChanged = Signal(object)
    randomChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.layers = QSpinBox()
        self.layers.setRange(1, MAX_VELOCITY_LAYERS)
        self.layers.setToolTip("Velocity layers: softer notes play duller and attack a little slower, by the "
                               "average change of real instruments; each layer has its own timbre (rendered "
                               "after the keys, in the background). 1 turns them off.")
        self.round_robins = QSpinBox()
        self.round_robins.setRange(1, MAX_ROUND_ROBINS)
        self.round_robins.setToolTip("Round robins: repeated notes cycle through slightly different takes of the "
                                     "same key, like striking an instrument again. 1 turns them off.")
        self.random = QCheckBox("Random order")
        self.random.setToolTip("Play the round robins in a random order (never the same twice running)")
        for label, widget in (("Velocity layers", self.layers), ("Round robins", self.round_robins)):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
        row.addWidget(self.random)
        row.addStretch(1)
        self._base = Variations()
        self.set_variations(self._base, notify=False)
        self.layers.valueChanged.connect(lambda _v: self.variationsChanged.emit(self.variations()))
        self.round_robins.valueChanged.connect(lambda _v: self.variationsChanged.emit(self.variations()))
        self.random.toggled.connect(self.randomChanged.emit)

    def variations(self) -> Variations:
        return replace(self._base, round_robins=self.round_robins.value(), velocity_layers=self.layers.value())

    def set_variations(self, v: Variations, notify: bool = True) -> None:
        self._base = v
        for box, value in ((self.layers, v.velocity_layers), (self.round_robins, v.round_robins)):
            box.blockSignals(not notify)
            box.setValue(value)
            box.blockSignals(False)

    def set_random(self, random: bool, notify: bool = True) -> None:
        self.random.blockSignals(not notify)
        self.random.setChecked(random)
        self.random.blockSignals(False)
