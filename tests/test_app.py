"""The sampler window, headless: drop files, press keys, move the slider, export.

The engine is the real one on the small pitched stand-in networks of tests/test_engine_fakes.py;
audio and MIDI hardware are fakes behind the app's backend interfaces, and sound is checked by
pulling blocks from the voice mixer's callback, as the audio thread would.
"""
from __future__ import annotations

import os
import sys
import threading
import zipfile
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
from engine.key_cache import PLAIN, Variations
from models.data.soundfont import read_font
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
        self.callback = callback   # what a device's thread would call
        return self.streams[-1]


class CountingEngine(Engine):
    """The real engine, recording each render call: its sound, refinement and the keys it delivered.

    With ``hold`` set, a refinement of the sound named ``hold`` waits at its second step until
    ``gate`` is set (``at_gate`` tells it got there), so a test can act in the middle of it.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delivered: list[int] = []
        self.calls: list[dict] = []
        self.hold: str | None = None
        self.gate, self.at_gate = threading.Event(), threading.Event()

    def render(self, sample_a, *args, on_key=None, refine=None, **kwargs):
        self.delivered.append(0)
        call = {"sound": sample_a.name, "root": sample_a.root_note, "refine": refine, "keys": {},
                "near_root": kwargs.get("near_root", 0)}
        self.calls.append(call)
        index = len(self.delivered) - 1

        def counted(midi, key):
            self.delivered[index] += 1
            call["keys"][midi] = key
            on_key(midi, key)
        return super().render(sample_a, *args, on_key=counted, refine=refine, **kwargs)

    def refined(self, sample, cfg, cancel=None, progress=None):
        def held(step, steps):
            if progress is not None:
                progress(step, steps)
            if step == 2 and self.hold == sample.name:
                self.at_gate.set()
                self.gate.wait(30)
        return super().refined(sample, cfg, cancel, held)


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


def make_window(qtbot, tmp_path, engine, audio_backend=None, midi_backend=None, restore=True,
                variations: Variations = PLAIN) -> MainWindow:
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    settings.variations = variations      # one sample per key unless a test asks (layers render 8x more)
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert [p.name for p in read_font(pack / "c4.sf2").presets] == ["c4"]
    assert zipfile.ZipFile(pack / "c4.multisample").testzip() is None
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


def test_the_audio_thread_asks_for_priority_once_and_playing_shortens_the_gil_switch(monkeypatch):
    import app.audio_output as audio_output

    asked, pinned = [], []
    monkeypatch.setattr(audio_output, "raise_this_thread", lambda: asked.append(threading.get_ident()) or "fifo 20")
    monkeypatch.setattr(audio_output, "audio_cpu", lambda: 1)
    monkeypatch.setattr(audio_output, "pin_this_thread", lambda cpu: pinned.append(cpu) or True)
    before = sys.getswitchinterval()
    backend = FakeAudioBackend()
    audio = AudioOutput(backend, block_size=256)
    assert audio.open() and sys.getswitchinterval() == audio_output.PLAYING_SWITCH_INTERVAL_S
    audio.queue(0).note_on(60, 100)
    out = np.ones((256, 2), np.float32)
    device = threading.Thread(target=lambda: [backend.callback(out, 256, None, None) for _ in range(3)])
    device.start()
    device.join(10)
    assert asked == [device.ident] and pinned == [1]       # once, in the device's thread
    assert audio.audio_priority == "fifo 20" and audio.audio_cpu == 1 and not out.any()   # no keys: silence
    reapers = [t for t in threading.enumerate() if t.name == "audio-reaper"]
    assert len(reapers) == 1                                # frees the arrays key installs let go of
    audio.close()
    assert sys.getswitchinterval() == before and audio.audio_cpu is None and not reapers[0].is_alive()

    def broken() -> str:
        raise RuntimeError("no scheduler here")
    monkeypatch.setattr(audio_output, "raise_this_thread", broken)
    audio = AudioOutput(backend, block_size=256)
    audio.open()
    backend.callback(out, 256, None, None)                  # never raises, still plays
    assert audio.audio_priority == "normal" and audio.mixer.errors == 0
    audio.close()
    quiet = AudioOutput(backend, block_size=256, realtime=False, switch_interval_s=None)
    quiet.open()
    backend.callback(out, 256, None, None)
    assert sys.getswitchinterval() == before and quiet.audio_priority == "normal"
    quiet.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities and cores are Linux's")
def test_while_audio_plays_one_background_worker_renders_on_the_audio_core(qtbot, tmp_path, engine, sounds,
                                                                             monkeypatch):
    import app.instrument_controller as controller
    from engine.priority import BACKGROUND_NICE, thread_nice

    window = make_window(qtbot, tmp_path, engine)
    seen = []
    render = engine.render
    monkeypatch.setattr(engine, "render", lambda *a, **k: seen.append(
        (thread_nice(), os.sched_getaffinity(0), k.get("workers"))) or render(*a, **k))
    core = max(os.sched_getaffinity(0))
    window.audio.device_callback.cpu = core                 # as a real-time audio thread pinned there
    monkeypatch.setattr(controller, "cpu_cores", lambda: 2)
    drop(window.slots["A"], sounds["c4"])
    wait_rendered(qtbot, window)
    assert seen[0] == (max(BACKGROUND_NICE, thread_nice()), {core}, 1)
    assert window.instrument.job.workers == 1 and window.instrument.job.cpu == core
    engine.workers = 3
    monkeypatch.setattr(controller, "cpu_cores", lambda: 3)
    assert window.instrument.render_workers() == 2          # a core left to the audio thread
    window.audio.close()
    assert window.instrument.render_workers() is None       # nothing playing: the engine's own
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


def phases(engine: CountingEngine) -> list[tuple[str, bool]]:
    """(sound, refined) of each render call so far."""
    return [(call["sound"], call["refine"] is not None) for call in engine.calls]


def test_refinement_follows_the_quick_keys_and_replaces_them(qtbot, window, sounds, engine):
    seen = {}

    def on_refine(step, steps):
        if not seen:   # the quick keys are in; refinement has begun
            seen.update(keys=dict(window.instrument.keys), bar=window.progress.bar.format(),
                        playable=window.audio.mixer.bank.rendered, export=window.export_button.isEnabled(),
                        status=window.progress.message.text(), steps=steps)
    window.instrument.refineProgress.connect(on_refine)
    messages = []
    window.instrument.status.connect(messages.append)
    assert window.sound.refine_strength() == 1.0 and window.sound.refine_label.text() == "100 %"
    drop(window.slots["A"], sounds["c4"])
    wait_rendered(qtbot, window)
    assert phases(engine) == [("c4", False), ("c4", True)] and engine.delivered == [88, 88]
    assert len(seen["keys"]) == 88 and seen["playable"] == frozenset(range(21, 109))
    assert seen["bar"] == "refining %v / %m" and not seen["export"]
    assert seen["status"] == f"Refining c4\u2026 step 0/{seen['steps']}"
    assert f"Refining c4\u2026 step {seen['steps']}/{seen['steps']}" in messages
    assert "Rendering the refined keys of c4\u2026" in messages
    keys = window.instrument.keys
    assert all(keys[k] is engine.calls[1]["keys"][k] and keys[k] is not seen["keys"][k] for k in keys)
    assert window.progress.bar.format() == "%v / %m keys" and window.progress.bar.value() == 88
    assert window.progress.message.text().endswith("(refined)") and window.export_button.isEnabled()


@pytest.mark.slow
def test_a_newer_request_cancels_a_running_refinement(qtbot, window, sounds, engine):
    engine.hold = "c4"
    drop(window.slots["A"], sounds["c4"])
    qtbot.waitUntil(engine.at_gate.is_set, timeout=60_000)   # c4's quick keys are in, refinement runs
    c4 = window.instrument.samples["A"]
    drop(window.slots["A"], sounds["pluck"])
    engine.hold = None
    engine.gate.set()
    wait_rendered(qtbot, window)
    assert phases(engine) == [("c4", False), ("pluck", False), ("pluck", True)]
    assert not engine.refinement_cached(c4, window.instrument.refine_config())   # stopped, not finished
    last = engine.calls[-1]["keys"]
    assert len(last) == 88 and all(key is last[midi] for midi, key in window.instrument.keys.items())


@pytest.mark.slow
def test_refine_strength_zero_skips_it_and_raising_it_refines_in_place(qtbot, window, sounds, engine):
    with qtbot.waitSignal(window.sound.refineChanged, timeout=2000):
        window.sound.refine_slider.setValue(0)
    assert window.sound.refine_label.text() == "off" and window.settings.refine_strength == 0.0
    refining = []
    window.instrument.refineProgress.connect(lambda *args: refining.append(args))
    drop(window.slots["A"], sounds["c4"])
    wait_rendered(qtbot, window)
    assert phases(engine) == [("c4", False)] and refining == []
    assert "(refined)" not in window.progress.message.text()
    quick = dict(window.instrument.keys)
    with qtbot.waitSignal(window.sound.refineChanged, timeout=2000):
        window.sound.refine_slider.setValue(150)
    assert not window.instrument.job.fresh and window.instrument.keys == quick   # the keys keep playing
    wait_rendered(qtbot, window)
    # Every key was this sound's already: no second unrefined pass, refinement straight away.
    assert phases(engine) == [("c4", False), ("c4", True)] and refining
    from engine.refine import DEFAULT_REFINEMENT
    assert engine.calls[-1]["refine"] == DEFAULT_REFINEMENT.at_strength(1.5)
    assert window.settings.refine_strength == pytest.approx(1.5)
    assert all(window.instrument.keys[k] is not quick[k] for k in quick)


@pytest.mark.slow
def test_near_root_rerenders_a_single_sound_and_is_remembered(qtbot, tmp_path, engine, sounds):
    window = make_window(qtbot, tmp_path, engine)
    window.sound.set_refine(0.0, notify=False)                 # quick: no refinement pass
    window.instrument.refine_strength = 0.0
    drop(window.slots["A"], sounds["c4"])
    wait_rendered(qtbot, window)
    assert engine.calls[-1]["near_root"] == 0
    before = dict(window.instrument.keys)
    engine.calls.clear()
    with qtbot.waitSignal(window.sound.nearRootChanged, timeout=2000):
        window.sound.near_root_box.setValue(2)
    assert window.instrument.job.near_root == 2 and not window.instrument.job.fresh
    wait_rendered(qtbot, window)
    assert [c["near_root"] for c in engine.calls] == [2] and window.settings.near_root == 2
    assert all(window.instrument.keys[k] is not before[k] for k in before)
    drop(window.slots["B"], sounds["pluck"])                   # a mix: the engine ignores near root
    wait_rendered(qtbot, window)
    job = window.instrument.job
    window.sound.near_root_box.setValue(4)
    assert window.instrument.job is job and window.instrument.near_root == 4 and window.settings.near_root == 4
    window.shutdown()
    again = make_window(qtbot, tmp_path, engine, restore=False)
    assert again.sound.near_root_box.text() == "\u00b14 st" and again.instrument.near_root == 4
    again.shutdown()


@pytest.mark.slow
def test_a_mix_move_after_refinement_renders_the_refined_mix_at_once(qtbot, window, sounds, engine):
    drop(window.slots["A"], sounds["c4"])
    drop(window.slots["B"], sounds["pluck"])
    wait_rendered(qtbot, window)
    engine.calls.clear()
    with qtbot.waitSignal(window.mix.alphaChanged, timeout=2000):
        window.mix.slider.setValue(30)
    wait_rendered(qtbot, window)
    assert phases(engine) == [("c4", True)]      # both sounds' refinements were at hand


@pytest.mark.slow
def test_root_override_rerenders_at_the_new_root_and_is_remembered(qtbot, tmp_path, engine, sounds):
    window = make_window(qtbot, tmp_path, engine)
    drop(window.slots["A"], sounds["c4"])
    slot = window.slots["A"]
    assert slot.pitch.text().startswith("C4 \u00b7 ") and slot.pitch.text().endswith("%")
    assert slot.root_box.isEnabled() and slot.root_box.text() == "C4" and not slot.auto_button.isEnabled()
    wait_rendered(qtbot, window)
    before = dict(window.instrument.keys)
    engine.calls.clear()
    slot.root_box.setValue(62)
    assert slot.root_box.text() == "D4" and slot.pitch.text().startswith("C4")   # detection still shown
    job = window.instrument.job
    assert job.sample_a.root_note == 62 and not job.fresh
    assert job.sample_a.content_hash == window.instrument.detected["A"].content_hash   # the same audio
    assert window.instrument.keys == before                                      # old keys play meanwhile
    wait_rendered(qtbot, window)
    assert {(c["sound"], c["root"]) for c in engine.calls} == {("c4", 62)}
    assert window.keyboard.root_note == 62 and slot.auto_button.isEnabled()
    assert all(window.instrument.keys[k] is not before[k] for k in before)
    assert window.settings.sample_root("A") == 62
    window.shutdown()
    again = make_window(qtbot, tmp_path, engine)
    assert again.instrument.samples["A"].root_note == 62 and again.slots["A"].root_box.text() == "D4"
    qtbot.mouseClick(again.slots["A"].auto_button, Qt.LeftButton)
    assert again.instrument.samples["A"].root_note == 60 and again.settings.sample_root("A") is None
    assert again.instrument.job.sample_a.root_note == 60 and not again.slots["A"].auto_button.isEnabled()
    again.shutdown()


def test_slot_root_row_reads_note_names_and_flags_an_unsure_pitch(qtbot):
    from app.instrument_controller import SoundPreview
    from app.sample_slot import NoteSpinBox, SampleSlot, parse_note
    from models.signal.audio import Audio

    assert [parse_note(t) for t in ("C4", "c#4", "Db4", "A0", "C8", "61", "H2", "C")] == [60, 61, 61, 21, 108, 61,
                                                                                       None, None]
    box = NoteSpinBox()
    qtbot.addWidget(box)
    box.lineEdit().setText("F#3")
    box.interpretText()
    assert box.value() == 54 and box.text() == "F#3"
    slot = SampleSlot("A")
    qtbot.addWidget(slot)
    assert slot.root_row.isHidden()
    unsure = SoundPreview("noise", Audio(harmonic_tone(45, duration_s=0.5), 16000), 45.2, 0.31)
    slot.show_sample(unsure)
    assert not slot.root_row.isHidden() and slot.root_box.text() == "A2"
    assert slot.pitch.text() == "A2 +20 ct \u00b7 31 % (unsure)" and "unsure" in slot.pitch.toolTip()
    slot.show_empty()
    assert slot.root_row.isHidden()
