"""Audio out: the voice mixer, pulled by a sounddevice stream when there is a device (and idle otherwise).

The hardware sits behind ``AudioBackend`` (list outputs, open a started stream) so tests drive the
same ``AudioOutput`` with a fake backend and pull blocks from ``mixer.callback`` themselves.

While a stream is open the audio thread comes first: on its first block it asks for real-time
priority (``engine.priority.raise_this_thread``; refused without the privilege, then it stays as
it was) and, real-time, settles on one core (``audio_cpu``) that a single render worker then
shares (see engine/priority.py: there the worker cannot take the GIL from it). Python hands the GIL
over every ``switch_interval_s`` instead of every 5 ms, so a Python thread that holds it (the GUI
installing keys, the MIDI thread) keeps the callback waiting no longer than that. The sample
arrays a key install lets go of are freed by a background thread a few at a time
(``VoiceMixer.retired``), not all at once on the GUI thread nor in the callback.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.key_cache import PLAIN, KeySample, VariantKey, Variations
from engine.voice_events import EventQueue
from engine.envelope import Envelope
from engine.priority import audio_cpu, lower_this_thread, pin_this_thread, raise_this_thread
from engine.voices import MixerConfig, VoiceMixer
from models.units import OUTPUT_SAMPLE_RATE

GUI, MIDI = 0, 1   # producer ids: one event queue each
# The GIL's switch interval while a stream plays: the longest a Python thread keeps the callback
# waiting (Python's default, 5 ms, is about a whole 256-frame block at 48 kHz).
PLAYING_SWITCH_INTERVAL_S = 0.0005


class AudioUnavailable(Exception):
    """No usable audio output (no device, no PortAudio, the device refused the stream)."""


@dataclass(frozen=True)
class OutputDevice:
    """One output the backend offers."""

    name: str
    sample_rate: int
    channels: int
    index: int | None = None


class Stream(Protocol):
    latency: float   # seconds, as the device reports it

    def close(self) -> None: ...


class AudioBackend(Protocol):
    def outputs(self) -> list[OutputDevice]: ...

    def open(self, device: OutputDevice, cfg: MixerConfig, callback: Callable) -> Stream: ...


class SoundDeviceBackend:
    """PortAudio through sounddevice; every failure becomes AudioUnavailable with PortAudio's words."""

    def outputs(self) -> list[OutputDevice]:
        try:
            import sounddevice as sd

            devices = sd.query_devices()
        except Exception as exc:  # noqa: BLE001 - OSError when PortAudio is missing, PortAudioError, ...
            raise AudioUnavailable(str(exc) or type(exc).__name__) from exc
        return [OutputDevice(str(d["name"]), int(d["default_samplerate"]), min(2, int(d["max_output_channels"])), i)
                for i, d in enumerate(devices) if int(d["max_output_channels"]) > 0]

    def open(self, device: OutputDevice, cfg: MixerConfig, callback: Callable) -> Stream:
        try:
            import sounddevice as sd

            stream = sd.OutputStream(device=device.index, samplerate=cfg.sample_rate, blocksize=cfg.block_size,
                                     channels=cfg.channels, dtype="float32", latency="low", callback=callback)
            stream.start()
        except Exception as exc:  # noqa: BLE001
            raise AudioUnavailable(str(exc) or type(exc).__name__) from exc
        return stream


class DeviceCallback:
    """The mixer's callback as the device's thread calls it: on the first block that thread asks for
    real-time priority and, granted, pins itself to one core (the thread is known only there);
    then every block goes straight to the mixer."""

    def __init__(self, callback: Callable, realtime: bool) -> None:
        self.callback = callback
        self.pending = realtime
        self.priority = "normal"   # what the audio thread got (``raise_this_thread``'s answer)
        self.cpu: int | None = None   # the core it runs on, when real-time and pinned

    def __call__(self, outdata: object, frames: int, time: object, status: object) -> None:
        if self.pending:
            self.pending = False
            self._first_block()
        self.callback(outdata, frames, time, status)

    def _first_block(self) -> None:
        try:
            self.priority = raise_this_thread()
            cpu = audio_cpu() if self.priority.startswith("fifo") else None
            if cpu is not None and pin_this_thread(cpu):
                self.cpu = cpu
        except Exception:  # noqa: BLE001 - the audio thread must never raise
            pass


