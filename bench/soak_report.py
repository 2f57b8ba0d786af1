"""The soak's watchers and numbers: exceptions in any thread, garbage-collection pauses, memory, and
the block timings against their deadline (with what overlapped the late blocks)."""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
import traceback
from typing import Any

import numpy as np

MS = 1e3


class ExceptionWatch:
    """Counts exceptions escaping any thread (threading and sys hooks, unraisable ones, Qt slots
    through ``sys.excepthook``) and Qt warnings; keeps the first few tracebacks."""

    KEEP = 5

    def __init__(self) -> None:
        self.count = 0
        self.qt_warnings = 0
        self.texts: list[str] = []
        self._old: tuple = ()

    def install(self) -> None:
        from PySide6.QtCore import qInstallMessageHandler

        self._old = (threading.excepthook, sys.excepthook, sys.unraisablehook)
        threading.excepthook = lambda a: self._record(f"thread {a.thread.name if a.thread else '?'}",
                                                      a.exc_type, a.exc_value, a.exc_traceback)
        sys.excepthook = lambda t, v, tb: self._record("main", t, v, tb)
        sys.unraisablehook = lambda u: self._record(f"unraisable ({u.err_msg})", type(u.exc_value), u.exc_value,
                                                    u.exc_traceback)
        self._old_qt = qInstallMessageHandler(self._qt_message)

    def uninstall(self) -> None:
        from PySide6.QtCore import qInstallMessageHandler

        threading.excepthook, sys.excepthook, sys.unraisablehook = self._old
        qInstallMessageHandler(self._old_qt)

    def _record(self, where: str, kind: Any, value: Any, tb: Any) -> None:
        self.count += 1
        if len(self.texts) < self.KEEP:
            self.texts.append(f"{where}: " + "".join(traceback.format_exception(kind, value, tb)))

    def _qt_message(self, mode: Any, context: Any, message: str) -> None:
        from PySide6.QtCore import QtMsgType

        if mode != QtMsgType.QtDebugMsg and mode != QtMsgType.QtInfoMsg:
            self.qt_warnings += 1
            if len(self.texts) < self.KEEP:
                self.texts.append(f"Qt: {message}")


class Intervals:
    """(start, duration, CPU seconds of the thread) in preallocated arrays; ``add`` past capacity only counts."""

    def __init__(self, capacity: int) -> None:
        self.start, self.duration, self.cpu = np.zeros(capacity), np.zeros(capacity), np.zeros(capacity)
        self.n = 0

    def add(self, start: float, duration: float, cpu: float = 0.0) -> None:
        i = self.n
        if i < len(self.start):
            self.start[i], self.duration[i], self.cpu[i] = start, duration, cpu
        self.n = i + 1

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        n = min(self.n, len(self.start))
        return self.start[:n], self.start[:n] + self.duration[:n]

    def stats(self) -> dict[str, float]:
        d, cpu = self.duration[: min(self.n, len(self.start))], self.cpu[: min(self.n, len(self.start))]
        if not len(d):
            return {"count": 0, "median_ms": 0.0, "max_ms": 0.0, "total_s": 0.0, "cpu_median_ms": 0.0}
        return {"count": self.n, "median_ms": float(np.median(d) * MS), "max_ms": float(d.max() * MS),
                "total_s": float(d.sum()), "cpu_median_ms": float(np.median(cpu) * MS)}


class GcPauses(Intervals):
    """Every garbage collection (``gc.callbacks``), in whichever thread it ran; full ones counted apart."""

    def __init__(self, capacity: int = 1 << 18) -> None:
        super().__init__(capacity)
        self.full = 0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.add(self._t0, time.perf_counter() - self._t0)
            self.full += info.get("generation") == 2

    def install(self) -> None:
        gc.callbacks.append(self)

    def uninstall(self) -> None:
        gc.callbacks.remove(self)


