"""Thread priorities and cores (engine/priority.py): set on Linux in the calling thread only, harmless
where the OS refuses or has no such thing. Each test changes a thread of its own, never pytest's."""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

import engine.priority as priority
from engine.pipeline import ordered_map

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are Linux's")


def in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` run in a new thread (which then ends, taking its priority with it); its result."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join(10)
    return out[0]


def refuse(*_: Any) -> None:
    raise PermissionError(1, "Operation not permitted")


@linux_only
def test_a_worker_lowers_only_its_own_thread() -> None:
    before = priority.thread_nice()
    lowered, nice = in_thread(lambda: (priority.lower_this_thread(), priority.thread_nice()))
    assert lowered and nice >= priority.BACKGROUND_NICE
    assert priority.thread_nice() == before            # the calling thread kept its priority
    assert in_thread(lambda: priority.lower_this_thread(nice=5) and priority.thread_nice()) >= 5


@linux_only
def test_ordered_map_workers_run_at_background_priority() -> None:
    nices = list(ordered_map(lambda _: priority.thread_nice(), range(4), workers=2))
    assert all(n >= priority.BACKGROUND_NICE for n in nices)


def test_refused_or_absent_priorities_change_nothing_and_never_raise(monkeypatch) -> None:
    monkeypatch.setattr(os, "setpriority", refuse)
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(os, "sched_setaffinity", refuse, raising=False)
    current = priority.thread_nice()
    if current is not None:   # Linux: the calls were made, and refused
        assert in_thread(lambda: priority.lower_this_thread(nice=current + 1)) is False
        assert in_thread(priority.raise_this_thread) == "normal"
        if len(os.sched_getaffinity(0)) > 1:   # on one core it is there already: nothing to ask
            assert in_thread(lambda: priority.pin_this_thread(0)) is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert priority.thread_nice() is None and priority.audio_cpu() is None
    assert priority.lower_this_thread() is False and priority.raise_this_thread() == "normal"
    assert priority.pin_this_thread(0) is False


@linux_only
def test_raise_asks_for_fifo_then_a_negative_nice(monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: asked.append((pid, policy)))
    assert in_thread(priority.raise_this_thread) == f"fifo {priority.AUDIO_FIFO_PRIORITY}"
    assert asked == [(0, os.SCHED_FIFO)]                # 0: the calling thread
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    niced = []
    monkeypatch.setattr(os, "setpriority", lambda which, who, nice: niced.append((who, nice)))
    result, tid = in_thread(lambda: (priority.raise_this_thread(), threading.get_native_id()))
    assert result == f"nice {priority.AUDIO_NICE}" and niced == [(tid, priority.AUDIO_NICE)]


@linux_only
def test_raise_for_real_gets_what_the_os_grants() -> None:
    def ask() -> tuple[str, int, int]:
        return priority.raise_this_thread(), os.sched_getscheduler(0), priority.thread_nice()

    result, policy, nice = in_thread(ask)
    if result.startswith("fifo"):
        assert policy == os.SCHED_FIFO
    elif result.startswith("nice"):
        assert nice == priority.AUDIO_NICE
    else:
        assert result == "normal" and policy == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER   # pytest's thread untouched


@linux_only
def test_pin_to_one_core_and_back_to_all() -> None:
    every = os.sched_getaffinity(0)
    core = max(every)

    def pin_and_unpin() -> tuple[set, set]:
        assert priority.pin_this_thread(core)
        pinned = os.sched_getaffinity(0)
        assert priority.pin_this_thread(None)
        return pinned, os.sched_getaffinity(0)

    assert in_thread(pin_and_unpin) == ({core}, every)
    assert os.sched_getaffinity(0) == every
    assert priority.audio_cpu() == (core if len(every) > 1 else None)
