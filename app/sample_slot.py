"""A drop slot (A to D): a sound's name, its root (detected, or set by hand), waveform and mel views;
open, clear, errors."""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QValidator
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from models.signal.audio import Audio
from models.units import HIGHEST_KEY, LOWEST_KEY

AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.oga *.aif *.aiff *.mp3 *.opus *.w64 *.caf);;All files (*)"
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
UNSURE = 0.5   # pitch confidence below which the detected root is flagged
_NOTE = re.compile(r"\s*([A-Ga-g])\s*([#b]?)\s*(-?\d+)\s*")
_PARTIAL_NOTE = re.compile(r"\s*([A-Ga-g]\s*[#b]?\s*-?\d*)?\s*|\s*\d{0,3}\s*")


def note_name(midi: float) -> str:
    """'A4 +12 ct' for a fractional MIDI note."""
    nearest = int(round(midi))
    cents = int(round(100 * (midi - nearest)))
    name = f"{NOTE_NAMES[nearest % 12]}{nearest // 12 - 1}"
    return name if cents == 0 else f"{name} {cents:+d} ct"


def parse_note(text: str) -> int | None:
    """'C#4', 'Db4', 'a2' or a MIDI number '61' -> MIDI note; None if it is neither."""
    if text.strip().isdigit():
        return int(text)
    match = _NOTE.fullmatch(text)
    if match is None:
        return None
    letter, accidental, octave = match.groups()
    step = NOTE_NAMES.index(letter.upper()) + {"#": 1, "b": -1, "": 0}[accidental]
    return 12 * (int(octave) + 1) + step