def rss_kb() -> dict[str, int]:
    """Resident set size now and its peak (``VmRSS``, ``VmHWM`` from /proc/self/status), in kB."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return {"rss_kb": out.get("VmRSS", 0), "rss_peak_kb": out.get("VmHWM", 0)}


class ThreadCpu:
    """CPU seconds per thread name, from /proc/self/task sampled now and then (nothing without /proc).

    A thread's name is Python's where it is a Python thread, else the OS's (Qt names its QThreads).
    Threads come and go (the render pool lives for one pass), so each sample adds what every thread
    used since the previous one; a thread born since counts from zero, and what one used between
    the last sample and its exit is lost.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._last: dict[int, float] = {}
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def sample(self) -> None:
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            return
        # Python's names, except the "Dummy-N" it gives foreign threads (Qt's) that ran Python code.
        names, now = {t.native_id: t.name for t in threading.enumerate() if not t.name.startswith("Dummy-")}, {}
        for tid in map(int, tids):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue   # exited since the listing
            fields = stat[stat.rindex(")") + 2:].split()
            now[tid] = (int(fields[11]) + int(fields[12])) / self._tick   # utime + stime
            name = names.get(tid) or stat[stat.index("(") + 1: stat.rindex(")")]
            self.totals[name] = self.totals.get(name, 0.0) + now[tid] - self._last.get(tid, 0.0)
        self._last = now

    def reset(self) -> None:
        """Count from now on."""
        self.sample()
        self.totals = {}

    def cores(self, seconds: float) -> dict[str, float]:
        """Cores each thread name used on average over ``seconds``, busiest first."""
        return {k: round(v / seconds, 3) for k, v in sorted(self.totals.items(), key=lambda kv: -kv[1]) if v > 0}


