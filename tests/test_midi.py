"""MIDI in: routing mido messages to the mixer, the channel filter, garbage, and ports that come and go."""
from __future__ import annotations

import ctypes.util
import logging
import os
from types import SimpleNamespace
from typing import Any, Callable

import mido
import numpy as np
import pytest

from app.midi_input import MidiInput, MidiRouter, MidiUnavailable, MidoBackend, default_port, alsa_errors_to_log
from engine.voice_events import BEND
from engine.envelope import Envelope
from engine.voices import MixerConfig, VoiceMixer
from tests.test_voices import BLOCK, SR, pull, sine_key


class FakePort:
    def __init__(self, name: str, callback: Callable[[Any], None]) -> None:
        self.name, self.callback, self.closed = name, callback, False

    def close(self) -> None:
        self.closed = True


class FakeMidiBackend:
    """Ports appear and vanish when a test edits ``names``; ``broken`` mimics a machine without ALSA."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names = list(names or [])
        self.broken: str | None = None
        self.opened: list[FakePort] = []

    def input_names(self) -> list[str]:
        if self.broken:
            raise MidiUnavailable(self.broken)
        return list(self.names)

    def open_input(self, name: str, callback: Callable[[Any], None]) -> FakePort:
        if self.broken or name not in self.names:
            raise MidiUnavailable(f"cannot open {name}")
        port = FakePort(name, callback)
        self.opened.append(port)
        return port

    def send(self, msg: Any) -> None:
        """Deliver ``msg`` through the last opened port that is still open."""
        port = next(p for p in reversed(self.opened) if not p.closed)
        port.callback(msg)


@pytest.fixture
def mixer() -> VoiceMixer:
    m = VoiceMixer(MixerConfig(sample_rate=SR, block_size=BLOCK),
                   Envelope(attack_s=0.001, decay_s=0.05, sustain=1.0, release_s=0.05))
    m.set_keys({60: sine_key(60)})
    return m


def test_notes_sustain_and_all_notes_off_reach_the_mixer(mixer):
    router = MidiRouter(lambda: mixer.queue(1))
    assert router.handle(mido.Message("note_on", note=60, velocity=100))
    assert router.handle(mido.Message("note_on", note=64, velocity=100))
    pull(mixer, 2)
    assert sorted(mixer.active_notes()) == [60, 64]
    router.handle(mido.Message("control_change", control=64, value=127))
    router.handle(mido.Message("note_on", note=60, velocity=0))      # running-status style note off
    router.handle(mido.Message("note_off", note=64, velocity=40))
    pull(mixer, 20)
    assert sorted(mixer.active_notes()) == [60, 64]                  # held by the pedal
    router.handle(mido.Message("control_change", control=64, value=0))
    pull(mixer, 20)
    assert mixer.active_notes() == []
    router.handle(mido.Message("note_on", note=67, velocity=100))
    pull(mixer, 2)
    router.handle(mido.Message("control_change", control=123, value=0))
    pull(mixer, 20)
    assert mixer.active_notes() == []


def test_all_sound_off_and_pitch_bend(mixer):
    router = MidiRouter(lambda: mixer.queue(1))
    router.handle(mido.Message("note_on", note=60, velocity=100))
    pull(mixer, 4)
    router.handle(mido.Message("control_change", control=120, value=0))
    out = pull(mixer, 2)
    assert np.abs(out[BLOCK:]).max() == 0.0
    q = mixer.queue(1)
    router.handle(mido.Message("pitchwheel", pitch=8191))
    last = (q._write - 1) % q.CAPACITY
    assert q._kind[last] == BEND
    assert q._value[last] == pytest.approx(2 ** (2 / 12), rel=1e-4)
    router.handle(mido.Message("pitchwheel", pitch=-8192))
    assert q._value[(q._write - 1) % q.CAPACITY] == pytest.approx(2 ** (-2 / 12), rel=1e-4)


def test_channel_filter(mixer):
    router = MidiRouter(lambda: mixer.queue(1), channel=2)
    assert not router.handle(mido.Message("note_on", channel=0, note=60, velocity=100))
    assert router.handle(mido.Message("note_on", channel=2, note=62, velocity=100))
    pull(mixer, 2)
    assert mixer.active_notes() == [62]
    router.channel = None
    assert router.handle(mido.Message("note_on", channel=9, note=64, velocity=100))


@pytest.mark.parametrize("garbage", [
    mido.Message("sysex", data=[1, 2, 3]),
    mido.Message("clock"),
    mido.Message("program_change", program=5),
    mido.Message("control_change", control=7, value=100),   # volume CC: not ours
    None,
    object(),
    b"\x90\x3c\x40",
    SimpleNamespace(type="note_on", channel=0, note=200, velocity=5),
    SimpleNamespace(type="note_on", channel=0, note=60, velocity="loud"),
    SimpleNamespace(type="note_on", channel=44, note=60, velocity=10),
    SimpleNamespace(type="pitchwheel"),
], ids=lambda g: getattr(g, "type", type(g).__name__))
def test_garbage_is_ignored(mixer, garbage):
    router = MidiRouter(lambda: mixer.queue(1))
    assert router.handle(garbage) is False
    assert router.ignored == 1
    assert mixer.queue(1)._write == 0   # nothing queued


def test_note_callback_for_the_display(mixer):
    seen = []
    router = MidiRouter(lambda: mixer.queue(1), on_note=lambda n, v: seen.append((n, v)))
    router.handle(mido.Message("note_on", note=61, velocity=90))
    router.handle(mido.Message("note_off", note=61, velocity=90))
    assert seen == [(61, 90), (61, 0)]


def test_default_port_skips_midi_through():
    assert default_port(["Midi Through:Midi Through Port-0 14:0", "Keystation 49:0 20:0"]) == "Keystation 49:0 20:0"
    assert default_port(["Midi Through Port-0"]) == "Midi Through Port-0"
    assert default_port([]) is None


def test_ports_that_appear_vanish_and_return(qtbot, mixer):
    backend = FakeMidiBackend()
    midi = MidiInput(backend, lambda: mixer.queue(1), poll_ms=10_000)
    ports = []
    midi.portsChanged.connect(ports.append)
    midi.start()
    assert midi.status == "No MIDI input ports" and midi.port_name is None
    backend.names = ["Midi Through Port-0", "Keys 20:0"]
    midi.poll()
    assert midi.port_name == "Keys 20:0" and ports[-1] == backend.names
    with qtbot.waitSignal(midi.noteOn, timeout=1000) as blocker:
        backend.send(mido.Message("note_on", note=65, velocity=80))
    assert blocker.args == [65, 80]
    pull(mixer, 2)
    assert mixer.active_notes() == [65]
    backend.names = ["Midi Through Port-0"]          # unplugged: automatic mode falls back to what is there
    midi.poll()
    assert backend.opened[0].closed and midi.port_name == "Midi Through Port-0"
    backend.names = ["Midi Through Port-0", "Keys 20:0"]   # plugged back in: preferred again
    midi.poll()
    assert midi.port_name == "Keys 20:0" and backend.opened[1].closed and len(backend.opened) == 3
    midi.select("Keys 20:0")                          # a chosen port is waited for
    backend.names = []
    midi.poll()
    assert midi.port_name is None and "disconnected" in midi.status
    backend.names = ["Keys 20:0"]
    midi.poll()
    assert midi.port_name == "Keys 20:0"
    midi.select("")                                   # off
    assert midi.port_name is None and midi.status == "MIDI input off"
    midi.select("Pads 24:0")                          # not there yet: waits for it
    assert midi.port_name is None and "waiting" in midi.status
    backend.names.append("Pads 24:0")
    midi.poll()
    assert midi.port_name == "Pads 24:0"
    midi.close()


def test_no_midi_system_is_reported_not_raised(qtbot, mixer):
    backend = FakeMidiBackend(["Keys"])
    backend.broken = "MidiInAlsa::initialize: error creating ALSA sequencer client object."
    midi = MidiInput(backend, lambda: mixer.queue(1), poll_ms=10_000)
    midi.start()
    assert midi.status.startswith("No MIDI input: MidiInAlsa")
    backend.broken = None
    midi.poll()
    assert midi.port_name == "Keys"
    midi.close()


def test_mido_backend_lists_port_names(monkeypatch):
    monkeypatch.setattr(mido, "get_input_names", lambda: ["Keys 20:0", "Pads 24:0"])
    assert MidoBackend().input_names() == ["Keys 20:0", "Pads 24:0"]


def test_mido_backend_says_why_there_is_no_midi(monkeypatch):
    def no_alsa():
        raise SystemError("MidiInAlsa::initialize: error creating ALSA sequencer client object.")

    monkeypatch.setattr(mido, "get_input_names", no_alsa)
    with pytest.raises(MidiUnavailable, match="^MidiInAlsa::initialize"):
        MidoBackend().input_names()


def test_no_midi_system_is_logged_once_not_per_poll(qtbot, mixer, caplog):
    backend = FakeMidiBackend(["Keys"])
    backend.broken = "MidiInAlsa::initialize: error creating ALSA sequencer client object."
    midi = MidiInput(backend, lambda: mixer.queue(1), poll_ms=10_000)
    with caplog.at_level(logging.WARNING, logger="app.midi_input"):
        midi.start()
        for _ in range(40):
            midi.poll()
        assert [r.getMessage() for r in caplog.records] == [
            "No MIDI input: MidiInAlsa::initialize: error creating ALSA sequencer client object."]
        backend.broken = None
        midi.poll()
        backend.broken = "gone again"
        midi.poll()
        midi.poll()
    assert len(caplog.records) == 2 and caplog.records[1].getMessage() == "No MIDI input: gone again"
    midi.close()


@pytest.mark.skipif(ctypes.util.find_library("asound") is None, reason="no libasound on this machine")
@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="an ALSA sequencer is present: nothing to silence")
def test_alsa_errors_go_to_the_debug_log_not_the_terminal(capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="app.midi_input"):
        for _ in range(3):
            with pytest.raises(MidiUnavailable):
                MidoBackend().input_names()
    with alsa_errors_to_log() as routed:
        assert routed
    assert "ALSA lib" not in capfd.readouterr().err          # libasound writes to fd 2 from C
    assert any("snd_seq" in r.getMessage() for r in caplog.records)
