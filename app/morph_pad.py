"""The morph pad: a square with a sound at each corner and a puck whose position sets the blend.

Bilinear weights (``engine.mix.pad_weights``): a corner plays its sound alone, the centre all four
evenly; an empty corner's share goes evenly to the filled ones. Drag the puck, click anywhere, or
use the arrow keys (Shift: fine steps; Home: the centre). Like the mix slider, the new position is
emitted once the puck rests, so a drag starts one render.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFocusEvent, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from engine.mix import CORNER_XY, CORNERS, pad_weights

KEY_STEP, FINE_STEP = 0.05, 0.01


class MorphPad(QWidget):
    """``positionChanged(x, y)`` (each in [0, 1]; A top-left, D bottom-right) ``settle_ms`` after the last move."""

    positionChanged = Signal(float, float)

    def __init__(self, settle_ms: int = 150, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.position = (0.0, 0.0)
        self.names: dict[str, str] = {}
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMinimumSize(180, 180)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setAccessibleName("Morph pad")
        self.setToolTip("Drag the puck (or use the arrow keys) to blend the corner sounds; "
                        "the keyboard re-renders in the background")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(settle_ms)
        self._timer.timeout.connect(lambda: self.positionChanged.emit(*self.position))

    # -- state ---------------------------------------------------------------------------------------
    def set_names(self, names: dict[str, str]) -> None:
        """The sound name of each filled corner (slot -> name); other corners show as empty."""
        self.names = {c: names[c] for c in CORNERS if c in names}
        self._describe()
        self.update()

    def set_position(self, x: float, y: float, notify: bool = True) -> None:
        """Move the puck; with ``notify`` False, no render is requested (restoring settings)."""
        x, y = min(max(float(x), 0.0), 1.0), min(max(float(y), 0.0), 1.0)
        if (x, y) == self.position:
            return
        self.position = (x, y)
        self._describe()
        self.update()
        if notify:
            self._timer.start()

    def weights(self) -> dict[str, float]:
        """The filled corners' weights at the puck (empty when no corner is filled)."""
        return pad_weights(*self.position, list(self.names)) if self.names else {}

    def _describe(self) -> None:
        text = ", ".join(f"{self.names[c]} {100 * w:.0f} %" for c, w in self.weights().items())
        self.setAccessibleDescription(text)
        self.setStatusTip(text)

    # -- geometry ------------------------------------------------------------------------------------
    def square(self) -> QRectF:
        """Where the pad is drawn: the largest centred square, inset for the corner labels."""
        side = max(10.0, min(self.width(), self.height()) - 40.0)
        return QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)

    def point_of(self, x: float, y: float) -> QPointF:
        sq = self.square()
        return QPointF(sq.left() + x * sq.width(), sq.top() + y * sq.height())

    def position_at(self, point: QPointF) -> tuple[float, float]:
        sq = self.square()
        return (point.x() - sq.left()) / sq.width(), (point.y() - sq.top()) / sq.height()

    # -- input ---------------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt's name
        if event.button() == Qt.LeftButton:
            self.setFocus(Qt.MouseFocusReason)
            self.set_position(*self.position_at(event.position()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.buttons() & Qt.LeftButton:
            self.set_position(*self.position_at(event.position()))

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        step = FINE_STEP if event.modifiers() & Qt.ShiftModifier else KEY_STEP
        moves = {Qt.Key_Left: (-step, 0), Qt.Key_Right: (step, 0), Qt.Key_Up: (0, -step), Qt.Key_Down: (0, step)}
        if event.key() in moves:
            dx, dy = moves[event.key()]
            self.set_position(self.position[0] + dx, self.position[1] + dy)
        elif event.key() == Qt.Key_Home:
            self.set_position(0.5, 0.5)
        else:
            super().keyPressEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        self.update()
        super().focusInEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        self.update()
        super().focusOutEvent(event)

    # -- drawing -------------------------------------------------------------------------------------
    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        sq = self.square()
        p.fillRect(sq, QColor("#1c1f26"))
        p.setPen(QPen(QColor("#6fb1ff") if self.hasFocus() else QColor("#5a6070"), 2))
        p.drawRect(sq)
        p.setPen(QPen(QColor("#2e3440"), 1))
        for t in (0.25, 0.5, 0.75):
            p.drawLine(self.point_of(t, 0), self.point_of(t, 1))
            p.drawLine(self.point_of(0, t), self.point_of(1, t))
        weights = self.weights()
        for corner in CORNERS:
            self._draw_corner(p, corner, weights.get(corner))
        puck = self.point_of(*self.position)
        p.setPen(QPen(QColor("#ffffff"), 2))
        p.setBrush(QColor("#e0a030"))
        p.drawEllipse(puck, 8, 8)
        p.end()

    def _draw_corner(self, p: QPainter, corner: str, weight: float | None) -> None:
        cx, cy = CORNER_XY[corner]
        at = self.point_of(cx, cy)
        filled = weight is not None
        p.setPen(Qt.NoPen)
        p.setBrush(QColor("#6fb1ff") if filled else QColor("#3a3f4a"))
        p.drawEllipse(at, 5 + (10 * weight if filled else 0), 5 + (10 * weight if filled else 0))
        name = self.names.get(corner, "empty")
        text = f"{corner} {name}" + (f" {100 * weight:.0f} %" if filled else "")
        p.setPen(self.palette().windowText().color() if filled else QColor("#80868f"))
        width = self.width() / 2 - 4
        box = QRectF(2 if cx == 0 else self.width() / 2 + 2, 2 if cy == 0 else self.height() - 18, width, 16)
        p.drawText(box, (Qt.AlignLeft if cx == 0 else Qt.AlignRight) | Qt.AlignVCenter,
                   p.fontMetrics().elidedText(text, Qt.ElideMiddle, int(width)))