class Reaper:
    """A background thread freeing ``mixer.retired``'s sample arrays while a stream plays: at most
    ``per_tick`` every ``period_s`` (~40 us each under the GIL instead of tens of ms at once)."""

    def __init__(self, mixer: VoiceMixer, period_s: float = 0.01, per_tick: int = 4) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(mixer, period_s, per_tick), name="audio-reaper",
                                        daemon=True)
        self._thread.start()

    def _run(self, mixer: VoiceMixer, period_s: float, per_tick: int) -> None:
        lower_this_thread()
        while not self._stop.wait(period_s):
            mixer.retired.release(per_tick)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class AudioOutput:
    """Owns the VoiceMixer that the GUI and the MIDI thread talk to, and the stream that pulls it.

    Opening a device builds a fresh mixer at the device's rate (fresh queues: events typed while no
    stream ran are not replayed) and hands it the current keys, envelope and volume. ``realtime``
    False leaves the audio thread's priority alone; ``switch_interval_s`` None leaves the GIL's.
    """

    def __init__(self, backend: AudioBackend, block_size: int = 512, n_voices: int = 32, realtime: bool = True,
                 switch_interval_s: float | None = PLAYING_SWITCH_INTERVAL_S) -> None:
        self.backend = backend
        self.realtime = realtime
        self.switch_interval_s = switch_interval_s
        self._switch_interval_before: float | None = None
        self.device_callback: DeviceCallback | None = None
        self._reaper: Reaper | None = None
        self.block_size = block_size
        self.n_voices = n_voices
        self._keys: dict[int, KeySample] = {}
        self._variants: dict[VariantKey, KeySample] = {}
        self._variations = PLAIN
        self._random_rr = False
        self._envelope = Envelope()
        self._volume = 0.5
        self.mixer = self._new_mixer(OUTPUT_SAMPLE_RATE, 2)
        self.device: OutputDevice | None = None
        self.stream: Stream | None = None
        self.available: list[OutputDevice] = []
        self.status = "No audio output opened"

    def _new_mixer(self, sample_rate: int, channels: int) -> VoiceMixer:
        cfg = MixerConfig(sample_rate=sample_rate, block_size=self.block_size, channels=channels, n_voices=self.n_voices,
                          random_round_robin=self._random_rr)
        mixer = VoiceMixer(cfg, self._envelope)
        mixer.set_volume(self._volume)
        mixer.set_keys(self._keys, self._variants, self._variations)
        return mixer

    @property
    def sample_rate(self) -> int:
        return self.mixer.cfg.sample_rate

    def devices(self) -> list[OutputDevice]:
        """Outputs on offer ([] with ``status`` saying why when there is no audio at all)."""
        try:
            found = self.backend.outputs()
        except AudioUnavailable as exc:
            found = []
            self.status = f"No audio output ({exc}): rendering and export still work"
        else:
            if not found:
                self.status = "No audio output device found: rendering and export still work"
        self.available = found
        return found

    def open(self, name: str | None = None) -> bool:
        """Open the output called ``name`` (else the first); False, with ``status`` set, if none opens."""
        self.close()
        found = self.devices()
        if not found:
            return False
        device = next((d for d in found if d.name == name), found[0])
        self.mixer = self._new_mixer(device.sample_rate, device.channels)
        self.device_callback = DeviceCallback(self.mixer.callback, self.realtime)
        if self.switch_interval_s is not None:
            self._switch_interval_before = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval_s)
        try:
            self.stream = self.backend.open(device, self.mixer.cfg, self.device_callback)
        except AudioUnavailable as exc:
            self.status = f"Audio output {device.name!r} failed: {exc}"
            self._restore_switch_interval()
            return False
        self.device = device
        self._reaper = Reaper(self.mixer)
        self.status = f"Playing through {device.name}"
        return True

    def close(self) -> None:
        stream, self.stream, self.device = self.stream, None, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - a vanished device may fail to close; it is gone anyway
                pass
            self.status = "Audio output closed"
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None
        self.mixer.retired.release()   # nothing plays: free what is left here
        self._restore_switch_interval()

    def _restore_switch_interval(self) -> None:
        if self._switch_interval_before is not None:
            sys.setswitchinterval(self._switch_interval_before)
            self._switch_interval_before = None

    @property
    def audio_priority(self) -> str:
        """What the audio thread's priority became (``"fifo 20"``, ``"nice -10"``, ``"normal"``)."""
        return self.device_callback.priority if self.device_callback is not None else "normal"

    @property
    def audio_cpu(self) -> int | None:
        """The core the (real-time) audio thread is pinned to while a stream plays, else None."""
        return self.device_callback.cpu if self.device_callback is not None and self.stream is not None else None

    @property
    def latency_s(self) -> float | None:
        """Device latency plus one block (events wait for the next callback), or None without a stream."""
        if self.stream is None:
            return None
        return float(self.stream.latency) + self.block_size / self.sample_rate

    def latency_text(self) -> str:
        lat = self.latency_s
        if lat is None:
            return "latency: no output"
        block_ms = 1000 * self.block_size / self.sample_rate
        return (f"latency {1000 * lat:.1f} ms (device {1000 * (lat - self.block_size / self.sample_rate):.1f} ms"
                f" + block {self.block_size} @ {self.sample_rate / 1000:g} kHz = {block_ms:.1f} ms)")

    # -- what producers and the GUI call --------------------------------------------------------
    def queue(self, producer: int) -> EventQueue:
        """The current mixer's queue for ``producer`` (GUI or MIDI); read afresh for every event."""
        return self.mixer.queue(producer)

    def set_keys(self, keys: dict[int, KeySample], variants: dict[VariantKey, KeySample] | None = None,
                 variations: Variations = PLAIN) -> None:
        """The keys to play, with their velocity layers and round robins (laid out by ``variations``)."""
        self._keys, self._variants, self._variations = dict(keys), dict(variants or {}), variations
        self.mixer.set_keys(self._keys, self._variants, variations)
        if self._reaper is None:
            self.mixer.retired.release()   # no stream, no reaper: nothing to keep waiting

    def set_random_round_robin(self, random: bool) -> None:
        """Round robins in a random order (never one twice running) instead of in turn."""
        self._random_rr = bool(random)
        self.mixer.random_round_robin = self._random_rr

    def set_envelope(self, envelope: Envelope) -> None:
        self._envelope = envelope
        self.mixer.set_envelope(envelope)

    def set_volume(self, gain: float) -> None:
        self._volume = gain
        self.mixer.set_volume(gain)

    def read_peak(self) -> float:
        return self.mixer.read_peak()
