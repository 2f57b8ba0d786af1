"""Thread priorities: render workers below the audio thread and the GUI.

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

