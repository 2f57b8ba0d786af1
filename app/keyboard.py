"""The 88-key keyboard: shows which keys are rendered, highlights held notes, plays from mouse and keys.

Computer keys: Z S X D C V G B H N J M , play C3..C4 and Q 2 W 3 E R 5 T 6 Y 7 U I play C4..C5
(left/right arrows shift by an octave). Mouse: the lower on a key, the louder; dragging glides.
"""
from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFocusEvent, QKeyEvent, QMouseEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from models.units import HIGHEST_KEY, LOWEST_KEY

BLACK = {1, 3, 6, 8, 10}
LOWER_ROW = [Qt.Key_Z, Qt.Key_S, Qt.Key_X, Qt.Key_D, Qt.Key_C, Qt.Key_V, Qt.Key_G, Qt.Key_B, Qt.Key_H, Qt.Key_N,
             Qt.Key_J, Qt.Key_M, Qt.Key_Comma]
UPPER_ROW = [Qt.Key_Q, Qt.Key_2, Qt.Key_W, Qt.Key_3, Qt.Key_E, Qt.Key_R, Qt.Key_5, Qt.Key_T, Qt.Key_6, Qt.Key_Y,
             Qt.Key_7, Qt.Key_U, Qt.Key_I]
KEY_OFFSETS = {**{int(k): i for i, k in enumerate(LOWER_ROW)}, **{int(k): 12 + i for i, k in enumerate(UPPER_ROW)}}

COLORS = {
    "white": QColor("#f4f4f0"), "black": QColor("#202024"),
    "white_missing": QColor("#9c9c9c"), "black_missing": QColor("#55555a"),
    "white_stale": QColor("#f0d9a8"), "black_stale": QColor("#6b5328"),
    "held": QColor("#4f9dff"), "outline": QColor("#505050"), "root": QColor("#e0563b"),
}


def is_black(midi: int) -> bool:
    return midi % 12 in BLACK


WHITE_KEYS = [m for m in range(LOWEST_KEY, HIGHEST_KEY + 1) if not is_black(m)]   # 52


class KeyboardWidget(QWidget):
    """Emits ``noteOn(midi, velocity)`` / ``noteOff(midi)``; shows rendered, stale and held keys."""

    noteOn = Signal(int, int)
    noteOff = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setMinimumHeight(110)
        self.rendered: set[int] = set()
        self.fresh: set[int] = set()
        self.held: set[int] = set()           # held by anyone (mouse, keys, MIDI)
        self.root_note: int | None = None
        self.octave_shift = 0
        self._mouse_note: int | None = None
        self._typed: dict[int, int] = {}      # Qt key -> note it started

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(1040, 120)

    # -- state ---------------------------------------------------------------------------------------
    def set_keys(self, rendered: set[int], fresh: set[int]) -> None:
        """``rendered``: keys with their own sample; ``fresh``: those rendered for the current sound."""
        self.rendered, self.fresh = set(rendered), set(fresh)
        self.update()

    def set_root(self, midi: int | None) -> None:
        self.root_note = midi
        self.update()

    def show_note(self, midi: int, down: bool) -> None:
        """Highlight a note played elsewhere (MIDI)."""
        (self.held.add if down else self.held.discard)(midi)
        self.update()

    # Bound methods (not lambdas) so that signals from the MIDI thread are queued to this widget's thread.
    def show_note_on(self, midi: int, _velocity: int) -> None:
        self.show_note(midi, True)

    def show_note_off(self, midi: int) -> None:
        self.show_note(midi, False)

    # -- geometry ------------------------------------------------------------------------------------
    def key_rect(self, midi: int) -> QRectF:
        width = self.width() / len(WHITE_KEYS)
        if not is_black(midi):
            return QRectF(WHITE_KEYS.index(midi) * width, 0, width, self.height() - 1)
        left_white = WHITE_KEYS.index(midi - 1)
        return QRectF((left_white + 1) * width - 0.3 * width, 0, 0.6 * width, 0.62 * self.height())

    def note_at(self, x: float, y: float) -> int | None:
        width = self.width() / len(WHITE_KEYS)
        index = int(x // width)
        if not 0 <= index < len(WHITE_KEYS):
            return None
        white = WHITE_KEYS[index]
        for black in (white - 1, white + 1):
            if LOWEST_KEY <= black <= HIGHEST_KEY and is_black(black) and self.key_rect(black).contains(x, y):
                return black
        return white

    def velocity_at(self, y: float) -> int:
        return int(min(127, max(20, 20 + 107 * y / max(1, self.height() - 1))))

    # -- painting ------------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, False)
        for black in (False, True):
            for midi in range(LOWEST_KEY, HIGHEST_KEY + 1):
                if is_black(midi) == black:
                    p.setPen(COLORS["outline"])
                    p.setBrush(self._color(midi))
                    p.drawRect(self.key_rect(midi))
        p.setPen(COLORS["outline"])
        for c in range(24, HIGHEST_KEY + 1, 12):   # octave names on the C keys
            r = self.key_rect(c)
            p.drawText(QRectF(r.left(), r.bottom() - 30, r.width(), 14), Qt.AlignCenter, f"C{c // 12 - 1}")
        if self.root_note is not None and LOWEST_KEY <= self.root_note <= HIGHEST_KEY:
            r = self.key_rect(self.root_note)
            p.setPen(Qt.NoPen)
            p.setBrush(COLORS["root"])
            p.drawEllipse(QRectF(r.center().x() - 3, r.bottom() - 12, 6, 6))
        p.end()

    def _color(self, midi: int) -> QColor:
        if midi in self.held:
            return COLORS["held"]
        base = "black" if is_black(midi) else "white"
        if midi in self.fresh:
            return COLORS[base]
        return COLORS[f"{base}_stale" if midi in self.rendered else f"{base}_missing"]

    # -- playing -------------------------------------------------------------------------------------
    def _press(self, midi: int, velocity: int) -> None:
        self.held.add(midi)
        self.noteOn.emit(midi, velocity)
        self.update()

    def _release(self, midi: int) -> None:
        self.held.discard(midi)
        self.noteOff.emit(midi)
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() != Qt.LeftButton:
            return
        pos = event.position()
        note = self.note_at(pos.x(), pos.y())
        if note is not None:
            self._mouse_note = note
            self._press(note, self.velocity_at(pos.y()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._mouse_note is None:
            return
        pos = event.position()
        note = self.note_at(pos.x(), pos.y())
        if note is not None and note != self._mouse_note:
            self._release(self._mouse_note)
            self._mouse_note = note
            self._press(note, self.velocity_at(pos.y()))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._mouse_note is not None:
            self._release(self._mouse_note)
            self._mouse_note = None

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = int(event.key())
        if event.isAutoRepeat() and key in self._typed:
            return
        if key in (int(Qt.Key_Left), int(Qt.Key_Right)):
            step = -12 if key == int(Qt.Key_Left) else 12
            self.octave_shift = max(-36, min(36, self.octave_shift + step))
            return
        offset = KEY_OFFSETS.get(key)
        if offset is None or key in self._typed:
            super().keyPressEvent(event)
            return
        note = 48 + self.octave_shift + offset
        if LOWEST_KEY <= note <= HIGHEST_KEY:
            self._typed[key] = note
            self._press(note, 100)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = int(event.key())
        if event.isAutoRepeat():
            return
        note = self._typed.pop(key, None)
        if note is not None:
            self._release(note)
        else:
            super().keyReleaseEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        for note in self._typed.values():   # keys released while focus was away would hang
            self._release(note)
        self._typed.clear()
        super().focusOutEvent(event)
