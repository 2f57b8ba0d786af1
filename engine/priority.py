"""Thread priorities and cores: the audio thread above the render workers, the workers below the rest.

On a machine with few cores the render workers (torch, Python between its ops) and the audio
thread want the same cores; at equal priority the audio thread waits its turn on the run queue and
misses its block. Linux schedules threads, not processes, so each thread sets its own priority
(``os.setpriority`` on its native id) and cores (``os.sched_setaffinity(0, ...)``); threads it
starts later (OpenMP's pool, a thread pool's workers) inherit both. Elsewhere these calls do
nothing and say so. Nothing here raises: a setting the OS refuses leaves the thread as it was.

Sharing a core with a real-time audio thread keeps a render thread from taking the GIL while the
audio thread wants it: the audio thread preempts it there, so the render thread is not running
when the GIL comes free. On another core it runs on, and a thread that releases and retakes the
GIL around every torch op retakes it before the woken audio thread can (CPython's waiting thread
only asks for the GIL after a whole switch interval without any hand-over).
"""
from __future__ import annotations

import os
import sys
import threading

BACKGROUND_NICE = 10     # render workers: CFS/EEVDF give a nice-10 thread ~1/10 of a nice-0 one's share
AUDIO_FIFO_PRIORITY = 20   # SCHED_FIFO priority asked for the audio thread (rtkit allows up to 20)
AUDIO_NICE = -10         # the audio thread's niceness when SCHED_FIFO is refused (needs RLIMIT_NICE)


def _linux() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "setpriority")


def thread_nice() -> int | None:
    """The calling thread's niceness, or None where threads have none of their own (not Linux)."""
    if not _linux():
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return None


def lower_this_thread(nice: int = BACKGROUND_NICE) -> bool:
    """Run the calling thread (and the threads it starts from now on) at niceness ``nice`` or lower
    priority; True if it runs there now.

    Raising one's niceness needs no privilege; it cannot be undone without one, so call it only on
    threads that do background work for good (render workers).
    """
    current = thread_nice()
    if current is None:
        return False
    if current >= nice:
        return True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        return False
    return True


def raise_this_thread(fifo_priority: int = AUDIO_FIFO_PRIORITY, nice: int = AUDIO_NICE) -> str:
    """Give the calling thread (the audio thread) the highest priority the OS grants.

    SCHED_FIFO first (root, CAP_SYS_NICE or an RLIMIT_RTPRIO, as audio groups have), then a negative
    niceness (RLIMIT_NICE), else nothing. Returns what it got: ``"fifo <p>"``, ``"nice <n>"`` or
    ``"normal"``. A system call or two: call it once per thread, not per block.
    """
    if not _linux():
        return "normal"
    try:
        lowest, highest = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
        priority = min(max(fifo_priority, lowest), highest)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))   # 0: the calling thread
        return f"fifo {priority}"
    except (OSError, AttributeError):
        pass
    current = thread_nice()
    if current is not None and current > nice:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            return f"nice {nice}"
        except OSError:
            pass
    return "normal"


def audio_cpu() -> int | None:
    """The core an audio thread pins itself to (the last this process may use), or None where
    threads cannot be pinned or only one core is there."""
    if not _linux() or not hasattr(os, "sched_getaffinity"):
        return None
    try:
        cpus = os.sched_getaffinity(os.getpid())   # the main thread's: the process's own set
    except OSError:
        return None
    return max(cpus) if len(cpus) > 1 else None


def pin_this_thread(cpu: int | None) -> bool:
    """Run the calling thread (and threads it starts from now on) on core ``cpu`` only, or with
    None on every core the process may use; True if that is where it runs now."""
    if not _linux() or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        cpus = {cpu} if cpu is not None else os.sched_getaffinity(os.getpid())
        if os.sched_getaffinity(0) != cpus:
            os.sched_setaffinity(0, cpus)
    except OSError:
        return False
    return True
