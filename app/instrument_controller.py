"""The instrument being played: samples A to D, the mix, the key cache, and render requests.

One sound plays alone; two blend by the A <-> B slider's ``alpha``; three or four by the morph pad's
position (``engine.mix.slot_weights``). When a third sound comes, the pad starts where the slider
was (on the edge between the two sounds), and back at two sounds the slider takes the pad's blend.

All engine work for rendering runs on a worker QThread (``RenderWorker``); a newer request cancels
the running one. Keys land one by one in the GUI thread and go straight to the voice mixer: a mix
change keeps the previous keys playable until each is replaced; a new sound drops the previous
sound's keys when its first key lands (until then its own key stands in for every other key).

With refinement on (a strength above 0), a request's quick unrefined keys are followed by
refinement of each sound and a second pass whose keys replace the first ones as they land. A
strength change keeps the keys playing until the refined ones replace them. A root override reloads
the sound's audio at the given root (``Engine.load_sample(..., midi=root)``). ``near_root`` > 0 plays
a single sound itself on the keys around its root (``Engine.render``'s near_root; mixes ignore it).

Velocity layers and round robins (``set_variations``) render after the final keys, in the same
job; they reach the mixer as they land, and the previous request's go when its first key lands.

While audio plays, a CPU render leaves a core to the audio thread: it runs on one worker fewer
than there are cores (at least one; ``render_workers``). Each worker is a Python thread taking the
GIL between torch ops, and with two of them handing it to each other the audio thread waited
for it past its deadline (a waiting thread asks for the GIL only after a whole switch interval
without any hand-over). A single worker shares the real-time audio thread's core
(``AudioOutput.audio_cpu``), where it cannot take the GIL from it (engine/priority.py).
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
from engine.device import cpu_cores
from engine.key_cache import PLAIN, KeySample, VariantKey, Variations
from engine.keys import MAX_NEAR_ROOT
from engine.mix import CORNERS, pad_from_alpha, pad_weights, slot_weights
from models.signal.audio import Audio
from models.errors import UserError
from models.units import N_KEYS, clamp_key

SLOTS = CORNERS


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
    rootChanged = Signal(str, object)        # slot, the sample reloaded at another root
    keysChanged = Signal(object, object)     # rendered notes, notes rendered for the current request
    progress = Signal(int, int)              # keys landed, keys wanted
    refineProgress = Signal(int, int)        # refinement step, steps (of the sound being refined)
    mixMoved = Signal()                      # alpha or pad moved by a sound coming or going
    status = Signal(str)
    _submit = Signal(object)

    def __init__(self, engine: Any | None, audio: AudioOutput, engine_error: str = "",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.engine_error = engine_error
        self.audio = audio
        self.samples: dict[str, Any] = {}
        self.detected: dict[str, Any] = {}   # each slot's sound at its detected root
        self.roots: dict[str, int] = {}      # root overrides (MIDI), per slot
        self.paths: dict[str, Path] = {}
        self.alpha = 0.0
        self.pad = (0.0, 0.0)                # the morph pad's puck (three or four sounds)
        self.refine_strength = 1.0           # 0: no refinement; 1: the engine's default
        self.near_root = 0                   # semitones around a single sound's root that play the sound itself
        self.keys: dict[int, KeySample] = {}
        self.variations: Variations = PLAIN  # velocity layers and round robins (rendered after the keys)
        self.variants: dict[VariantKey, KeySample] = {}
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
            self._worker.variantReady.connect(self._on_variant)
            self._worker.refineProgress.connect(self._on_refine)
            self._worker.jobDone.connect(self._on_done)
            self._thread.start()

    # -- requests from the window -----------------------------------------------------------------
    def load(self, slot: str, path: str | Path, root: int | None = None, keep_mix: bool = False) -> bool:
        """Load ``path`` into ``slot`` (at ``root``, else the detected one) and re-render.

        On failure the slot keeps its previous sound. ``keep_mix`` leaves alpha and the pad as they are
        (restoring a session) instead of carrying the blend over to the pad or the slider.
        """
        path = Path(path)
        try:
            sample = self.engine.load_sample(path) if self.engine is not None else preview_sound(path)
        except UserError as exc:
            self.sampleFailed.emit(slot, str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - a decoder crash on a strange file is the file's fault
            self.sampleFailed.emit(slot, f"{path.name}: cannot be read ({type(exc).__name__}: {exc})")
            return False
        before = self.filled
        self.detected[slot] = sample
        self.roots.pop(slot, None)
        if root is not None and self.engine is not None and root != sample.root_note:
            sample = self._at_root(sample, root)
            self.roots[slot] = sample.root_note
        self.samples[slot] = sample
        self.paths[slot] = path
        self.sampleChanged.emit(slot, sample)
        if not keep_mix:
            self._carry_mix(before)
        self.request(fresh=True)
        return True

    def replace_all(self, sounds: dict[str, tuple[Any, Any]], alpha: float, pad: tuple[float, float],
                    paths: dict[str, Path] | None = None) -> None:
        """Swap in a whole instrument: slot -> (sound at its detected pitch, sound as played); re-render."""
        for slot in SLOTS:
            self.samples.pop(slot, None)
            self.detected.pop(slot, None)
            self.roots.pop(slot, None)
            self.paths.pop(slot, None)
        for slot, (detected, played) in sounds.items():
            self.detected[slot], self.samples[slot] = detected, played
            if played is not detected:
                self.roots[slot] = played.root_note
            if paths and slot in paths:
                self.paths[slot] = paths[slot]
        self.alpha, self.pad = min(max(float(alpha), 0.0), 1.0), pad
        for slot in SLOTS:
            self.sampleChanged.emit(slot, self.samples.get(slot))
        self.mixMoved.emit()
        if self.samples:
            self.request(fresh=True)

    def set_root(self, slot: str, root: int | None) -> None:
        """Play ``slot``'s sound as if its pitch were MIDI ``root`` (None: the detected pitch); re-render."""
        detected = self.detected.get(slot)
        if detected is None or self.engine is None:
            return
        if root is None or int(root) == detected.root_note:
            sample = detected
            self.roots.pop(slot, None)
        else:
            sample = self._at_root(detected, int(root))
            self.roots[slot] = sample.root_note
        moved = sample.root_note != self.samples[slot].root_note
        self.samples[slot] = sample
        self.rootChanged.emit(slot, sample)
        if moved:
            self.request(fresh=False)

    def _at_root(self, sample: Any, root: int) -> Any:
        """The same audio, reloaded with its pitch given as ``root`` (no file read, no pitch estimate)."""
        return self.engine.load_sample(sample.audio, name=sample.name, midi=float(min(max(root, 21), 108)))

    def set_refine_strength(self, strength: float) -> None:
        """Refinement strength in [0, 2] (0: off); re-renders, keeping the keys playing until replaced."""
        strength = min(max(float(strength), 0.0), 2.0)
        if strength == self.refine_strength:
            return
        settled = self.complete
        self.refine_strength = strength
        if self.samples:
            # Keys that are all this sound's already are better than unrefined ones: refine straight away.
            self.request(fresh=False, fast_first=not settled)

    def set_near_root(self, semitones: int) -> None:
        """Keys within ``semitones`` of the root play the sound itself (0: off); re-renders a single sound
        (a mix ignores it), keeping the keys playing until replaced."""
        semitones = min(max(int(semitones), 0), MAX_NEAR_ROOT)
        if semitones == self.near_root:
            return
        settled = self.complete
        self.near_root = semitones
        if len(self.samples) == 1:
            self.request(fresh=False, fast_first=not settled)

    def refine_config(self) -> Any | None:
        """The engine's refinement at the chosen strength, or None when it is off."""
        if self.refine_strength <= 0:
            return None
        from engine.refine import DEFAULT_REFINEMENT

        return DEFAULT_REFINEMENT.at_strength(self.refine_strength)

    def clear(self, slot: str) -> None:
        before = self.filled
        if self.samples.pop(slot, None) is None:
            return
        self.paths.pop(slot, None)
        self.detected.pop(slot, None)
        self.roots.pop(slot, None)
        self.sampleChanged.emit(slot, None)
        self._carry_mix(before)
        if not self.samples:
            self.cancel()
            self.variants = {}
            self._replace_keys({}, set())
            self.progress.emit(0, N_KEYS)
            self.status.emit("Drop a sound on A to play it")
        else:
            self.request(fresh=True)

    def set_variations(self, variations: Variations) -> None:
        """Velocity layers and round robins per key; re-renders, keeping the keys playing until replaced."""
        if variations == self.variations:
            return
        self.variations = variations
        if self.samples:
            self.request(fresh=False, fast_first=False)

    def set_alpha(self, alpha: float) -> None:
        alpha = min(max(float(alpha), 0.0), 1.0)
        if alpha == self.alpha:
            return
        self.alpha = alpha
        if len(self.samples) == 2:
            self.request(fresh=False)

    def set_pad(self, x: float, y: float) -> None:
        """Move the morph pad's puck (each in [0, 1]); with three or four sounds, re-render."""
        pad = (min(max(float(x), 0.0), 1.0), min(max(float(y), 0.0), 1.0))
        if pad == self.pad:
            return
        self.pad = pad
        if len(self.samples) >= 3:
            self.request(fresh=False)

    @property
    def filled(self) -> list[str]:
        """The slots holding a sound, in pad-corner order."""
        return [s for s in SLOTS if s in self.samples]

    def weights(self) -> dict[str, float]:
        """Each filled slot's weight in the mix (together 1); empty without sounds."""
        return slot_weights(self.filled, self.alpha, self.pad) if self.samples else {}

    def _carry_mix(self, before: list[str]) -> None:
        """Keep the blend across the slider <-> pad switch when a third sound comes or goes."""
        after = self.filled
        if len(before) == 2 and len(after) == 3:
            self.pad = pad_from_alpha(before[0], before[1], self.alpha)
        elif len(before) == 3 and len(after) == 2:
            self.alpha = pad_weights(*self.pad, after)[after[1]]
        else:
            return
        self.mixMoved.emit()

    def request(self, fresh: bool, fast_first: bool = True) -> RenderJob | None:
        """Start rendering the current sound (cancelling the running render); None if nothing to do.

        ``fast_first`` False skips the unrefined pass when refinement is on (see ``RenderJob``).
        """
        previous = self.job
        if previous is not None and self.rendering and previous.fresh and previous.landed == 0:
            fresh = True          # the keys playing are still the sound before the running request's
        self.cancel()
        if self.engine is None:
            self.status.emit(f"No model installed: {self.engine_error}" if self.engine_error else "No model installed")
            return None
        if not self.samples:
            return None
        weights, workers = self.weights(), self.render_workers()
        job = RenderJob(next(self._ids), tuple(self.samples[s] for s in weights), tuple(weights.values()),
                        self.audio.sample_rate, fresh, refine=self.refine_config(), fast_first=fast_first,
                        variations=self.variations, near_root=self.near_root, workers=workers,
                        cpu=self.audio.audio_cpu if workers == 1 else None)
        self.job = job
        self.rendering = True
        self.fresh = set()        # the keys playing now are stale until this request's replace them
        self.keysChanged.emit(set(self.keys), set())
        self.progress.emit(0, N_KEYS)
        self.status.emit(f"Rendering {self._describe(job)}\u2026")
        self._submit.emit(job)
        return job

    def render_workers(self) -> int | None:
        """Render workers for a new job: on the CPU while a stream plays, the engine's but at most
        cores - 1 (at least 1); else None (the engine's own)."""
        device = getattr(self.engine, "device", None)
        if self.audio.stream is None or getattr(device, "type", "cpu") != "cpu":
            return None
        return max(1, min(getattr(self.engine, "workers", 1), cpu_cores() - 1))

    @staticmethod
    def _describe(job: RenderJob) -> str:
        a, b = job.sample_a, job.sample_b
        if len(job.sounds) > 2:
            return " + ".join(f"{s.name} {100 * w:.0f} %" for s, w in zip(job.sounds, job.weights))
        return a.name if b is None else f"{a.name} \u2194 {b.name} at {100 * job.alpha:.0f} %"

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
        self.rendering = False

    def pack_name(self) -> str:
        """A name for an export: the sound's name, or the names and the mix."""
        weights = self.weights()
        if not weights:
            return "hypergan"
        names = [self.samples[s].name for s in weights]
        if len(names) == 1:
            return names[0]
        if len(names) == 2:
            return f"{names[0]}-{names[1]}-{100 * self.alpha:.0f}"
        return "-".join(names + [f"{100 * w:.0f}" for w in weights.values()])

    @property
    def complete(self) -> bool:
        """Every key of the current request landed (the refined ones, when refinement is on)."""
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
    def _on_key(self, job_id: int, midi: int, key: KeySample, refined: bool) -> None:
        job = self.job
        if job is None or job.id != job_id or job.cancel.is_set():
            return   # a superseded job's key: its replacement is on the way
        if job.fresh and job.landed == 0:
            keys, fresh = {}, set()   # a new sound: the old sound's keys go now
        else:
            keys, fresh = dict(self.keys), set(self.fresh)
        if job.landed == 0:
            self.variants = {}        # the previous request's layers would not match the new keys
        if refined and job.refined_landed == 0:
            fresh = set()             # the unrefined keys stay playable until each is replaced
            self.status.emit(f"Rendering the refined keys of {self._describe(job)}\u2026")
        job.landed += 1
        job.refined_landed += refined
        keys[midi] = key
        fresh.add(midi)
        self._replace_keys(keys, fresh)
        self.progress.emit(len(fresh), N_KEYS)

    def _on_variant(self, job_id: int, midi: int, layer: int, rr: int, key: KeySample) -> None:
        job = self.job
        if job is None or job.id != job_id or job.cancel.is_set():
            return
        self.variants[(midi, layer, rr)] = key
        self.audio.set_keys(self.keys, self.variants, self.variations)
        total = N_KEYS * (self.variations.count - 1)
        if len(self.variants) % 8 == 1 or len(self.variants) == total:
            self.status.emit(f"Rendering velocity layers and round robins\u2026 {len(self.variants)}/{total}")

    def _on_refine(self, job_id: int, name: str, step: int, steps: int) -> None:
        job = self.job
        if job is None or job.id != job_id or job.cancel.is_set():
            return
        self.status.emit(f"Refining {name}\u2026 step {step}/{steps}" if steps else f"Refining {name}\u2026")
        self.refineProgress.emit(step, steps)

    def _on_done(self, job_id: int, finished: bool, error: str) -> None:
        job = self.job
        if job is None or job.id != job_id:
            return
        self.rendering = False
        if error:
            self.status.emit(f"Render failed: {error}")
        elif finished:
            refined = " (refined)" if job.refined_landed else ""
            extra = f" + {len(self.variants)} layer and round-robin samples" if self.variants else ""
            self.status.emit(f"{len(self.fresh)} keys{extra} rendered in "
                             f"{time.perf_counter() - job.started_s:.1f} s{refined}")
        self.keysChanged.emit(set(self.keys), set(self.fresh))

    def _replace_keys(self, keys: dict[int, KeySample], fresh: set[int]) -> None:
        self.keys, self.fresh = keys, fresh
        self.audio.set_keys(keys, self.variants, self.variations)
        self.keysChanged.emit(set(keys), set(fresh))
