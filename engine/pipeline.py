"""Two-stage overlap: compute the next batch (G) in a worker thread while this one inverts the last.

Why threads and not more intra-op threads: on a busy 2-core machine, torch ops split over two
OpenMP threads ran 4-28x slower than on one (every parallel region waits at a barrier for a thread
the OS has descheduled; bench/bench_render.py). Two single-threaded stages never wait on each other
inside an op, and torch releases the GIL while it computes, so both cores still do work.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch

A = TypeVar("A")
B = TypeVar("B")
_DONE = object()


def prefetched(fn: Callable[[A], B], items: Sequence[A], stop: threading.Event, depth: int = 1) -> Iterator[B]:
    """Yield ``fn(item)`` for each item, in order, computing up to ``depth`` items ahead in a thread.

    The worker runs under ``torch.inference_mode`` (a thread-local switch) and stops when ``stop``
    is set or the consumer closes the iterator; an exception in ``fn`` is re-raised here.
    """
    results: queue.Queue = queue.Queue(maxsize=depth)

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                results.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            with torch.inference_mode():
                for item in items:
                    if stop.is_set() or not put(fn(item)):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)
            return
        put(_DONE)

    worker = threading.Thread(target=work, name="engine-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            value = results.get()
            if value is _DONE:
                return
            if isinstance(value, BaseException):
                raise value
            yield value
    finally:
        stop.set()
        worker.join()
