"""Soak of the sampler's playing path, headless: minutes of real-time audio, MIDI, pad moves and saves.

    nice python bench/soak.py                           # 10 minutes, block 256 at 48 kHz, shipped weights on the CPU
    python bench/soak.py --minutes 2 --block 512 --out soak.json
    python bench/soak.py --minutes 2 --no-tracemalloc   # timings without tracemalloc's cost on every allocation
    python bench/soak.py --minutes 2 --no-tracemalloc --switch-interval 0.5   # the GIL handed over every 0.5 ms

The app's own code runs, not a copy. ``AudioOutput``'s VoiceMixer is pulled by a thread paced at real
time, as a sound card pulls it (bench/soak_devices.py). ``MidiInput`` opens a stand-in port whose
thread plays through the app's MidiRouter: notes at random velocities on random channels (32-64 held;
the mixer has the app's 32 voices, so it keeps stealing), the sustain pedal, pitch-bend bursts, all
notes off, all sound off, and garbage (random bytes as mido parses them, sysex, unknown CCs, other
message types, out-of-range or mistyped fields). The ``InstrumentController`` renders with its
RenderWorker QThread, on the CPU with the shipped weights, and installs keys into the mixer as they
land. First a three-sound mix of the demo sounds renders in full with 2 round robins x 2 velocity
layers; then every ``--move-every`` seconds the pad moves to a new mix of 2-4 demo sounds (a newer
request cancels the running one, as dragging the puck does; every ``--settle-every``-th move lets its
render finish, variations included, before the next). Refinement is off (strength 0), so a re-render
is the keys and their variations, not the fitting. Every ``--save-every`` seconds ``InstrumentFiles``
saves the instrument to a temporary .hgi, it is read back (``open_instrument``) and compared, then
opened in the window's way (which re-renders it). The main thread runs a Qt event loop and polls the
output peak 30 times a second, as the level meter does.

Reported (JSON with ``--out``): per block, the callback's time and the response time (from the block
being due to it being written, the wake-up included) against the block period; blocks past their
deadline and what overlapped them (a garbage collection, a key install, a save); MIDI counts;
renders; round trips; RSS and tracemalloc after the first render and at the end; exceptions in any
thread. Exit status 1 when anything failed.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, QSettings, QTimer, Slot  # noqa: E402

from app.audio_output import MIDI, AudioOutput  # noqa: E402
from app.instrument_controller import SLOTS, InstrumentController  # noqa: E402
from app.instrument_files import InstrumentFiles  # noqa: E402
from app.midi_input import MidiInput  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from bench.soak_devices import PacedSoundCard, SoakKeyboard, SoakMidiBackend  # noqa: E402
from bench.soak_report import (ExceptionWatch, GcPauses, Intervals, ThreadCpu, block_report,  # noqa: E402
                               memory_now, rss_kb, summary, top_growth)
from engine.envelope import Envelope  # noqa: E402
from engine.instrument_file import SavedInstrument, open_instrument  # noqa: E402
from engine.key_cache import PLAIN, Variations  # noqa: E402
from models.units import N_KEYS  # noqa: E402

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 10.0
    block_size: int = 256
    sample_rate: int = 48000
    n_voices: int = 32                     # the app's AudioOutput default
    held_notes: tuple[int, int] = (32, 64)
    garbage_share: float = 0.1             # of the keyboard's steps
    move_every_s: float = 8.0
    settle_every: int = 4                  # every n-th move renders to the end (0: never)
    save_every_s: float = 60.0
    variations: Variations = field(default_factory=lambda: Variations(round_robins=2, velocity_layers=2))
    tracemalloc: bool = True
    switch_interval_ms: float | None = None   # the GIL's while audio plays (None: AudioOutput's)
    realtime: bool = True                  # the audio thread asks for real-time priority, as the app's does
    seed: int = 0
    first_render_timeout_s: float = 900.0


class TimedAudioOutput(AudioOutput):
    """The app's AudioOutput, timing each key install (the KeyBank build and swap on the GUI thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.installs = Intervals(1 << 18)

    def set_keys(self, keys: dict, variants: dict | None = None, variations: Variations = PLAIN) -> None:
        t0, cpu = time.perf_counter(), time.thread_time()
        super().set_keys(keys, variants, variations)
        self.installs.add(t0, time.perf_counter() - t0, time.thread_time() - cpu)