class NoteSpinBox(QSpinBox):
    """A MIDI note on the piano (``models.units``) shown (and typed) as a note name."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(LOWEST_KEY, HIGHEST_KEY)
        self.setKeyboardTracking(False)   # typing 'C#3' is one change, not three

    def textFromValue(self, value: int) -> str:  # noqa: N802 - Qt's name
        return note_name(value)

    def valueFromText(self, text: str) -> int:  # noqa: N802
        midi = parse_note(text)
        return self.value() if midi is None else midi

    def validate(self, text: str, pos: int) -> object:
        midi = parse_note(text)
        if midi is not None and self.minimum() <= midi <= self.maximum():
            return QValidator.Acceptable, text, pos
        if _PARTIAL_NOTE.fullmatch(text):
            return QValidator.Intermediate, text, pos
        return QValidator.Invalid, text, pos


def detected_text(midi: float, confidence: float) -> str:
    """'A2 · 99 %' (and '(unsure)' below ``UNSURE``) for a detected pitch."""
    if not math.isfinite(midi):
        return "no pitch"
    sure = "" if confidence >= UNSURE else " (unsure)"
    return f"{note_name(midi)} \u00b7 {100 * confidence:.0f} %{sure}"


def display_mel(audio: Audio, n_mels: int = 64) -> np.ndarray:
    """Log-mel ``[frames, n_mels]`` of a mono sound for display (not the model's grid)."""
    import torch

    from models.signal.mel import LogMel, MelConfig

    rate, samples = audio.sample_rate, audio.samples
    cfg = MelConfig(sample_rate=rate, n_fft=1024, win_length=1024, hop_length=max(64, len(samples) // 256),
                    n_mels=n_mels, f_max=rate / 2)
    with torch.no_grad():
        mel = LogMel(cfg)(torch.from_numpy(np.ascontiguousarray(samples)))
    return mel.numpy().T


def waveform_envelope(samples: np.ndarray, points: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """Min/max pairs of ``samples`` over ``points`` columns, interleaved for a filled-looking line."""
    cols = max(1, min(points, len(samples)))
    usable = samples[: len(samples) // cols * cols].reshape(cols, -1)
    env = np.stack([usable.min(axis=1), usable.max(axis=1)], axis=1).reshape(-1)
    return np.repeat(np.arange(cols), 2).astype(np.float32), env


class SampleSlot(QFrame):
    """One of the four sound slots. Emits ``fileChosen(path)`` for a drop or the dialog, ``cleared``, and
    ``rootChosen(midi)`` when the user sets the root (None: back to the detected one)."""

    fileChosen = Signal(str)
    cleared = Signal()
    rootChosen = Signal(object)

    def __init__(self, slot: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slot = slot
        self.setObjectName(f"slot{slot}")
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.StyledPanel)
        self.setMinimumWidth(300)
        self.title = QLabel(f"<b>{slot}</b>")
        self.name = QLabel("Drop a sound here")
        self.name.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.pitch = QLabel("")            # the detected pitch and its confidence
        self.root_box = NoteSpinBox()
        self.root_box.setToolTip("The key the sound is played at. Set it when the detected pitch is wrong "
                                 "(e.g. an octave off); the keys are rendered again.")
        self.root_box.setEnabled(False)
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Use the detected pitch as the root")
        self.auto_button.setEnabled(False)
        self.open_button = QPushButton("Open\u2026")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setEnabled(False)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d04040;")
        self.error.hide()
        self.wave_plot = pg.PlotWidget()
        self.mel_plot = pg.PlotWidget()
        self.wave_plot.setFixedHeight(44)
        self.mel_plot.setMinimumHeight(56)
        for plot in (self.wave_plot, self.mel_plot):
            plot.hideAxis("bottom")
            plot.hideAxis("left")
            plot.setMouseEnabled(False, False)
            plot.getViewBox().setDefaultPadding(0.0)
            plot.hideButtons()
            plot.setMenuEnabled(False)
        self.wave_curve = self.wave_plot.plot(pen=pg.mkPen("#6fb1ff", width=1))
        self.mel_image = pg.ImageItem()
        self.mel_image.setColorMap(pg.colormap.get("inferno"))
        self.mel_plot.addItem(self.mel_image)
        self._layout()
        self.open_button.clicked.connect(self.open_dialog)
        self.clear_button.clicked.connect(self.cleared)
        self.root_box.valueChanged.connect(lambda midi: self.rootChosen.emit(int(midi)))
        self.auto_button.clicked.connect(lambda: self.rootChosen.emit(None))

    def _layout(self) -> None:
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.name, 1)
        header.addWidget(self.open_button)
        header.addWidget(self.clear_button)
        self.root_row = QWidget()   # hidden while the slot is empty, keeping its height
        policy = self.root_row.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.root_row.setSizePolicy(policy)
        self.root_row.hide()
        root = QHBoxLayout(self.root_row)
        root.setContentsMargins(0, 0, 0, 0)
        root.addWidget(QLabel("Root"))
        root.addWidget(self.root_box)
        root.addWidget(self.auto_button)
        root.addSpacing(12)
        root.addWidget(QLabel("detected"))
        root.addWidget(self.pitch)
        root.addStretch(1)
        box = QVBoxLayout(self)
        box.addLayout(header)
        box.addWidget(self.root_row)
        box.addWidget(self.error)
        box.addWidget(self.wave_plot)
        box.addWidget(self.mel_plot)

    # -- input ---------------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.fileChosen.emit(files[0])

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Open a sound for slot {self.slot}", "", AUDIO_FILTER)
        if path:
            self.fileChosen.emit(path)

    # -- display -------------------------------------------------------------------------------------
    def show_sample(self, sample: Any, detected: Any | None = None, editable: bool = True) -> None:
        """Show a loaded sound (anything with ``name``, ``audio``, ``midi``, ``confidence`` and ``root_note``).

        ``detected``: the same sound at its detected pitch, when ``sample`` plays at a root set by hand.
        """
        self.error.hide()
        self.name.setText(sample.name)
        self.name.setToolTip(sample.name)
        self.show_root(sample, detected, editable)
        samples = sample.audio.samples
        self.wave_curve.setData(*waveform_envelope(samples))
        x, _ = self.wave_curve.getData()
        self.wave_plot.setRange(xRange=(0, max(1.0, float(x[-1]))), yRange=(-1, 1), padding=0.02)
        mel = display_mel(sample.audio)   # [frames, mels]
        self.mel_image.setImage(mel, autoLevels=True)
        self.mel_plot.setRange(xRange=(0, mel.shape[0]), yRange=(0, mel.shape[1]), padding=0.0)
        self.clear_button.setEnabled(True)

    def show_root(self, sample: Any, detected: Any | None = None, editable: bool = True) -> None:
        """The root ``sample`` plays at (in the spin box) and the detected pitch with its confidence."""
        detected = detected or sample
        confidence = getattr(detected, "confidence", 1.0)
        self.pitch.setText(detected_text(detected.midi, confidence))
        self.pitch.setToolTip(f"MIDI {detected.midi:.2f}, confidence {confidence:.2f}"
                              + ("; the detector is unsure: set the root by hand if keys sound off"
                                 if confidence < UNSURE else ""))
        self.pitch.setStyleSheet("color: #e0a030; font-weight: bold;" if confidence < UNSURE else "")
        self.root_box.blockSignals(True)
        self.root_box.setValue(sample.root_note)
        self.root_box.blockSignals(False)
        self.root_box.setEnabled(editable)
        self.auto_button.setEnabled(editable and sample is not detected)
        self.root_row.show()

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def show_empty(self) -> None:
        self.error.hide()
        self.name.setText("Drop a sound here")
        self.name.setToolTip("")
        self.pitch.setText("")
        self.pitch.setStyleSheet("")
        self.root_row.hide()
        self.wave_curve.setData([], [])
        self.mel_image.clear()
        self.clear_button.setEnabled(False)
