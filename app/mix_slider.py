"""The A <-> B mix slider: emits the new mix once the slider rests, so a drag starts one render."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget


class MixSlider(QWidget):
    """``alphaChanged(alpha)`` with alpha in [0, 1] (0 = all A), ``settle_ms`` after the last move."""

    alphaChanged = Signal(float)

    def __init__(self, settle_ms: int = 150, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setPageStep(10)
        self.slider.setToolTip("Blend the timbres of A and B; the keyboard re-renders in the background")
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(90)
        box = QHBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        self.ends = (QLabel("<b>A</b>"), QLabel("<b>B</b>"))
        self.names = ("A", "B")
        box.addWidget(self.ends[0])
        box.addWidget(self.slider, 1)
        box.addWidget(self.ends[1])
        box.addWidget(self.value_label)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(settle_ms)
        self._timer.timeout.connect(self._emit)
        self.slider.valueChanged.connect(self._moved)
        self._moved(self.slider.value())

    @property
    def alpha(self) -> float:
        return self.slider.value() / 100.0

    def set_alpha(self, alpha: float, notify: bool = True) -> None:
        """Move the slider; with ``notify`` False, no render is requested (restoring settings)."""
        self.slider.blockSignals(not notify)
        self.slider.setValue(int(round(100 * min(max(alpha, 0.0), 1.0))))
        self.slider.blockSignals(False)
        self._show()

    def set_ends(self, first: str, second: str) -> None:
        """The slots at the slider's two ends (A and B unless the two sounds sit elsewhere)."""
        self.names = (first, second)
        for label, name in zip(self.ends, self.names):
            label.setText(f"<b>{name}</b>")
        self._show()

    def _moved(self, _value: int) -> None:
        self._show()
        self._timer.start()

    def _show(self) -> None:
        first, second = self.names
        self.value_label.setText(f"{100 - self.slider.value()} % {first} / {self.slider.value()} % {second}")

    def _emit(self) -> None:
        self.alphaChanged.emit(self.alpha)
