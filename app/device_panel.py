"""MIDI input and audio output pickers, the MIDI channel filter, their status and the output latency."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QWidget

AUTO, OFF = "(automatic)", "(off)"


class DevicePanel(QWidget):
    """Emits ``midiPortChosen(name | None | "")`` (None = automatic, "" = off), ``midiChannelChosen``
    (0-15 or -1 for all) and ``audioDeviceChosen(name)``."""

    midiPortChosen = Signal(object)
    midiChannelChosen = Signal(int)
    audioDeviceChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.midi_combo = QComboBox()
        self.channel_combo = QComboBox()
        self.channel_combo.addItem("All channels", -1)
        for ch in range(16):
            self.channel_combo.addItem(f"Channel {ch + 1}", ch)
        self.audio_combo = QComboBox()
        self.midi_status = QLabel()
        self.audio_status = QLabel()
        self.latency = QLabel()
        for label in (self.midi_status, self.audio_status, self.latency):
            label.setWordWrap(True)
            label.setStyleSheet("color: #909090;")
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(QLabel("MIDI in"), 0, 0)
        grid.addWidget(self.midi_combo, 0, 1)
        grid.addWidget(self.channel_combo, 0, 2)
        grid.addWidget(self.midi_status, 1, 1, 1, 2)
        grid.addWidget(QLabel("Audio out"), 2, 0)
        grid.addWidget(self.audio_combo, 2, 1, 1, 2)
        grid.addWidget(self.audio_status, 3, 1, 1, 2)
        grid.addWidget(self.latency, 4, 1, 1, 2)
        grid.setColumnStretch(1, 1)
        self.midi_combo.activated.connect(self._midi_chosen)
        self.channel_combo.activated.connect(lambda i: self.midiChannelChosen.emit(self.channel_combo.itemData(i)))
        self.audio_combo.activated.connect(lambda i: self.audioDeviceChosen.emit(self.audio_combo.itemText(i)))

    def _midi_chosen(self, index: int) -> None:
        text = self.midi_combo.itemText(index)
        self.midiPortChosen.emit(None if text == AUTO else "" if text == OFF else text)

    def set_midi_ports(self, names: list[str], current: str | None) -> None:
        """Offer ``names``; ``current`` None = automatic, "" = off, else a port (kept even if absent)."""
        items = [AUTO, OFF] + list(names)
        if current and current not in names:
            items.append(current)
        self._fill(self.midi_combo, items, AUTO if current is None else OFF if current == "" else current)

    def set_channel(self, channel: int | None) -> None:
        self.channel_combo.setCurrentIndex(self.channel_combo.findData(-1 if channel is None else channel))

    def set_audio_devices(self, names: list[str], current: str | None) -> None:
        self._fill(self.audio_combo, names or ["(no output device)"], current)
        self.audio_combo.setEnabled(bool(names))

    def set_midi_status(self, text: str) -> None:
        self.midi_status.setText(text)

    def set_audio_status(self, text: str, latency: str) -> None:
        self.audio_status.setText(text)
        self.latency.setText(latency)

    @staticmethod
    def _fill(combo: QComboBox, items: list[str], current: str | None) -> None:
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(items)
        if current in items:
            combo.setCurrentIndex(items.index(current))
        combo.blockSignals(False)
