"""The sampler window, headless: drop files, press keys, move the slider, export.

The engine is the real one on the small pitched stand-in networks of tests/test_engine_fakes.py;
audio and MIDI hardware are fakes behind the app's backend interfaces, and sound is checked by
pulling blocks from the voice mixer's callback, as the audio thread would.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.audio_output import AudioOutput, AudioUnavailable, OutputDevice, SoundDeviceBackend
from app.main import load_engine, qt_refcount_problem
from app.main_window import MainWindow
from app.settings import AppSettings
from engine.instrument import Engine, EngineConfig
from engine.envelope import Envelope
from models.signal.tones import harmonic_tone, plucked_string
from tests.test_engine_fakes import FAKE_CLASSES, write_fake_weights
from tests.test_midi import FakeMidiBackend

RATE = 16000   # the fake device's rate: keys are rendered at it, which keeps rendering quick


class FakeStream:
    latency = 0.005

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeAudioBackend:
    """One output at ``RATE``; nothing pulls the mixer: tests call its callback."""

    def __init__(self, devices: list[OutputDevice] | None = None, broken: str | None = None) -> None:
        self.devices = [OutputDevice("Fake Out", RATE, 2, 0)] if devices is None else devices
        self.broken = broken
        self.streams: list[FakeStream] = []

    def outputs(self) -> list[OutputDevice]:
        if self.broken:
            raise AudioUnavailable(self.broken)
        return list(self.devices)

    def open(self, device, cfg, callback) -> FakeStream:
        self.streams.append(FakeStream())
        return self.streams[-1]


class CountingEngine(Engine):
    """The real engine, counting the keys each render call delivered."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delivered: list[int] = []

    def render(self, *args, on_key=None, **kwargs):
        self.delivered.append(0)
        index = len(self.delivered) - 1

        def counted(midi, key):
            self.delivered[index] += 1
            on_key(midi, key)
        return super().render(*args, on_key=counted, **kwargs)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_fake_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def engine(weights) -> CountingEngine:
    return CountingEngine(weights, device="cpu", vocoder="griffinlim", num_threads=1, classes=FAKE_CLASSES,
                          cfg=EngineConfig(max_batch=16, griffin_lim_iters=4))


@pytest.fixture
def sounds(tmp_path) -> dict[str, Path]:
    paths = {"c4": tmp_path / "c4.wav", "pluck": tmp_path / "pluck.flac", "text": tmp_path / "notes.txt",
             "broken": tmp_path / "broken.wav"}
    sf.write(paths["c4"], harmonic_tone(60, sample_rate=RATE, duration_s=1.2, decay_s=0.8), RATE)
    sf.write(paths["pluck"], plucked_string(52, sample_rate=RATE, duration_s=1.2), RATE)
    paths["text"].write_text("not a sound\n")
    data = paths["c4"].read_bytes()
    paths["broken"].write_bytes(data[:60] + b"\x00garbage" * 20)
    return paths


def make_window(qtbot, tmp_path, engine, audio_backend=None, midi_backend=None, restore=True) -> MainWindow:
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    error = "" if engine is not None else "weights not found: /nowhere/features.safetensors"
    window = MainWindow(engine, error, AudioOutput(audio_backend or FakeAudioBackend()),
                        midi_backend or FakeMidiBackend(["Keys"]), settings, midi_poll_ms=60_000)
    qtbot.addWidget(window)
    window.show()
    window.start(restore_samples=restore)
    return window


@pytest.fixture
def window(qtbot, tmp_path, engine) -> MainWindow:
    w = make_window(qtbot, tmp_path, engine)
    yield w
    w.shutdown()


