"""Render batches on several single-threaded workers at once, delivering results in order.

Why worker threads and not more intra-op threads: on the busy 2-core dev machine, torch ops split
over two OpenMP threads ran 4-28x slower than on one (every parallel region waits at a barrier for
a thread the OS has descheduled; see bench/bench_render.py). Independent single-threaded workers
never wait on each other inside an op, torch releases the GIL while it computes, and a whole batch
(G, then inversion) per worker keeps the cores evenly loaded.

Workers run at background priority (``engine.priority.lower_this_thread``): on a busy machine the
audio thread and the GUI go first, and a render only takes the cores they leave.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

from engine.priority import lower_this_thread

A = TypeVar("A")
B = TypeVar("B")
_END = object()


def ordered_map(fn: Callable[[A], B], items: Sequence[A], workers: int, stop: threading.Event | None = None) -> Iterator[B]:
    """Yield ``fn(item)`` for each item in order, computing up to ``workers`` items at once.

    Each call runs under ``torch.inference_mode`` (a thread-local switch). The first item runs
    alone, so nothing slows it down; then ``workers`` stay in flight, refilled as results are taken.
    Closing the iterator or setting ``stop`` wastes at most the items in flight; an exception in
    ``fn`` is re-raised here. The pool is shut down (and waited for) when the iterator ends or closes.
    """
    stop = stop or threading.Event()

    def call(item: A) -> B:
        with torch.inference_mode():
            return fn(item)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="engine-render",
                              initializer=lower_this_thread)
    pending: deque[Future] = deque()
    queue = iter(items)

    def refill(limit: int) -> None:
        while len(pending) < limit and not stop.is_set():
            item = next(queue, _END)
            if item is _END:
                return
            pending.append(pool.submit(call, item))

    try:
        refill(1)   # the first item runs alone: it is what the player is waiting for
        while pending:
            result = pending.popleft().result()
            refill(max(1, workers))
            yield result
    finally:
        stop.set()
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
