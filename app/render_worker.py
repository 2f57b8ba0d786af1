"""Rendering off the GUI thread: one worker object living in a QThread, one job at a time."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from models.errors import UserError


@dataclass
class RenderJob:
    """One request: render ``sample_a`` (mixed with ``sample_b`` by ``alpha``) at ``sample_rate``.

    ``fresh`` marks a new sound (the keys of the previous one are dropped when this job's first key
    lands); a mix change keeps the old keys until each is replaced. ``cancel`` is set when a newer
    job supersedes this one.
    """

    id: int
    sample_a: Any
    sample_b: Any | None
    alpha: float
    sample_rate: int
    fresh: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    started_s: float = field(default_factory=time.perf_counter)
    landed: int = 0


class RenderWorker(QObject):
    """Runs ``engine.render`` for each submitted job; signals cross back to the GUI thread queued."""

    keyReady = Signal(int, int, object)    # job id, MIDI note, KeySample
    jobDone = Signal(int, bool, str)       # job id, finished (not cancelled), error message or ""

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self.engine = engine

    @Slot(object)
    def run(self, job: RenderJob) -> None:
        if job.cancel.is_set():   # superseded while it waited in the queue
            self.jobDone.emit(job.id, False, "")
            return
        try:
            self.engine.render(job.sample_a, job.sample_b, job.alpha, cancel=job.cancel,
                               on_key=lambda midi, key: self.keyReady.emit(job.id, midi, key),
                               sample_rate=job.sample_rate)
        except UserError as exc:
            self.jobDone.emit(job.id, False, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - report, keep the worker alive for the next job
            self.jobDone.emit(job.id, False, f"rendering failed: {type(exc).__name__}: {exc}")
            return
        self.jobDone.emit(job.id, not job.cancel.is_set(), "")
