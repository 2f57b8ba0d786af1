"""The soak's stand-in hardware: a sound card pulling the mixer at real time, and a MIDI keyboard.

Both sit behind the app's backend interfaces (``app.audio_output.AudioBackend``,
``app.midi_input.MidiBackend``), so the app's own ``AudioOutput`` and ``MidiInput`` open and drive
them. Timings go into preallocated arrays: the harness itself adds nothing that grows.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import mido
import numpy as np

from app.audio_output import OutputDevice
from engine.voices import MixerConfig

CONTROLS_ROUTED = (64, 120, 121, 123)   # the CCs MidiRouter acts on


class BlockTimes:
    """Per block: when it was due, when the callback started and ended, its CPU and run-queue time (s).

    A block is due when the card asks for it and must be written one block period later (the
    deadline): ``end - due`` is the response time, which includes the wake-up (run-queue wait: the
    OS gave the core to another process; or the GIL: another thread ran Python).
    """

    def __init__(self, capacity: int) -> None:
        self.due, self.start, self.end = np.zeros(capacity), np.zeros(capacity), np.zeros(capacity)
        self.cpu, self.runqueue = np.zeros(capacity), np.zeros(capacity)
        self.n = 0

    def view(self) -> dict[str, np.ndarray]:
        n = self.n
        return {"due": self.due[:n], "start": self.start[:n], "end": self.end[:n], "cpu": self.cpu[:n],
                "runqueue": self.runqueue[:n]}


def _runqueue_reader() -> Callable[[], float]:
    """Seconds this thread has waited on a run queue (``/proc/thread-self/schedstat``), or 0 without it."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return lambda: 0.0
    return lambda: int(os.pread(fd, 64, 0).split()[1]) * 1e-9


class PacedStream:
    """Calls ``callback(outdata, frames, time, status)`` once per block period from its own thread."""

    latency = 0.0

    def __init__(self, cfg: MixerConfig, callback: Callable, capacity: int) -> None:
        self.period_s = cfg.block_size / cfg.sample_rate
        self.times = BlockTimes(capacity)
        self.resyncs = 0     # fell more than a block behind: a card would have under-run and restarted
        self.thread_id = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cfg, callback), name="soak-audio", daemon=True)
        self._thread.start()

    def _run(self, cfg: MixerConfig, callback: Callable) -> None:
        self.thread_id = threading.get_ident()
        out = np.zeros((cfg.block_size, cfg.channels), np.float32)
        runqueue, t, period = _runqueue_reader(), self.times, self.period_s
        rq_before = runqueue()
        due = time.perf_counter() + period
        while not self._stop.is_set() and t.n < len(t.due):
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            start, cpu = time.perf_counter(), time.thread_time()
            callback(out, cfg.block_size, None, None)
            end, cpu = time.perf_counter(), time.thread_time() - cpu
            rq = runqueue()
            i = t.n
            t.due[i], t.start[i], t.end[i], t.cpu[i], t.runqueue[i] = due, start, end, cpu, rq - rq_before
            t.n, rq_before = i + 1, rq
            due += period
            if end > due + period:
                self.resyncs += 1
                due = end

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class PacedSoundCard:
    """An ``AudioBackend`` with one output whose stream is a :class:`PacedStream`."""

    def __init__(self, sample_rate: int, seconds: float) -> None:
        self.device = OutputDevice("Soak paced output", sample_rate, 2, 0)
        self.seconds = seconds
        self.streams: list[PacedStream] = []

    def outputs(self) -> list[OutputDevice]:
        return [self.device]

    def open(self, device: OutputDevice, cfg: MixerConfig, callback: Callable) -> PacedStream:
        capacity = int(self.seconds * cfg.sample_rate / cfg.block_size * 1.05) + 1000
        self.streams.append(PacedStream(cfg, callback, capacity))
        return self.streams[-1]