def memory_now() -> tuple[dict[str, Any], Any]:
    """RSS and tracemalloc's current/peak (after a full collection), and a snapshot (None when off)."""
    gc.collect()
    mem: dict[str, Any] = rss_kb()
    snapshot = None
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        mem.update(traced_kb=current // 1024, traced_peak_kb=peak // 1024)
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    return mem, snapshot


def top_growth(start: Any, end: Any, n: int = 10) -> list[dict[str, Any]]:
    """The files whose live traced memory grew most from ``start`` to ``end``."""
    if start is None or end is None:
        return []
    stats = sorted(end.compare_to(start, "filename"), key=lambda s: -s.size_diff)[:n]
    return [{"file": s.traceback[0].filename, "kb": round(s.size_diff / 1024, 1), "blocks": s.count_diff}
            for s in stats]


def _overlaps(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """For each interval [a0, a1): whether any [b0, b1) overlaps it."""
    if len(b0) == 0 or len(a0) == 0:
        return np.zeros(len(a0), bool)
    order = np.argsort(b0)
    b0, b1 = b0[order], np.maximum.accumulate(b1[order])
    # The last b starting before a1 reaches furthest among those: it overlaps iff it ends after a0.
    last = np.searchsorted(b0, a1) - 1
    return (last >= 0) & (b1[np.maximum(last, 0)] > a0)


def block_report(t: dict[str, np.ndarray], period_s: float, overlapping: dict[str, tuple]) -> dict[str, Any]:
    """Callback and response times against the period; the late blocks and what overlapped them."""
    callback, response = t["end"] - t["start"], t["end"] - t["due"]
    late = response > period_s
    pct = lambda x, q: float(np.percentile(x, q) * MS) if len(x) else 0.0  # noqa: E731

    def spread(x: np.ndarray) -> dict[str, float]:
        return {"median_ms": pct(x, 50), "p99_ms": pct(x, 99), "p999_ms": pct(x, 99.9),
                "max_ms": float(x.max() * MS) if len(x) else 0.0}

    wall = response[late]
    cpu, rq = t["cpu"][late], np.minimum(t["runqueue"][late], wall)   # rq: since the previous block ended
    report = {"blocks": int(len(callback)), "period_ms": period_s * MS, "callback": spread(callback),
              "callback_cpu": spread(t["cpu"]), "response": spread(response),
              "over_deadline": int(late.sum()), "callback_over_period": int((callback > period_s).sum()),
              "late_split_s": {"cpu": float(cpu.sum()), "runqueue": float(rq.sum()),
                               "other_gil_or_sleep": float(np.maximum(wall - cpu - rq, 0).sum())}}
    report["late_overlapping"] = {name: int(_overlaps(t["due"][late], t["end"][late], b0, b1).sum())
                                  for name, (b0, b1) in overlapping.items()}
    worst = np.argsort(response)[::-1][:12]
    t0 = t["due"][0] if len(t["due"]) else 0.0
    report["worst"] = [{"at_s": round(float(t["due"][i] - t0), 3), "response_ms": round(float(response[i] * MS), 2),
                        "callback_ms": round(float(callback[i] * MS), 2)} for i in worst if late[i]]
    return report


def _spread(name: str, d: dict[str, float]) -> str:
    return f"{name} ms: median {d['median_ms']:.3f}  p99 {d['p99_ms']:.3f}  p99.9 {d['p999_ms']:.3f}  max {d['max_ms']:.2f}"


def summary(r: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    b, m, midi, cfg, load, gcs, inst = r["blocks"], r["memory"], r["midi"], r["config"], r["load_average"], r["gc"], \
        r["installs"]
    mb = lambda kb: f"{kb / 1024:.1f}"  # noqa: E731
    lines = [
        f"{r['seconds']:.0f} s, block {cfg['block_size']} at {cfg['sample_rate']} Hz (period {b['period_ms']:.2f} ms), "
        f"{cfg['n_voices']} voices; load average {load['mean']:.2f} (max {load['max']:.2f}); "
        f"process CPU {r['cpu_cores_used']:.2f} cores; GIL switch interval {r['switch_interval_ms']:g} ms; "
        f"audio thread priority {r['audio_priority']}; render workers while playing {r['render_workers']}",
        "threads' cores: " + ", ".join(f"{name} {cores:.2f}" for name, cores in r["thread_cores"].items()),
        f"blocks {b['blocks']}, over deadline {b['over_deadline']} ({100 * b['over_deadline'] / max(1, b['blocks']):.3f} %)"
        f", callback over the period {b['callback_over_period']}, resyncs {r['resyncs']}",
        _spread("callback", b["callback"]), _spread("callback CPU", b["callback_cpu"]),
        _spread("response (due -> written)", b["response"]),
        "late blocks' time s: callback CPU {cpu:.2f}, run queue {runqueue:.2f}, other (GIL, sleep) "
        "{other_gil_or_sleep:.2f}".format(**b["late_split_s"]) + f"; late blocks overlapping {b['late_overlapping']}",
        "worst late blocks (at s: response / callback ms): " + ", ".join(
            f"{w['at_s']:.1f}: {w['response_ms']:.1f}/{w['callback_ms']:.1f}" for w in b["worst"][:6]),
        f"gc: {gcs['count']} collections ({gcs['full']} full), median {gcs['median_ms']:.2f} ms, max {gcs['max_ms']:.1f} ms"
        f"; key installs: {inst['count']}, median {inst['median_ms']:.2f} ms (CPU {inst['cpu_median_ms']:.2f} ms), "
        f"max {inst['max_ms']:.1f} ms, {inst['total_s']:.1f} s in all",
        f"MIDI: {midi['note_on']} note-ons, {midi['note_off']} note-offs, {midi['sustain']} sustain, "
        f"{midi['pitchwheel']} bends, {midi['all_notes_off']} all-notes-off, {midi['all_sound_off']} all-sound-off; "
        f"garbage {midi['garbage']} (mido rejected {midi['garbage_rejected_by_mido']}, routed "
        f"{midi['garbage_routed']}, mido errors {midi['mido_errors']}); router ignored {r['router_ignored']}; "
        f"valid ignored {midi['valid_ignored']}, handler raised {midi['handler_raised']}; "
        f"queue drops {r['queue_dropped']}",
        f"voices sounding: mean {r['voices']['mean']:.1f}, min {r['voices']['min']}, max {r['voices']['max']}; "
        f"output peak max {r['peak_max']:.3f}, bad peaks {r['bad_peaks']}",
        f"renders: first {r['first_render_s']:.1f} s; moves {r['moves']}, jobs done {r['jobs']['finished']}, "
        f"cancelled {r['jobs']['cancelled']}, failed {r['jobs']['failed']}; keys landed {r['keys_landed']}",
        f"save/reopen round trips {r['round_trips']} ({len(r['round_trip_problems'])} problems)",
        f"RSS MB: start {mb(m['start']['rss_kb'])}, end {mb(m['end']['rss_kb'])}, peak {mb(m['end']['rss_peak_kb'])}; "
        f"growth over the second half {m['rss_slope_mb_per_min']:.2f} MB/min",
    ]
    if "traced_kb" in m["start"]:
        lines.append(f"tracemalloc MB: start {mb(m['start']['traced_kb'])} (peak {mb(m['start']['traced_peak_kb'])}), "
                     f"end {mb(m['end']['traced_kb'])} (peak since start {mb(m['end']['traced_peak_kb'])})")
        lines += [f"  {g['kb']:+10.1f} kB {g['blocks']:+7d} blocks  {g['file']}" for g in m["top_growth"][:6]]
    lines.append(f"exceptions {r['exceptions']}, mixer errors {r['mixer_errors']}, Qt warnings {r['qt_warnings']}: "
                 f"{'FAILED' if r['failed'] else 'ok'}")
    lines += [f"  {text.strip()}" for text in r["exception_texts"]]
    return "\n".join(lines)
