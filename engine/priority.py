"""Thread priorities: the audio thread above the render workers, the workers below the rest.

On a machine with few cores the render workers (torch, Python between its ops) and the audio
thread want the same cores; at equal priority the audio thread waits its turn on the run queue and
misses its block. Linux schedules threads, not processes, so each thread sets its own priority
(``os.setpriority`` on its native id); threads it starts later (OpenMP's pool, a thread pool's
workers) inherit it. Elsewhere these calls do nothing and say so. Nothing here raises: a priority
the OS refuses leaves the thread as it was.
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

