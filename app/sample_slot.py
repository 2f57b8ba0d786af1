"""A drop slot (A or B): a sound's name, detected pitch, waveform and mel views; open, clear, errors."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from models.signal.audio import Audio

AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.oga *.aif *.aiff *.mp3 *.opus *.w64 *.caf);;All files (*)"
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: float) -> str:
    """'A4 +12 ct' for a fractional MIDI note."""
    nearest = int(round(midi))
    cents = int(round(100 * (midi - nearest)))
    name = f"{NOTE_NAMES[nearest % 12]}{nearest // 12 - 1}"
    return name if cents == 0 else f"{name} {cents:+d} ct"


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
    """One of the two sound slots. Emits ``fileChosen(path)`` for a drop or the dialog, ``cleared``."""

    fileChosen = Signal(str)
    cleared = Signal()

    def __init__(self, slot: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slot = slot
        self.setObjectName(f"slot{slot}")
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.StyledPanel)
        self.setMinimumWidth(320)
        self.title = QLabel(f"<b>{slot}</b>")
        self.name = QLabel("Drop a sound here")
        self.name.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.pitch = QLabel("")
        self.open_button = QPushButton("Open\u2026")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setEnabled(False)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d04040;")
        self.error.hide()
        self.wave_plot = pg.PlotWidget()
        self.mel_plot = pg.PlotWidget()
        self.wave_plot.setFixedHeight(70)
        self.mel_plot.setMinimumHeight(90)
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

    def _layout(self) -> None:
        header = QHBoxLayout()
        header.addWidget(self.title)
        header.addWidget(self.name, 1)
        header.addWidget(self.pitch)
        header.addWidget(self.open_button)
        header.addWidget(self.clear_button)
        box = QVBoxLayout(self)
        box.addLayout(header)
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
    def show_sample(self, sample: Any) -> None:
        """Show a loaded sound (anything with ``name``, ``audio``, ``midi`` and ``confidence``)."""
        self.error.hide()
        self.name.setText(sample.name)
        self.name.setToolTip(sample.name)
        confidence = getattr(sample, "confidence", 1.0)
        sure = "" if confidence >= 0.5 else " (unsure)"
        self.pitch.setText(f"{note_name(sample.midi)}{sure}" if math.isfinite(sample.midi) else "no pitch")
        self.pitch.setToolTip(f"MIDI {sample.midi:.2f}, confidence {confidence:.2f}")
        samples = sample.audio.samples
        self.wave_curve.setData(*waveform_envelope(samples))
        x, _ = self.wave_curve.getData()
        self.wave_plot.setRange(xRange=(0, max(1.0, float(x[-1]))), yRange=(-1, 1), padding=0.02)
        mel = display_mel(sample.audio)   # [frames, mels]
        self.mel_image.setImage(mel, autoLevels=True)
        self.mel_plot.setRange(xRange=(0, mel.shape[0]), yRange=(0, mel.shape[1]), padding=0.0)
        self.clear_button.setEnabled(True)

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def show_empty(self) -> None:
        self.error.hide()
        self.name.setText("Drop a sound here")
        self.name.setToolTip("")
        self.pitch.setText("")
        self.wave_curve.setData([], [])
        self.mel_image.clear()
        self.clear_button.setEnabled(False)
