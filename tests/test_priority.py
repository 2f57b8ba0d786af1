"""Thread priorities (engine/priority.py): set on Linux in the calling thread only, harmless
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
    current = priority.thread_nice()
    if current is not None:   # Linux: the calls were made, and refused
        assert in_thread(lambda: priority.lower_this_thread(nice=current + 1)) is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert priority.thread_nice() is None
    assert priority.lower_this_thread() is False

