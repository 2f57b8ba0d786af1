"""The instrument being played: samples A and B, the mix, the key cache, and render requests.

All engine work for rendering runs on a worker QThread (``RenderWorker``); a newer request cancels
the running one. Keys land one by one in the GUI thread and go straight to the voice mixer: a mix
change keeps the previous keys playable until each is replaced; a new sound drops the previous
sound's keys when its first key lands (until then its own key stands in for every other key).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from app.audio_output import AudioOutput
from app.render_worker import RenderJob, RenderWorker
from engine.key_cache import KeySample
from models.signal.audio import Audio
from models.errors import UserError
from models.units import N_KEYS, clamp_key

SLOTS = ("A", "B")


@dataclass(frozen=True)
class SoundPreview:
    """A sound shown without a model (no engine to load it with): what the slot displays."""

    name: str
    audio: Audio
    midi: float
    confidence: float

    @property
    def root_note(self) -> int:
        return clamp_key(self.midi)


def preview_sound(path: Path) -> SoundPreview:
    """Load and pitch-track a file the way the engine would, for display only."""
    from models.signal.audio import load_audio
    from models.signal.mel import SHIPPED_MEL
    from models.signal.pitch import estimate_pitch

    audio = load_audio(path, SHIPPED_MEL.sample_rate)
    estimate = estimate_pitch(audio)
    return SoundPreview(path.stem, audio, float(estimate.midi), float(estimate.confidence))


class InstrumentController(QObject):
    """Owns samples, mix and keys; talks to the engine (through the worker) and to AudioOutput."""

    sampleChanged = Signal(str, object)      # slot, the loaded sample (name, audio, midi, confidence) or None
    sampleFailed = Signal(str, str)          # slot, message for the user
    keysChanged = Signal(object, object)     # rendered notes, notes rendered for the current request
    progress = Signal(int, int)              # keys landed, keys wanted
    status = Signal(str)
    _submit = Signal(object)

    def __init__(self, engine: Any | None, audio: AudioOutput, engine_error: str = "",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.engine_error = engine_error
        self.audio = audio
        self.samples: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}
        self.alpha = 0.0
        self.keys: dict[int, KeySample] = {}
        self.fresh: set[int] = set()
        self.job: RenderJob | None = None
        self.rendering = False
        self._ids = itertools.count(1)
        self._thread: QThread | None = None
        if engine is not None:
            self._thread = QThread(self)
            self._thread.setObjectName("render")
            self._worker = RenderWorker(engine)
            self._worker.moveToThread(self._thread)
            self._submit.connect(self._worker.run)
            self._worker.keyReady.connect(self._on_key)
            self._worker.jobDone.connect(self._on_done)
            self._thread.start()

    # -- requests from the window -----------------------------------------------------------------
    def load(self, slot: str, path: str | Path) -> bool:
        """Load ``path`` into ``slot`` and re-render; on failure the slot keeps its previous sound."""
        path = Path(path)
        try:
            sample = self.engine.load_sample(path) if self.engine is not None else preview_sound(path)
        except UserError as exc:
            self.sampleFailed.emit(slot, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a decoder crash on a strange file is the file's fault
            self.sampleFailed.emit(slot, f"{path.name}: cannot be read ({type(exc).__name__}: {exc})")
            return False
        self.samples[slot] = sample
        self.paths[slot] = path
        self.sampleChanged.emit(slot, sample)
        self.request(fresh=True)
        return True

    def clear(self, slot: str) -> None:
        if self.samples.pop(slot, None) is None:
            return
        self.paths.pop(slot, None)
        self.sampleChanged.emit(slot, None)
        if not self.samples:
            self.cancel()
            self._replace_keys({}, set())
            self.progress.emit(0, N_KEYS)
            self.status.emit("Drop a sound on A to play it")
        else:
            self.request(fresh=True)

    def set_alpha(self, alpha: float) -> None:
        alpha = min(max(float(alpha), 0.0), 1.0)
        if alpha == self.alpha:
            return
        self.alpha = alpha
        if len(self.samples) == 2:
            self.request(fresh=False)

    def request(self, fresh: bool) -> RenderJob | None:
        """Start rendering the current sound (cancelling the running render); None if nothing to do."""
        self.cancel()
        if self.engine is None:
            self.status.emit(f"No model installed: {self.engine_error}" if self.engine_error else "No model installed")
            return None
        if not self.samples:
            return None
        a = self.samples.get("A", self.samples.get("B"))
        b = self.samples.get("B") if "A" in self.samples else None
        job = RenderJob(next(self._ids), a, b, self.alpha if b is not None else 0.0, self.audio.sample_rate, fresh)
        self.job = job
        self.rendering = True
        self.progress.emit(0, N_KEYS)
        what = a.name if b is None else f"{a.name} \u2194 {b.name} at {100 * job.alpha:.0f} %"
        self.status.emit(f"Rendering {what}\u2026")
        self._submit.emit(job)
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
        self.rendering = False

    def pack_name(self) -> str:
        """A name for an export: the sound's name, or both names and the mix."""
        a, b = self.samples.get("A"), self.samples.get("B")
        if a is not None and b is not None:
            return f"{a.name}-{b.name}-{100 * self.alpha:.0f}"
        return (a or b).name if (a or b) is not None else "hypergan"

    @property
    def complete(self) -> bool:
        """Every key rendered for the current request."""
        return bool(self.samples) and not self.rendering and len(self.fresh) == N_KEYS

    def shutdown(self) -> None:
        self.cancel()
        if self._thread is not None:
            if hasattr(self.engine, "cancel_all"):
                self.engine.cancel_all()
            self._thread.quit()
            self._thread.wait(10000)
            self._thread = None

    # -- results from the worker (GUI thread) ---------------------------------------------------------
    def _on_key(self, job_id: int, midi: int, key: KeySample) -> None:
        job = self.job
        if job is None or job.id != job_id or job.cancel.is_set():
            return   # a superseded job's key: its replacement is on the way
        if job.fresh and job.landed == 0:
            keys, fresh = {}, set()   # a new sound: the old sound's keys go now
        else:
            keys, fresh = dict(self.keys), set(self.fresh)
        job.landed += 1
        keys[midi] = key
        fresh.add(midi)
        self._replace_keys(keys, fresh)
        self.progress.emit(len(fresh), N_KEYS)

    def _on_done(self, job_id: int, finished: bool, error: str) -> None:
        job = self.job
        if job is None or job.id != job_id:
            return
        self.rendering = False
        if error:
            self.status.emit(f"Render failed: {error}")
        elif finished:
            self.status.emit(f"{len(self.fresh)} keys rendered in {time.perf_counter() - job.started_s:.1f} s")
        self.keysChanged.emit(set(self.keys), set(self.fresh))

    def _replace_keys(self, keys: dict[int, KeySample], fresh: set[int]) -> None:
        self.keys, self.fresh = keys, fresh
        self.audio.set_keys(keys)
        self.keysChanged.emit(set(keys), set(fresh))
