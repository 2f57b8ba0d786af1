"""Rendering off the GUI thread: one worker object living in a QThread, one job at a time."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from engine.mix import Mix
from engine.priority import lower_this_thread, pin_this_thread
from models.errors import UserError


@dataclass
class RenderJob:
    """One request: render ``sounds`` mixed by ``weights`` (summing to 1) at ``sample_rate``.

    ``fresh`` marks a new sound (the keys of the previous one are dropped when this job's first key
    lands); a mix change keeps the old keys until each is replaced. ``cancel`` is set when a newer
    job supersedes this one.

    With ``refine`` (an enabled ``RefineConfig``) the job has two phases: the unrefined keys first
    (quick: the first key within a fraction of a second), then each sound is refined and the keys are
    rendered again, replacing the first ones. The first phase is skipped when ``fast_first`` is False
    (the keys playing are already this sound's) or when the refinement is at hand anyway. Velocity
    layers and round robins (``variations``) come last, from the final conditioning. ``near_root``
    goes to every pass (the engine applies it to a single sound only). ``workers`` caps the engine's
    render workers for this job (None: all of them); ``cpu`` pins the rendering (not refinement,
    whose OpenMP threads would inherit one core) to that core, the real-time audio thread's.
    """

    id: int
    sounds: tuple[Any, ...]
    weights: tuple[float, ...]
    sample_rate: int
    fresh: bool
    refine: Any | None = None
    fast_first: bool = True
    variations: Any | None = None   # engine.key_cache.Variations: rendered after the final keys
    near_root: int = 0              # semitones around the root that play the sound itself (0: off)
    workers: int | None = None      # render workers side by side (None: the engine's)
    cpu: int | None = None          # the core the key passes run on (None: any)
    cancel: threading.Event = field(default_factory=threading.Event)
    started_s: float = field(default_factory=time.perf_counter)
    landed: int = 0
    refined_landed: int = 0

    @property
    def sample_a(self) -> Any:
        return self.sounds[0]

    @property
    def sample_b(self) -> Any | None:
        """The second sound of a two-sound mix (the A <-> B slider), else None."""
        return self.sounds[1] if len(self.sounds) == 2 else None

    @property
    def alpha(self) -> float:
        """The second sound's share in a two-sound mix, else 0."""
        return self.weights[1] if len(self.sounds) == 2 else 0.0

    def engine_sounds(self) -> tuple[Any, ...]:
        """The engine's sound arguments: ``(a,)``, ``(a, b, alpha)``, or ``(Mix,)`` of three or four sounds."""
        if len(self.sounds) <= 2:
            return (self.sample_a, self.sample_b, self.alpha)
        return (Mix.of(self.sounds, self.weights),)


class RenderWorker(QObject):
    """Runs ``engine.render`` for each submitted job; signals cross back to the GUI thread queued."""

    keyReady = Signal(int, int, object, bool)   # job id, MIDI note, KeySample, from refined conditioning
    variantReady = Signal(int, int, int, int, object)   # job id, MIDI note, velocity layer, round robin, KeySample
    refineProgress = Signal(int, str, int, int)  # job id, sound name, step, steps
    jobDone = Signal(int, bool, str)            # job id, finished (not cancelled), error message or ""

    def __init__(self, engine: Any) -> None:
        super().__init__()
        self.engine = engine

    @Slot(object)
    def run(self, job: RenderJob) -> None:
        # Background priority for this thread and those it starts (the engine's workers, OpenMP's
        # pool for refinement): the audio thread and the GUI go first. Once per thread would do;
        # the check is one system call.
        lower_this_thread()
        pin_this_thread(job.cpu)
        if job.cancel.is_set():   # superseded while it waited in the queue
            self.jobDone.emit(job.id, False, "")
            return
        try:
            self._phases(job)
        except UserError as exc:
            self.jobDone.emit(job.id, False, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - report, keep the worker alive for the next job
            self.jobDone.emit(job.id, False, f"rendering failed: {type(exc).__name__}: {exc}")
            return
        self.jobDone.emit(job.id, not job.cancel.is_set(), "")

    def _phases(self, job: RenderJob) -> None:
        cfg = job.refine if job.refine is not None and job.refine.enabled else None
        ready = cfg is not None and all(self.engine.refinement_cached(s, cfg) for s in job.sounds)
        if cfg is None or (job.fast_first and not ready):
            self._render(job, None)
        if cfg is not None:
            self._refine(job, cfg)
            if not job.cancel.is_set():
                self._render(job, cfg)
        if not job.cancel.is_set() and job.variations is not None and job.variations.count > 1:
            self.engine.render_variations(
                *job.engine_sounds(), variations=job.variations, cancel=job.cancel,
                on_variant=lambda midi, layer, rr, key: self.variantReady.emit(job.id, midi, layer, rr, key),
                sample_rate=job.sample_rate, refine=cfg, near_root=job.near_root, workers=job.workers)

    def _refine(self, job: RenderJob, cfg: Any) -> None:
        for sound in job.sounds:
            if job.cancel.is_set():
                return
            if self.engine.refinement_cached(sound, cfg):
                continue
            report = lambda step, steps, name=sound.name: self.refineProgress.emit(job.id, name, step, steps)  # noqa: E731
            report(0, cfg.steps)
            pin_this_thread(None)   # refinement's OpenMP threads start here: every core for them
            try:
                self.engine.refined(sound, cfg, job.cancel, report)
            finally:
                pin_this_thread(job.cpu)

    def _render(self, job: RenderJob, refine: Any | None) -> None:
        """One pass over the keys; ``refine`` None: H's conditioning, else the (cached) refined one."""
        self.engine.render(*job.engine_sounds(), cancel=job.cancel,
                           on_key=lambda midi, key: self.keyReady.emit(job.id, midi, key, refine is not None),
                           sample_rate=job.sample_rate, refine=refine, near_root=job.near_root, workers=job.workers)