class SoakKeyboard:
    """A MIDI port's thread: random playing through ``callback`` (the app's ``MidiRouter.handle``),
    keeping ``held`` notes down, with sustain, bends, all-notes-off, all-sound-off and garbage.

    Bytes go through ``mido.Message.from_bytes`` as mido's rtmidi port does (a ValueError drops
    them); mido's other errors on truncated input are counted apart (``mido_errors``): they are
    mido's, raised before the app sees anything. ``handler_raised`` counts the app's handler raising
    and ``valid_ignored`` a well-formed message it dropped; both must stay 0.
    """

    def __init__(self, callback: Callable[[Any], bool], seed: int, held: tuple[int, int] = (32, 64),
                 garbage_share: float = 0.1, pause_s: tuple[float, float] = (0.001, 0.006)) -> None:
        self.callback = callback
        self.rng = random.Random(seed)
        self.low, self.high = held
        self.garbage_share, self.pause_s = garbage_share, pause_s
        self.held: set[int] = set()
        self.pedal = False
        self.counts = dict.fromkeys(("note_on", "note_off", "sustain", "pitchwheel", "all_notes_off",
                                     "all_sound_off", "garbage", "garbage_rejected_by_mido", "garbage_routed",
                                     "mido_errors", "handler_raised", "valid_ignored"), 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "SoakKeyboard":
        self._thread = threading.Thread(target=self._run, name="soak-midi", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        lo, hi = self.pause_s
        while not self._stop.is_set():
            self.step()
            time.sleep(self.rng.uniform(lo, hi))

    def step(self) -> None:
        """One message (or a short burst of bends): a note most of the time, now and then the rest."""
        rng = self.rng
        r = rng.random()
        if r < self.garbage_share:
            self.garbage()
        elif r < self.garbage_share + 0.04:
            for _ in range(rng.randint(1, 8)):   # a wheel moves in a burst of messages
                self.send(mido.Message("pitchwheel", channel=rng.randrange(16), pitch=rng.randint(-8192, 8191)))
        elif r < self.garbage_share + 0.045:
            self.pedal = not self.pedal
            self.send(mido.Message("control_change", channel=rng.randrange(16), control=64,
                                   value=rng.randint(64, 127) if self.pedal else rng.randint(0, 63)))
        elif r < self.garbage_share + 0.0455:
            self.send(mido.Message("control_change", control=123, value=0), "all_notes_off")
            self.held.clear()
        elif r < self.garbage_share + 0.0458:
            self.send(mido.Message("control_change", control=120, value=0), "all_sound_off")
            self.held.clear()
        elif len(self.held) < self.low or (len(self.held) < self.high and rng.random() < 0.5):
            note = rng.choice([n for n in range(21, 109) if n not in self.held])
            self.held.add(note)
            self.send(mido.Message("note_on", channel=rng.randrange(16), note=note, velocity=rng.randint(1, 127)))
        else:
            note = rng.choice(sorted(self.held))
            self.held.discard(note)
            off = (mido.Message("note_off", note=note, velocity=rng.randint(0, 127)) if rng.random() < 0.5
                   else mido.Message("note_on", note=note, velocity=0))
            self.send(off, "note_off")

    def send(self, msg: Any, kind: str | None = None) -> None:
        """A well-formed message: the handler must take it."""
        kind = kind or ("sustain" if msg.type == "control_change" else msg.type)
        self.counts[kind] += 1
        if not self._handle(msg):
            self.counts["valid_ignored"] += 1

    def garbage(self) -> None:
        """Something a broken device or cable might send; the handler must not raise."""
        self.counts["garbage"] += 1
        rng = self.rng
        kind = rng.randrange(5)
        if kind == 0:
            self._bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 4))))
            return
        if kind == 1:
            msg: Any = mido.Message("sysex", data=[rng.randrange(128) for _ in range(rng.randint(0, 64))])
        elif kind == 2:
            control = rng.choice([c for c in range(128) if c not in CONTROLS_ROUTED])
            msg = mido.Message("control_change", channel=rng.randrange(16), control=control, value=rng.randrange(128))
        elif kind == 3:
            msg = rng.choice([mido.Message("program_change", program=rng.randrange(128)),
                              mido.Message("aftertouch", value=rng.randrange(128)),
                              mido.Message("polytouch", note=rng.randrange(128), value=rng.randrange(128)),
                              mido.Message("clock"), mido.Message("start"), mido.Message("stop"),
                              mido.Message("songpos", pos=rng.randrange(16384)), mido.Message("reset"),
                              mido.Message("active_sensing")])
        else:
            msg = self._malformed()
        if self._handle(msg):
            self.counts["garbage_routed"] += 1

    def _malformed(self) -> Any:
        """Out-of-range or mistyped fields, and things that are not messages at all."""
        rng = self.rng
        wild = rng.choice([-1, 128, 200, 1 << 20, -(1 << 40), 3.5, float("nan"), "loud", None])
        tampered = mido.Message("note_on", note=60, velocity=64)
        vars(tampered)[rng.choice(["note", "velocity", "channel"])] = wild   # past mido's checks
        return rng.choice([
            tampered,
            SimpleNamespace(type="note_on", channel=0, note=wild, velocity=64),
            SimpleNamespace(type="note_off", channel=wild, note=60, velocity=0),
            SimpleNamespace(type="control_change", channel=0, control=wild, value=wild),
            SimpleNamespace(type="pitchwheel", channel=0),
            SimpleNamespace(type=wild), None, object(), b"\x90\x3c\x40", 60,
        ])

    def _bytes(self, data: bytes) -> None:
        """Raw bytes as mido's rtmidi port parses them before calling back."""
        try:
            msg = mido.Message.from_bytes(data)
        except ValueError:
            self.counts["garbage_rejected_by_mido"] += 1
            return
        except Exception:  # noqa: BLE001 - mido's own bug on truncated input, not the app's
            self.counts["mido_errors"] += 1
            return
        if self._handle(msg):
            self.counts["garbage_routed"] += 1

    def _handle(self, msg: Any) -> bool:
        try:
            return bool(self.callback(msg))
        except Exception:  # noqa: BLE001 - counted: the app's handler must never raise
            self.counts["handler_raised"] += 1
            return False


class SoakPort:
    """What ``MidiBackend.open_input`` returns: closing stops the keyboard's thread."""

    def __init__(self, keyboard: SoakKeyboard) -> None:
        self.keyboard = keyboard

    def close(self) -> None:
        self.keyboard.close()


class SoakMidiBackend:
    """A ``MidiBackend`` with one port; opening it starts a :class:`SoakKeyboard` on the given callback."""

    NAME = "Soak keyboard"

    def __init__(self, make_keyboard: Callable[[Callable[[Any], bool]], SoakKeyboard]) -> None:
        self.make_keyboard = make_keyboard
        self.keyboards: list[SoakKeyboard] = []

    def input_names(self) -> list[str]:
        return [self.NAME]

    def open_input(self, name: str, callback: Callable[[Any], bool]) -> SoakPort:
        self.keyboards.append(self.make_keyboard(callback).start())
        return SoakPort(self.keyboards[-1])
