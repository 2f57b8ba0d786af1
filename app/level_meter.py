"""Output level meter: the mixer's peak since the last look, in dBFS, with a falling display."""
from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QRectF, QSize, QTimer
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

FLOOR_DB = -60.0


class LevelMeter(QWidget):
    """Polls ``source()`` (linear peak since the previous call) ``rate_hz`` times a second."""

    def __init__(self, source: Callable[[], float] | None = None, rate_hz: float = 30.0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setMinimumHeight(14)
        self.source = source
        self.level_db = FLOOR_DB
        self.hold_db = FLOOR_DB
        self._hold_ticks = 0
        self._fall_db = 24.0 / rate_hz   # 24 dB per second
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / rate_hz))
        self._timer.timeout.connect(self.poll)
        if source is not None:
            self._timer.start()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(200, 14)

    def set_source(self, source: Callable[[], float]) -> None:
        self.source = source
        self._timer.start()

    def poll(self) -> None:
        try:
            peak = float(self.source()) if self.source is not None else 0.0
        except Exception:  # noqa: BLE001 - a meter never takes the window down
            peak = 0.0
        self.set_peak(peak)

    def set_peak(self, peak: float) -> None:
        db = 20 * math.log10(peak) if peak > 10 ** (FLOOR_DB / 20) else FLOOR_DB
        self.level_db = max(db, self.level_db - self._fall_db)
        if db >= self.hold_db:
            self.hold_db, self._hold_ticks = db, 30
        elif self._hold_ticks > 0:
            self._hold_ticks -= 1
        else:
            self.hold_db = max(FLOOR_DB, self.hold_db - self._fall_db)
        self.setToolTip(f"output peak {self.hold_db:.1f} dBFS")
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor("#1c1c1c"))
        x = lambda db: w * (db - FLOOR_DB) / -FLOOR_DB  # noqa: E731
        color = "#3fbf5f" if self.level_db < -6 else ("#e0c040" if self.level_db < -1 else "#e04040")
        p.fillRect(QRectF(0, 2, x(self.level_db), h - 4), QColor(color))
        p.fillRect(QRectF(x(self.hold_db) - 1, 0, 2, h), QColor("#f0f0f0"))
        p.end()
