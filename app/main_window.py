"""The sampler window. It builds the widgets and wires their signals; the logic lives elsewhere."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QGridLayout, QGroupBox, QHBoxLayout, QLabel, QMainWindow, QPushButton, QVBoxLayout,
                               QWidget)

from app.audio_output import GUI, AudioOutput
from app.device_panel import DevicePanel
from app.export_controller import ExportController
from app.instrument_controller import SLOTS, InstrumentController
from app.instrument_files import InstrumentFiles
from app.keyboard import KeyboardWidget
from app.level_meter import LevelMeter
from app.midi_input import MidiBackend, MidiInput
from app.mix_slider import MixSlider
from app.morph_pad import MorphPad
from app.render_progress import RenderProgress
from app.sample_slot import SampleSlot
from app.settings import AppSettings
from app.sound_panel import SoundPanel
from app.variations_panel import VariationsPanel


class MainWindow(QMainWindow):
    """Four slots around the mix slider or morph pad, the keyboard, progress and export, devices, envelope
    and level; the File menu saves and opens instruments."""

    def __init__(self, engine: Any | None, engine_error: str, audio: AudioOutput, midi_backend: MidiBackend,
                 settings: AppSettings, midi_poll_ms: int = 1000) -> None:
        super().__init__()
        self.setWindowTitle("HyperGANStrument Sampler")
        self.settings = settings
        self.audio = audio
        self.instrument = InstrumentController(engine, audio, engine_error, self)
        self.midi = MidiInput(midi_backend, lambda: self.audio.queue(1), midi_poll_ms, self)
        self.exporter = ExportController(settings, parent=self)
        self.banner = QLabel(f"<b>No model installed.</b> {engine_error} Sounds can be loaded and shown; "
                             "rendering needs the trained weights (see the README)." if engine is None else "")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #5a3a10; color: #ffe0b0; padding: 6px;")
        self.banner.setVisible(engine is None)
        self.slots = {slot: SampleSlot(slot) for slot in SLOTS}
        self.mix = MixSlider()
        self.mix.setEnabled(False)
        self.pad = MorphPad()
        self.mix_hint = QLabel()
        self.mix_hint.setWordWrap(True)
        self.mix_hint.setAlignment(Qt.AlignCenter)
        self.mix_hint.setStyleSheet("color: #80868f;")
        self.keyboard = KeyboardWidget()
        self.progress = RenderProgress()
        self.export_button = QPushButton("Export\u2026")
        self.export_button.setEnabled(False)
        self.export_button.setToolTip("Write the 88 keys as an SFZ + Decent Sampler pack (24-bit WAVs)")
        self.devices = DevicePanel()
        self.sound = SoundPanel()
        self.variations = VariationsPanel()
        self.meter = LevelMeter(self.audio.read_peak)
        self.files = InstrumentFiles(self.instrument, self.sound, self.variations, settings, parent=self)
        self._layout()
        self._menu()
        self._wire()
        self._show_mix()

    def _layout(self) -> None:
        # The slots sit at the pad's corners: A and B on top (the slider's ends), C and D below.
        slots = QGridLayout()
        for slot, (row, col) in zip(SLOTS, ((0, 0), (0, 2), (1, 0), (1, 2))):
            slots.addWidget(self.slots[slot], row, col)
        middle = QWidget()
        middle.setFixedWidth(260)
        column = QVBoxLayout(middle)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.mix)
        column.addWidget(self.mix_hint)
        column.addWidget(self.pad, 1)
        slots.addWidget(middle, 0, 1, 2, 1)
        slots.setColumnStretch(0, 1)
        slots.setColumnStretch(2, 1)
        render_row = QHBoxLayout()
        render_row.addWidget(self.progress, 1)
        render_row.addWidget(self.export_button)
        devices_box, sound_box = QGroupBox("Devices"), QGroupBox("Sound")
        QVBoxLayout(devices_box).addWidget(self.devices)
        sound_layout = QVBoxLayout(sound_box)
        sound_layout.addWidget(self.sound)
        sound_layout.addWidget(self.variations)
        sound_layout.addWidget(self.meter)
        bottom = QHBoxLayout()
        bottom.addWidget(devices_box, 1)
        bottom.addWidget(sound_box, 1)
        central = QWidget()
        box = QVBoxLayout(central)
        box.addWidget(self.banner)
        box.addLayout(slots)
        box.addWidget(self.keyboard)
        box.addLayout(render_row)
        box.addLayout(bottom)
        self.setCentralWidget(central)

    def _menu(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.addAction("&Open instrument\u2026", QKeySequence.Open, lambda: self.files.open(self))
        self.files.fill_recent_menu(menu.addMenu("Open &recent"))
        menu.addAction("&Save instrument\u2026", QKeySequence.Save, lambda: self.files.save(self))
        menu.addSeparator()
        menu.addAction("&Quit", QKeySequence.Quit, self.close)

    def _wire(self) -> None:
        inst, kb = self.instrument, self.keyboard
        for slot, widget in self.slots.items():
            widget.fileChosen.connect(lambda path, s=slot: inst.load(s, path))
            widget.cleared.connect(lambda s=slot: inst.clear(s))
            widget.rootChosen.connect(lambda root, s=slot: inst.set_root(s, root))
        inst.sampleChanged.connect(self._sample_changed)
        inst.rootChanged.connect(self._root_changed)
        inst.sampleFailed.connect(lambda slot, msg: self.slots[slot].show_error(msg))
        inst.keysChanged.connect(kb.set_keys)
        inst.keysChanged.connect(lambda *_: self.export_button.setEnabled(inst.complete))
        inst.progress.connect(self.progress.set_progress)
        inst.refineProgress.connect(self.progress.set_refining)
        inst.status.connect(self.progress.set_message)
        self.mix.alphaChanged.connect(inst.set_alpha)
        self.mix.alphaChanged.connect(lambda a: setattr(self.settings, "alpha", a))
        self.pad.positionChanged.connect(inst.set_pad)
        self.pad.positionChanged.connect(lambda x, y: setattr(self.settings, "pad", (x, y)))
        inst.mixMoved.connect(self._mix_moved)
        for signal in (self.files.saved, self.files.opened):
            signal.connect(lambda path, s=signal: self.progress.set_message(
                f"{'Saved' if s is self.files.saved else 'Opened'} {path}"))
        self.files.failed.connect(self.progress.set_message)
        kb.noteOn.connect(lambda note, vel: self.audio.queue(GUI).note_on(note, vel))
        kb.noteOff.connect(lambda note: self.audio.queue(GUI).note_off(note))
        self.midi.noteOn.connect(kb.show_note_on)
        self.midi.noteOff.connect(kb.show_note_off)
        self.midi.portsChanged.connect(lambda names: self.devices.set_midi_ports(names, self.midi.wanted))
        self.midi.statusChanged.connect(self.devices.set_midi_status)
        self.devices.midiPortChosen.connect(self._midi_port_chosen)
        self.devices.midiChannelChosen.connect(self._midi_channel_chosen)
        self.devices.audioDeviceChosen.connect(self._open_audio)
        self.sound.envelopeChanged.connect(self.audio.set_envelope)
        self.sound.envelopeChanged.connect(lambda env: setattr(self.settings, "envelope", env))
        self.sound.volumeChanged.connect(self.audio.set_volume)
        self.sound.volumeChanged.connect(lambda gain: setattr(self.settings, "volume", gain))
        self.sound.refineChanged.connect(inst.set_refine_strength)
        self.sound.refineChanged.connect(lambda strength: setattr(self.settings, "refine_strength", strength))
        self.sound.nearRootChanged.connect(inst.set_near_root)
        self.sound.nearRootChanged.connect(lambda semitones: setattr(self.settings, "near_root", semitones))
        self.variations.variationsChanged.connect(inst.set_variations)
        self.variations.variationsChanged.connect(lambda v: setattr(self.settings, "variations", v))
        self.variations.randomChanged.connect(self.audio.set_random_round_robin)
        self.variations.randomChanged.connect(lambda r: setattr(self.settings, "random_round_robin", r))
        self.export_button.clicked.connect(
            lambda: self.exporter.export(inst.keys, inst.pack_name(), self, self.sound.envelope().release_s,
                                         inst.variants, inst.variations))
        self.exporter.exported.connect(lambda path: self.progress.set_message(f"Exported {path}"))
        self.exporter.failed.connect(self.progress.set_message)

    def start(self, restore_samples: bool = True) -> None:
        """Restore settings, open devices, reload the last samples."""
        s = self.settings
        self.sound.set_envelope(s.envelope, notify=False)
        self.sound.set_volume(s.volume, notify=False)
        self.sound.set_refine(s.refine_strength, notify=False)
        self.instrument.refine_strength = s.refine_strength
        self.sound.set_near_root(s.near_root, notify=False)
        self.instrument.near_root = s.near_root
        self.variations.set_variations(s.variations, notify=False)
        self.variations.set_random(s.random_round_robin, notify=False)
        self.instrument.variations = s.variations
        self.audio.set_random_round_robin(s.random_round_robin)
        self.audio.set_envelope(s.envelope)
        self.audio.set_volume(s.volume)
        self.mix.set_alpha(s.alpha, notify=False)
        self.instrument.alpha = s.alpha
        self.pad.set_position(*s.pad, notify=False)
        self.instrument.pad = s.pad
        self.devices.set_channel(s.midi_channel)
        self.midi.set_channel(s.midi_channel)
        self.midi.wanted = s.midi_port
        self._open_audio(s.audio_device or "", remember=False)
        self.midi.start()
        self.progress.set_message("Drop a sound on A to play it" if self.instrument.engine is not None
                                  else "No model installed: rendering is off")
        if restore_samples:
            for slot in self.slots:
                path = s.sample_path(slot)
                if path is not None and path.is_file():
                    self.instrument.load(slot, path, root=s.sample_root(slot), keep_mix=True)
        self.keyboard.setFocus(Qt.OtherFocusReason)

    def _sample_changed(self, slot: str, sample: Any | None) -> None:
        inst = self.instrument
        if sample is None:
            self.slots[slot].show_empty()
        else:
            self.slots[slot].show_sample(sample, inst.detected.get(slot), editable=inst.engine is not None)
        self.settings.set_sample_path(slot, inst.paths.get(slot))
        self.settings.set_sample_root(slot, inst.roots.get(slot))
        self._show_keyboard_root()
        self._show_mix()

    def _show_mix(self) -> None:
        """Two sounds: the slider between them; three or four: the pad with a sound at each corner."""
        inst = self.instrument
        filled = inst.filled
        self.mix.setEnabled(len(filled) == 2 and inst.engine is not None)
        if len(filled) == 2:
            self.mix.set_ends(*filled)
        self.mix.setVisible(len(filled) <= 2)
        self.pad.setVisible(len(filled) >= 3)
        self.pad.set_names({slot: inst.samples[slot].name for slot in filled})
        self.pad.setEnabled(inst.engine is not None)
        self.mix_hint.setText("Drop a third sound on C or D to morph between corners" if len(filled) == 2 else
                              "Drop sounds on A and B to blend them" if len(filled) < 2 else "")
        self.mix_hint.setVisible(len(filled) <= 2)

    def _mix_moved(self) -> None:
        """A sound came or went and the blend moved between slider and pad: show and remember it."""
        inst = self.instrument
        self.mix.set_alpha(inst.alpha, notify=False)
        self.pad.set_position(*inst.pad, notify=False)
        self.settings.alpha, self.settings.pad = inst.alpha, inst.pad

    def _root_changed(self, slot: str, sample: Any) -> None:
        self.slots[slot].show_root(sample, self.instrument.detected.get(slot))
        self.settings.set_sample_root(slot, self.instrument.roots.get(slot))
        self._show_keyboard_root()

    def _show_keyboard_root(self) -> None:
        filled = self.instrument.filled
        first = self.instrument.samples[filled[0]] if filled else None
        self.keyboard.set_root(getattr(first, "root_note", None) if first is not None else None)

    def _open_audio(self, name: str, remember: bool = True) -> None:
        self.audio.open(name or None)
        if remember and self.audio.device is not None:
            self.settings.audio_device = self.audio.device.name
        names = [d.name for d in self.audio.available]
        self.devices.set_audio_devices(names, self.audio.device.name if self.audio.device else None)
        self.devices.set_audio_status(self.audio.status, self.audio.latency_text())

    def _midi_port_chosen(self, name: str | None) -> None:
        self.settings.midi_port = name
        self.midi.select(name)

    def _midi_channel_chosen(self, channel: int) -> None:
        self.settings.midi_channel = None if channel < 0 else channel
        self.midi.set_channel(self.settings.midi_channel)

    def shutdown(self) -> None:
        self.midi.close()
        self.instrument.shutdown()
        self.audio.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
