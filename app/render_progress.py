"""Render progress: how many of the 88 keys the current sound has, and what the renderer is doing."""
from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget


class RenderProgress(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 88)
        self.bar.setFormat("%v / %m keys")
        self.bar.setMaximumWidth(220)
        self.bar.setValue(0)
        self.message = QLabel()
        self.message.setWordWrap(True)
        box = QHBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.bar)
        box.addWidget(self.message, 1)

    def set_progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)

    def set_message(self, text: str) -> None:
        self.message.setText(text)