class SoundPanelStandIn:
    """What InstrumentFiles asks of the sound panel; envelope and volume reach the audio as the window wires them."""

    def __init__(self, audio: AudioOutput) -> None:
        self.audio, self._envelope, self._volume = audio, Envelope(), 0.5

    def envelope(self) -> Envelope:
        return self._envelope

    def volume(self) -> float:
        return self._volume

    def set_envelope(self, env: Envelope, notify: bool = True) -> None:
        self._envelope = env
        self.audio.set_envelope(env)

    def set_volume(self, gain: float, notify: bool = True) -> None:
        self._volume = gain
        self.audio.set_volume(gain)

    def set_refine(self, strength: float, notify: bool = True) -> None:
        pass

    def set_near_root(self, semitones: int, notify: bool = True) -> None:
        pass


class VariationsPanelStandIn:
    def set_variations(self, v: Variations, notify: bool = True) -> None:
        pass


class JobWatch(QObject):
    """The render worker's keys and ``jobDone``, counted on the GUI thread."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = self.cancelled = self.keys = 0
        self.errors: list[str] = []
        self.last_id = 0

    def landed(self, *_: Any) -> None:
        self.keys += 1

    @Slot(int, bool, str)
    def done(self, job_id: int, finished: bool, error: str) -> None:
        self.last_id = job_id
        if error:
            self.errors.append(error)
        elif finished:
            self.finished += 1
        else:
            self.cancelled += 1


def round_trip_problems(before: SavedInstrument, after: SavedInstrument) -> list[str]:
    """How a saved and reopened instrument differs from what was saved ([] when it does not)."""
    problems = []
    if len(before.sounds) != len(after.sounds):
        return [f"{len(before.sounds)} sounds saved, {len(after.sounds)} read"]
    for a, b in zip(before.sounds, after.sounds):
        same = (a.slot, a.name, a.midi, a.confidence, a.root) == (b.slot, b.name, b.midi, b.confidence, b.root)
        audio = a.audio.sample_rate == b.audio.sample_rate and np.array_equal(a.audio.samples, b.audio.samples)
        if not (same and audio):
            problems.append(f"sound {a.slot} differs")
    for name in ("alpha", "pad", "envelope", "volume", "refine_strength", "near_root", "variations"):
        if getattr(before, name) != getattr(after, name):
            problems.append(f"{name}: {getattr(before, name)} saved, {getattr(after, name)} read")
    return problems


class Soak:
    """The app's objects wired as MainWindow wires them, minus the widgets, plus the stand-in hardware."""

    def __init__(self, cfg: SoakConfig, engine: Any, sound_paths: list[Path], workdir: Path) -> None:
        self.cfg, self.workdir = cfg, workdir
        self.app = QCoreApplication.instance() or QCoreApplication([sys.argv[0]])
        self.rng = random.Random(cfg.seed)
        self.card = PacedSoundCard(cfg.sample_rate, cfg.minutes * 60 + 120)
        self.audio = TimedAudioOutput(self.card, block_size=cfg.block_size, n_voices=cfg.n_voices,
                                      realtime=cfg.realtime)
        self.audio.set_random_round_robin(True)
        self.instrument = InstrumentController(engine, self.audio)
        self.instrument.refine_strength = 0.0
        self.instrument.variations = cfg.variations
        settings = AppSettings(QSettings(str(workdir / "settings.ini"), QSettings.IniFormat))
        self.files = InstrumentFiles(self.instrument, SoundPanelStandIn(self.audio), VariationsPanelStandIn(), settings)
        self.file_failures: list[str] = []
        self.files.failed.connect(self.file_failures.append)
        self.jobs = JobWatch()
        self.instrument._worker.jobDone.connect(self.jobs.done)
        self.instrument._worker.keyReady.connect(self.jobs.landed)
        self.instrument._worker.variantReady.connect(self.jobs.landed)
        self.sounds = [engine.load_sample(p) for p in sound_paths]
        self.keyboards = SoakMidiBackend(lambda cb: SoakKeyboard(cb, cfg.seed + 1, cfg.held_notes, cfg.garbage_share))
        self.midi: MidiInput | None = None
        self.saves = Intervals(4096)
        self.round_trips, self.round_trip_problems = 0, []
        self.moves, self.settling = 0, False
        self.moved_at: list[float] = []
        self.voices = [0, 0, 10**9, 0]   # polls, sum, min, max of the voices sounding
        self.peak_max, self.bad_peaks = 0.0, 0
        self.load: list[float] = []
        self.rss_series: list[tuple[float, int]] = []
        self.thread_cpu = ThreadCpu()

    def spin(self, until: Any, timeout_s: float, tick: Any = None, every_ms: int = 33) -> bool:
        """Run the Qt event loop until ``until()`` (checked every ``every_ms``) or the timeout; True if it came."""
        loop, timer, deadline = QEventLoop(), QTimer(), time.perf_counter() + timeout_s
        came = [False]

        def check() -> None:
            try:                    # an exception in tick (counted by the watch) must not outlive the deadline
                if tick is not None:
                    tick()
                came[0] = bool(until())
            finally:
                if came[0] or time.perf_counter() > deadline:
                    loop.quit()
        timer.timeout.connect(check)
        timer.start(every_ms)
        loop.exec()
        timer.stop()
        return came[0]

    def new_mix(self) -> None:
        """A new mix of 2-4 sounds at a new pad position (or slider position, with two)."""
        chosen = self.rng.sample(self.sounds, self.rng.randint(2, min(4, len(self.sounds))))
        alpha, pad = self.rng.random(), (self.rng.random(), self.rng.random())
        current = [self.instrument.samples[s] for s in self.instrument.filled]
        if len(current) == len(chosen) and all(a is b for a, b in zip(current, chosen)):   # a pad (or slider) move
            self.instrument.set_alpha(alpha) if len(chosen) == 2 else self.instrument.set_pad(*pad)
        else:
            self.instrument.replace_all({slot: (s, s) for slot, s in zip(SLOTS, chosen)}, alpha, pad)

    def first_render(self) -> float:
        """Render a three-sound mix in full (keys and variations); its seconds."""
        t0 = time.perf_counter()
        sounds = self.sounds[:3]
        self.instrument.replace_all({slot: (s, s) for slot, s in zip(SLOTS, sounds)}, 0.5, (0.3, 0.6))
        if not self.spin(lambda: not self.instrument.rendering, self.cfg.first_render_timeout_s):
            raise RuntimeError(f"the first render took over {self.cfg.first_render_timeout_s:.0f} s")
        wanted = (N_KEYS, N_KEYS * (self.cfg.variations.count - 1))
        got = (len(self.instrument.keys), len(self.instrument.variants))
        if got != wanted or self.jobs.errors:
            raise RuntimeError(f"the first render gave {got} keys and variants, not {wanted}: {self.jobs.errors}")
        return time.perf_counter() - t0

    def tick(self) -> None:
        """30 times a second on the GUI thread: the level meter's poll, and what is due."""
        peak = self.audio.read_peak()
        if not math.isfinite(peak) or peak > 1.0:
            self.bad_peaks += 1
        self.peak_max = max(self.peak_max, peak if math.isfinite(peak) else math.inf)
        n, v = len(self.audio.mixer.active_notes()), self.voices
        v[0], v[1], v[2], v[3] = v[0] + 1, v[1] + n, min(v[2], n), max(v[3], n)
        now = time.perf_counter()
        if now >= self.next_cpu_sample:
            self.next_cpu_sample = now + 1.0
            self.thread_cpu.sample()
        if now >= self.next_sample:
            self.next_sample = now + 10.0
            self.load.append(os.getloadavg()[0])
            self.rss_series.append((now, rss_kb()["rss_kb"]))
        if now >= self.next_save:
            self.save_and_reopen()
            self.next_save = time.perf_counter() + self.cfg.save_every_s
        if self.settling:
            if not self.instrument.rendering:
                self.settling = False
                self.next_move = now + self.cfg.move_every_s
        elif now >= self.next_move:
            self.moves += 1
            self.moved_at.append(now)
            self.new_mix()
            self.settling = bool(self.cfg.settle_every) and self.moves % self.cfg.settle_every == 0
            self.next_move = now + self.cfg.move_every_s

    def save_and_reopen(self) -> None:
        """Save as File > Save does, read the file back and compare, then open it as File > Open does."""
        t0 = time.perf_counter()
        path = self.workdir / "soak.hgi"
        before = self.files.current()
        hashes = {slot: self.instrument.detected[slot].content_hash for slot in self.instrument.filled}
        problems = [] if self.files.save(path=path) else ["save failed"]
        if not problems:
            problems = round_trip_problems(before, open_instrument(path))
        if not problems and not self.files.open(path=path):
            problems = ["open failed"]
        reopened = {slot: self.instrument.detected[slot].content_hash for slot in self.instrument.filled}
        if not problems and reopened != hashes:
            problems = ["the reopened sounds' content hashes differ"]
        self.round_trips += 1
        self.round_trip_problems += problems
        self.saves.add(t0, time.perf_counter() - t0)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        watch, pauses, switch_interval = ExceptionWatch(), GcPauses(), sys.getswitchinterval()
        watch.install()
        try:
            if cfg.tracemalloc:
                tracemalloc.start()
            first_s = self.first_render()
            self.audio.open()
            if cfg.switch_interval_ms is not None:
                sys.setswitchinterval(cfg.switch_interval_ms / 1e3)
            self.switch_interval_ms = sys.getswitchinterval() * 1e3
            self.midi = MidiInput(self.keyboards, lambda: self.audio.queue(MIDI))
            self.midi.start()
            mem_start, snap_start = memory_now()   # the instrument rendered, the mixer and the threads running
            if cfg.tracemalloc:
                tracemalloc.reset_peak()
            pauses.install()
            cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            self.next_sample, self.next_cpu_sample, self.next_move = t0, t0, t0 + cfg.move_every_s
            self.thread_cpu.reset()
            self.next_save = t0 + min(cfg.save_every_s, cfg.minutes * 30)
            self.spin(lambda: time.perf_counter() - t0 >= cfg.minutes * 60, cfg.minutes * 60 + 60, self.tick)
            self.thread_cpu.sample()
            pauses.uninstall()
            self.midi.close()
            self.audio_priority = self.audio.audio_priority
            if self.audio.audio_cpu is not None:
                self.audio_priority += f", on core {self.audio.audio_cpu}"
            self.render_workers = self.instrument.render_workers() or self.instrument.engine.workers
            self.audio.close()
            seconds, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
            mem_end, snap_end = memory_now()
            self.instrument.cancel()
            self.spin(lambda: self.jobs.last_id == self.instrument.job.id, 60)
            self.instrument.shutdown()
        finally:
            if pauses in gc.callbacks:
                pauses.uninstall()
            watch.uninstall()
            tracemalloc.stop()
            sys.setswitchinterval(switch_interval)
        cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        return self.report(t0, seconds, cpu_s, first_s, mem_start, mem_end, top_growth(snap_start, snap_end),
                           watch, pauses)

    def report(self, t0: float, seconds: float, cpu_s: float, first_s: float, mem_start: dict, mem_end: dict,
               growth: list, watch: ExceptionWatch, pauses: GcPauses) -> dict[str, Any]:
        stream, kb = self.card.streams[-1], self.keyboards.keyboards[-1]
        times = {k: v[stream.times.due[: stream.times.n] >= t0] for k, v in stream.times.view().items()}
        overlapping = {"gc": pauses.view(), "key_install": self.audio.installs.view(), "save": self.saves.view()}
        blocks = block_report(times, stream.period_s, overlapping)
        half = [(t, r) for t, r in self.rss_series if t >= self.rss_series[0][0] + seconds / 2]
        slope = float(np.polyfit([t / 60 for t, _ in half], [r / 1024 for _, r in half], 1)[0]) if len(half) > 2 else 0.
        mixer = self.audio.mixer
        r = {
            "config": {**asdict(self.cfg), "refine": "off"}, "seconds": seconds, "cpu_cores_used": cpu_s / seconds,
            "thread_cores": self.thread_cpu.cores(seconds),
            "load_average": {"start": self.load[0], "end": self.load[-1], "mean": float(np.mean(self.load)),
                             "max": max(self.load)},
            "blocks": blocks, "resyncs": stream.resyncs, "gc": {**pauses.stats(), "full": pauses.full},
            "installs": self.audio.installs.stats(), "midi": kb.counts, "router_ignored": self.midi.router.ignored,
            "queue_dropped": sum(q.dropped for q in mixer.queues),
            "voices": {"mean": self.voices[1] / max(1, self.voices[0]), "min": self.voices[2], "max": self.voices[3]},
            "peak_max": self.peak_max, "bad_peaks": self.bad_peaks, "first_render_s": first_s, "moves": self.moves,
            "jobs": {"finished": self.jobs.finished, "cancelled": self.jobs.cancelled, "failed": len(self.jobs.errors)},
            "render_errors": self.jobs.errors[:5], "keys_landed": self.jobs.keys,
            "moves_at_s": [round(m - t0, 2) for m in self.moved_at],
            "saves_at_s": [round(float(a - t0), 2) for a in self.saves.view()[0]],
            "retired_held": len(mixer.retired),
            "round_trips": self.round_trips, "round_trip_problems": self.round_trip_problems + self.file_failures,
            "memory": {"start": mem_start, "end": mem_end, "top_growth": growth, "rss_slope_mb_per_min": slope,
                       "rss_mb_every_10_s": [round(r / 1024, 1) for _, r in self.rss_series]},
            "switch_interval_ms": self.switch_interval_ms, "audio_priority": self.audio_priority,
            "render_workers": self.render_workers,
            "exceptions": watch.count, "exception_texts": watch.texts, "qt_warnings": watch.qt_warnings,
            "mixer_errors": mixer.errors,
        }
        r["failed"] = bool(watch.count or mixer.errors or self.jobs.errors or r["round_trip_problems"]
                           or kb.counts["handler_raised"] or kb.counts["valid_ignored"] or self.bad_peaks)
        return r


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--block", type=int, default=256, help="frames per callback")
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--voices", type=int, default=32)
    parser.add_argument("--move-every", type=float, default=8.0, help="seconds between pad moves")
    parser.add_argument("--settle-every", type=int, default=4, help="every n-th move renders to the end (0: never)")
    parser.add_argument("--save-every", type=float, default=60.0, help="seconds between save/reopen round trips")
    parser.add_argument("--round-robins", type=int, default=2)
    parser.add_argument("--velocity-layers", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped assets)")
    parser.add_argument("--render-threads", type=int, default=None, help="engine workers (default: one per core)")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--switch-interval", type=float, default=None, metavar="MS",
                        help="the GIL switch interval while playing (default: the app's, 0.5 ms)")
    parser.add_argument("--no-realtime", action="store_true",
                        help="the audio thread keeps its priority (as for a user the OS refuses real-time to)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.instrument import Engine

    cfg = SoakConfig(minutes=args.minutes, block_size=args.block, sample_rate=args.sample_rate, n_voices=args.voices,
                     move_every_s=args.move_every, settle_every=args.settle_every, save_every_s=args.save_every,
                     variations=Variations(round_robins=args.round_robins, velocity_layers=args.velocity_layers),
                     tracemalloc=not args.no_tracemalloc, switch_interval_ms=args.switch_interval,
                     realtime=not args.no_realtime, seed=args.seed)
    print(f"soak: {asdict(cfg)}; refinement off; CPU; load average {os.getloadavg()[0]:.2f}", flush=True)
    engine = Engine(args.weights, device="cpu", num_threads=args.render_threads)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        report = Soak(cfg, engine, sorted(DEMO.glob("*.wav")), Path(tmp)).run()
    print(summary(report))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
