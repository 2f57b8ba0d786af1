"""Render progress: how many of the 88 keys the current sound has, and what the renderer is doing."""
from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

KEYS_FORMAT = "%v / %m keys"


class RenderProgress(QWidget):
    """One bar for keys landed and, between the quick and the refined keys, refinement steps."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 88)
        self.bar.setFormat(KEYS_FORMAT)
        self.bar.setMinimumWidth(170)   # room for "refining 30 / 30" beside a long status line
        self.bar.setMaximumWidth(220)
        self.bar.setValue(0)
        self.message = QLabel()
        self.message.setWordWrap(True)
        box = QHBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.bar)
        box.addWidget(self.message, 1)

    def set_progress(self, done: int, total: int) -> None:
        self.bar.setFormat(KEYS_FORMAT)
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)

    def set_refining(self, step: int, steps: int) -> None:
        """Refinement step ``step`` of ``steps`` (0 steps: a busy bar)."""
        self.bar.setFormat("refining %v / %m")
        self.bar.setRange(0, max(0, steps))
        self.bar.setValue(step)

    def set_message(self, text: str) -> None:
        self.message.setText(text)