def drop(widget, path: Path) -> bool:
    """Drag ``path`` onto ``widget`` and drop it; returns whether the drag was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    center = widget.rect().center()
    enter = QDragEnterEvent(center, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    QApplication.sendEvent(widget, QDropEvent(QPointF(center), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    return True


def pull(window: MainWindow, n_blocks: int) -> np.ndarray:
    mixer = window.audio.mixer
    out = np.zeros((mixer.cfg.block_size, mixer.cfg.channels), np.float32)
    blocks = []
    for _ in range(n_blocks):
        mixer.callback(out, mixer.cfg.block_size, None, None)
        blocks.append(out[:, 0].copy())
    return np.concatenate(blocks)


def wait_rendered(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.instrument.complete, timeout=60_000)


def test_drop_renders_88_keys_and_the_keyboard_plays_them(qtbot, window, sounds):
    assert drop(window.slots["A"], sounds["c4"])
    slot = window.slots["A"]
    assert slot.name.text() == "c4" and slot.pitch.text().startswith("C4")
    wait_rendered(qtbot, window)
    assert window.keyboard.fresh == set(range(21, 109))
    assert window.audio.mixer.bank.rendered == frozenset(range(21, 109))
    assert window.progress.bar.value() == 88 and "88 keys rendered" in window.progress.message.text()
    assert window.export_button.isEnabled()
    window.keyboard.setFocus()
    qtbot.keyPress(window.keyboard, Qt.Key_Q)            # C4
    assert window.keyboard.held == {60}
    sound = pull(window, 6)
    assert np.abs(sound).max() > 0.05
    assert window.audio.mixer.active_notes() == [60]
    qtbot.keyRelease(window.keyboard, Qt.Key_Q)
    assert window.keyboard.held == set()
    pull(window, 40)
    assert window.audio.mixer.active_notes() == []
    a4 = window.keyboard.key_rect(69).center().toPoint()
    qtbot.mousePress(window.keyboard, Qt.LeftButton, pos=QPoint(a4.x(), window.keyboard.height() - 5))
    pull(window, 2)
    assert window.audio.mixer.active_notes() == [69]
    qtbot.mouseRelease(window.keyboard, Qt.LeftButton, pos=a4)
    window.meter.poll()
    assert window.meter.level_db > -30   # the meter saw the notes


@pytest.mark.parametrize("bad", ["text", "broken"])
def test_a_bad_file_shows_a_clear_message_and_keeps_the_sound(qtbot, window, sounds, bad):
    assert drop(window.slots["A"], sounds["c4"])
    assert drop(window.slots["A"], sounds[bad])
    slot = window.slots["A"]
    assert slot.error.isVisible()
    assert sounds[bad].name in slot.error.text()
    assert slot.name.text() == "c4" and window.instrument.samples["A"].name == "c4"
    assert drop(window.slots["A"], sounds["pluck"])
    assert not slot.error.isVisible() and slot.name.text() == "pluck"


def test_drag_of_non_files_is_refused(window):
    mime = QMimeData()
    mime.setText("hello")
    enter = QDragEnterEvent(QPoint(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window.slots["B"], enter)
    assert not enter.isAccepted()


def test_mix_slider_rerenders_in_the_background_keeping_old_keys(qtbot, window, sounds, engine):
    drop(window.slots["A"], sounds["c4"])
    drop(window.slots["B"], sounds["pluck"])
    assert window.mix.isEnabled()
    wait_rendered(qtbot, window)
    before = dict(window.instrument.keys)
    with qtbot.waitSignal(window.mix.alphaChanged, timeout=2000):
        window.mix.slider.setValue(60)
    job = window.instrument.job
    assert job.alpha == pytest.approx(0.6) and not job.fresh
    # Until the new keys land, every old key stays playable.
    assert set(window.instrument.keys) == set(before)
    assert window.audio.mixer.bank.rendered == frozenset(before)
    wait_rendered(qtbot, window)
    after = window.instrument.keys
    assert set(after) == set(before) and all(after[k] is not before[k] for k in after)
    assert window.settings.alpha == pytest.approx(0.6)


def test_a_newer_request_cancels_the_running_render(qtbot, window, sounds, engine):
    drop(window.slots["A"], sounds["c4"])
    drop(window.slots["A"], sounds["pluck"])      # supersedes the first render at once
    wait_rendered(qtbot, window)
    first, last = engine.delivered[0], engine.delivered[-1]
    assert first < 88 and last == 88
    assert window.instrument.samples["A"].name == "pluck"


def test_export_writes_a_pack_and_asks_before_replacing(qtbot, window, sounds, tmp_path):
    drop(window.slots["A"], sounds["c4"])
    wait_rendered(qtbot, window)
    packs = tmp_path / "packs"
    window.exporter.choose_folder = lambda parent, start: packs
    asked = []
    window.exporter.confirm_replace = lambda parent, target: asked.append(target) or True
    with qtbot.waitSignal(window.exporter.exported, timeout=30_000) as done:
        qtbot.mouseClick(window.export_button, Qt.LeftButton)
    pack = Path(done.args[0])
    assert pack == packs / "c4"
    assert (pack / "c4.sfz").is_file() and (pack / "c4.dspreset").is_file()
    release = window.sound.envelope().release_s
    assert f"ampeg_release={release:g}" in (pack / "c4.sfz").read_text()   # the window's release
    wavs = sorted((pack / "samples").glob("*.wav"))
    assert len(wavs) == 88 and sf.info(wavs[0]).subtype == "PCM_24"
    with qtbot.waitSignal(window.exporter.exported, timeout=30_000):
        qtbot.mouseClick(window.export_button, Qt.LeftButton)
    assert asked == [packs / "c4"]
    assert window.settings.export_folder == packs


def test_settings_are_remembered_between_runs(qtbot, tmp_path, engine, sounds):
    first = make_window(qtbot, tmp_path, engine)
    drop(first.slots["A"], sounds["c4"])
    first.sound.set_volume(0.25)
    first.sound.set_envelope(Envelope(attack_s=0.01, decay_s=2.0, sustain=0.5, release_s=1.0))
    first.devices.channel_combo.setCurrentIndex(3)
    first.devices.channel_combo.activated.emit(3)      # the user picks channel 3
    first.shutdown()
    second = make_window(qtbot, tmp_path, engine)
    assert second.instrument.samples["A"].name == "c4"
    assert second.sound.volume() == pytest.approx(0.25, abs=0.01)
    assert second.sound.envelope().release_s == pytest.approx(1.0, rel=0.05)
    assert second.midi.router.channel == 2
    assert second.settings.audio_device is None or second.settings.audio_device == "Fake Out"
    second.shutdown()


def test_without_devices_the_app_starts_says_so_and_renders(qtbot, tmp_path, engine, sounds):
    midi = FakeMidiBackend()
    midi.broken = "MidiInAlsa::initialize: error creating ALSA sequencer client object."
    window = make_window(qtbot, tmp_path, engine, FakeAudioBackend(devices=[]), midi)
    assert "No audio output device found" in window.devices.audio_status.text()
    assert window.devices.latency.text() == "latency: no output"
    assert "No MIDI input" in window.devices.midi_status.text()
    drop(window.slots["A"], sounds["c4"])
    wait_rendered(qtbot, window)
    assert window.export_button.isEnabled()
    window.shutdown()


def test_latency_is_device_latency_plus_one_block(qtbot, window):
    text = window.devices.latency.text()
    block_ms = 1000 * 512 / RATE
    assert f"{5 + block_ms:.1f} ms" in text and "block 512 @ 16 kHz" in text


def test_without_weights_the_app_says_no_model_and_still_shows_sounds(qtbot, tmp_path, sounds):
    (tmp_path / "assets").mkdir()
    engine, error = load_engine(tmp_path / "assets", "cpu", "griffinlim")
    assert engine is None and "weights not found" in error and "features.safetensors" in error
    window = make_window(qtbot, tmp_path, None)
    assert window.banner.isVisible() and "No model installed" in window.banner.text()
    assert "weights not found" in window.banner.text()
    drop(window.slots["A"], sounds["c4"])
    assert window.slots["A"].pitch.text().startswith("C4")       # shown, not rendered
    assert "No model installed" in window.progress.message.text()
    assert not window.export_button.isEnabled() and window.instrument.keys == {}
    window.shutdown()


def test_sound_device_backend_lists_only_outputs_at_most_stereo(monkeypatch):
    devices = [{"name": "Mic", "default_samplerate": 44100.0, "max_output_channels": 0},
               {"name": "Interface", "default_samplerate": 48000.0, "max_output_channels": 8},
               {"name": "Phones", "default_samplerate": 44100.0, "max_output_channels": 1}]
    monkeypatch.setitem(sys.modules, "sounddevice", SimpleNamespace(query_devices=lambda: devices))
    assert SoundDeviceBackend().outputs() == [OutputDevice("Interface", 48000, 2, 1), OutputDevice("Phones", 44100, 1, 2)]


def test_sound_device_backend_says_why_there_is_no_audio(monkeypatch):
    def missing_portaudio():
        raise OSError("PortAudio library not found")

    monkeypatch.setitem(sys.modules, "sounddevice", SimpleNamespace(query_devices=missing_portaudio))
    with pytest.raises(AudioUnavailable, match="^PortAudio library not found$"):
        SoundDeviceBackend().outputs()


def test_this_pyside6_keeps_its_references():
    assert qt_refcount_problem() is None


def test_midi_from_its_own_thread_plays_and_highlights_on_the_gui_thread(qtbot, tmp_path, engine, sounds,
                                                                          monkeypatch):
    from app.keyboard import KeyboardWidget

    threads = []
    original = KeyboardWidget.show_note
    monkeypatch.setattr(KeyboardWidget, "show_note",
                        lambda self, midi, down: threads.append(threading.current_thread()) or original(self, midi, down))
    midi = FakeMidiBackend(["Keys"])
    window = make_window(qtbot, tmp_path, engine, midi_backend=midi)
    drop(window.slots["A"], sounds["c4"])
    wait_rendered(qtbot, window)
    import mido

    sender = threading.Thread(target=midi.send, args=(mido.Message("note_on", note=64, velocity=90),))
    sender.start()
    sender.join()
    qtbot.waitUntil(lambda: window.keyboard.held == {64}, timeout=2000)
    assert threads == [threading.main_thread()]
    pull(window, 2)
    assert window.audio.mixer.active_notes() == [64]
    window.shutdown()
