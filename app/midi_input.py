"""MIDI in: mido (rtmidi backend) ports, polled so that ports may come and go while the app runs.

``MidiRouter`` turns mido messages into mixer events (channel filter, anything unexpected ignored);
``MidiInput`` watches the port list and keeps the chosen port open. The hardware sits behind
``MidiBackend`` so tests feed messages and port lists directly.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from engine.voice_events import EventQueue


class MidiUnavailable(Exception):
    """No MIDI system (e.g. no ALSA sequencer) or the port refused to open."""


class MidiPort(Protocol):
    def close(self) -> None: ...


class MidiBackend(Protocol):
    def input_names(self) -> list[str]: ...

    def open_input(self, name: str, callback: Callable[[Any], None]) -> MidiPort: ...


log = logging.getLogger(__name__)

# libasound's snd_lib_error_handler_t: (file, line, function, err, fmt, ...); the variadic arguments
# are left unread, which the C calling convention allows. use_errno: libasound returns -errno right
# after calling the handler, so the Python call must leave errno as it found it.
_AlsaErrorHandler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_char_p, use_errno=True)


def _log_alsa_error(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
    def text(b: bytes | None) -> str:
        return (b or b"").decode(errors="replace")

    reason = f": {os.strerror(abs(err))}" if err else ""
    log.debug("ALSA lib %s:%d:(%s) %s%s", text(file), line, text(function), text(fmt), reason)


@functools.cache
def _alsa_error_hook() -> tuple[Any, Any] | None:
    """(snd_lib_error_set_handler, our handler), or None without libasound; cached, so ctypes keeps
    the callback alive."""
    name = ctypes.util.find_library("asound")
    if name is None:
        return None
    try:
        set_handler = ctypes.CDLL(name).snd_lib_error_set_handler
    except (OSError, AttributeError):
        return None
    return set_handler, _AlsaErrorHandler(_log_alsa_error)


@contextlib.contextmanager
def alsa_errors_to_log() -> Iterator[bool]:
    """While inside, libasound's error lines go to this module's debug log instead of the terminal.

    Without an ALSA sequencer every port listing (a poll a second) makes libasound print "ALSA lib
    seq_hw.c:...(snd_seq_hw_open) open /dev/snd/seq failed" from C. The handler is process-wide, so
    it is set only around our own MIDI calls: audio (PortAudio) keeps libasound's default printing.
    Yields whether the handler is in place.
    """
    hook = _alsa_error_hook()
    if hook is None:
        yield False
        return
    set_handler, handler = hook
    set_handler(handler)
    try:
        yield True
    finally:
        set_handler(None)   # NULL: libasound's default handler again


class MidoBackend:
    """mido with python-rtmidi; rtmidi's SystemError (an OSError) and friends become MidiUnavailable.

    libasound's own error lines go to the debug log (``alsa_errors_to_log``), not the terminal.
    """

    def input_names(self) -> list[str]:
        try:
            import mido

            with alsa_errors_to_log():
                return [str(n) for n in mido.get_input_names()]
        except Exception as exc:  # noqa: BLE001 - rtmidi raises SystemError/RuntimeError without ALSA
            raise MidiUnavailable(str(exc) or type(exc).__name__) from exc

    def open_input(self, name: str, callback: Callable[[Any], None]) -> MidiPort:
        try:
            import mido

            with alsa_errors_to_log():
                return mido.open_input(name, callback=callback)
        except Exception as exc:  # noqa: BLE001
            raise MidiUnavailable(str(exc) or type(exc).__name__) from exc


class MidiRouter:
    """mido messages -> events on the MIDI producer's queue, plus a note callback for the display.

    Handles note on/off (velocity 0 = off), CC64 sustain, CC120 all sound off, CC121 reset,
    CC123 all notes off and pitch bend; ``channel`` (0-15) filters, None takes all. Any other or
    malformed message is ignored; ``handle`` never raises (it runs on rtmidi's thread).
    """

    def __init__(self, queue: Callable[[], EventQueue],
                 on_note: Callable[[int, int], None] | None = None, channel: int | None = None) -> None:
        self.queue = queue
        self.on_note = on_note
        self.channel = channel
        self.ignored = 0

    def handle(self, msg: Any) -> bool:
        """Route one message; True if it did something."""
        try:
            used = self._route(msg)
        except Exception:  # noqa: BLE001 - garbage from a device must not kill the MIDI thread
            used = False
        if not used:
            self.ignored += 1
        return used

    def _route(self, msg: Any) -> bool:
        kind = getattr(msg, "type", None)
        if kind not in ("note_on", "note_off", "control_change", "pitchwheel"):
            return False
        channel = int(msg.channel)
        if not 0 <= channel <= 15 or (self.channel is not None and channel != self.channel):
            return False
        q = self.queue()
        if kind in ("note_on", "note_off"):
            note, velocity = int(msg.note), int(msg.velocity)
            if not (0 <= note <= 127 and 0 <= velocity <= 127):
                return False
            if kind == "note_off":
                velocity = 0
            q.note_on(note, velocity) if velocity > 0 else q.note_off(note)
            if self.on_note is not None:
                self.on_note(note, velocity)
            return True
        if kind == "pitchwheel":
            q.pitch_bend(max(-8192, min(8191, int(msg.pitch))) / 8192)
            return True
        control, value = int(msg.control), int(msg.value)
        if control == 64:
            q.sustain(value >= 64)
        elif control == 120:
            q.all_sound_off()
        elif control == 121:
            q.sustain(False)
            q.pitch_bend(0.0)
        elif control == 123:
            q.all_notes_off()
        else:
            return False
        return True


def default_port(names: list[str]) -> str | None:
    """The port to open when none was chosen: the first that is not a loop-back ("Midi Through")."""
    real = [n for n in names if "through" not in n.lower()]
    return (real or names or [None])[0]


class MidiInput(QObject):
    """Keeps the wanted MIDI input open across ports appearing and vanishing (polled)."""

    portsChanged = Signal(list)
    statusChanged = Signal(str)
    noteOn = Signal(int, int)   # emitted on rtmidi's thread; Qt queues it to the GUI
    noteOff = Signal(int)

    def __init__(self, backend: MidiBackend, queue: Callable[[], EventQueue], poll_ms: int = 1000,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.router = MidiRouter(queue, self._note)
        self.wanted: str | None = None   # the user's choice; "" means "none"
        self.port_name: str | None = None
        self._port: MidiPort | None = None
        self._names: list[str] | None = None
        self.status = ""
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        self.poll()
        self._timer.start()

    def set_channel(self, channel: int | None) -> None:
        self.router.channel = channel

    def select(self, name: str | None) -> None:
        """Open ``name`` now if present (else as soon as it appears); "" closes the input."""
        self.wanted = name
        self._close()
        self.poll()

    def poll(self) -> None:
        """Re-read the port list; close a vanished port, open the wanted one when it is there."""
        try:
            names = self.backend.input_names()
        except MidiUnavailable as exc:
            self._close()
            status = f"No MIDI input: {exc}"
            if status != self.status:
                log.warning("%s", status)   # once, not on every poll while there is no MIDI system
            self._set_status(status)
            self._set_names([])
            return
        self._set_names(names)
        if self.port_name is not None and self.port_name not in names:
            lost = self.port_name
            self._close()
            self._set_status(f"MIDI input {lost!r} disconnected; waiting for it")
            if self.wanted is not None:
                return
        elif self.wanted is None and self.port_name is not None and self.port_name != default_port(names):
            self._close()   # automatic: a real keyboard plugged in beats a loop-back port
        if self._port is None:
            self._open_wanted(names)

    def _open_wanted(self, names: list[str]) -> None:
        if self.wanted == "":
            self._set_status("MIDI input off")
            return
        name = self.wanted if self.wanted in names else (default_port(names) if self.wanted is None else None)
        if name is None:
            if not names:
                self._set_status("No MIDI input ports")
            else:
                self._set_status(f"MIDI input {self.wanted!r} not connected; waiting for it")
            return
        try:
            self._port = self.backend.open_input(name, self.router.handle)
        except MidiUnavailable as exc:
            self._set_status(f"MIDI input {name!r} failed: {exc}")
            return
        self.port_name = name
        self._set_status(f"MIDI in: {name}")

    def _set_names(self, names: list[str]) -> None:
        if names != self._names:
            self._names = list(names)
            self.portsChanged.emit(list(names))

    def _set_status(self, text: str) -> None:
        if text != self.status:
            self.status = text
            self.statusChanged.emit(text)

    def _note(self, note: int, velocity: int) -> None:
        if velocity > 0:
            self.noteOn.emit(note, velocity)
        else:
            self.noteOff.emit(note)

    def _close(self) -> None:
        port, self._port, self.port_name = self._port, None, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - a vanished device may fail to close
                pass

    def close(self) -> None:
        self._timer.stop()
        self._close()
