"""Render batches on several single-threaded workers at once, delivering results in order.

Why worker threads and not more intra-op threads: on the busy 2-core dev machine, torch ops split
over two OpenMP threads ran 4-28x slower than on one (every parallel region waits at a barrier for
a thread the OS has descheduled; see bench/bench_render.py). Independent single-threaded workers
never wait on each other inside an op, torch releases the GIL while it computes, and a whole batch
(G, then inversion) per worker keeps the cores evenly loaded.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

A = TypeVar("A")
B = TypeVar("B")


def ordered_map(fn: Callable[[A], B], items: Sequence[A], workers: int, stop: threading.Event | None = None) -> Iterator[B]:
    """Yield ``fn(item)`` for each item in order, computing up to ``workers`` items at once.

    Each call runs under ``torch.inference_mode`` (a thread-local switch). Items are started only
    as results are taken (at most ``workers`` ahead), so closing the iterator or setting ``stop``
    wastes at most the batches in flight; an exception in ``fn`` is re-raised here. The pool is
    shut down (and waited for) when the iterator finishes or is closed.
    """
    stop = stop or threading.Event()

    def call(item: A) -> B:
        with torch.inference_mode():
            return fn(item)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="engine-render")
    pending: deque[Future] = deque()
    queue = iter(items)
    try:
        for item in queue:
            pending.append(pool.submit(call, item))
            if len(pending) >= workers:
                break
        while pending:
            result = pending.popleft().result()
            if not stop.is_set():
                for item in queue:
                    pending.append(pool.submit(call, item))
                    break
            yield result
    finally:
        stop.set()
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
