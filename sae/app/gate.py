"""At most WORKERS handlers compute at once, whether their event went through Gradio's queue or not.

The slider's event skips the queue: a move is small and frequent, and the queue's per-event machinery (the server's
bookkeeping, a stream of status messages, each making the page copy the state of the components it touched, panels'
pictures included) weighs on every one. Without the queue its concurrency limit no longer bounds the model work, so
every handler that touches a model passes this gate; queued events keep the queue too (its size cap answers a flood of
uploads at once). An unqueued request waits here on one of Gradio's worker threads (40 by default, shared with its own
routes), so at most MAX_WAITING wait; one more is told the server is busy instead of taking the threads the page needs.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import gradio as gr

# One handler per core of a free Space: more on 2 cores only interleave (docs/benchmarks.md: a class of 30 at this).
WORKERS = 2
MAX_WAITING = 32  # a class of 30 with one pending move each (the page keeps only the last), plus the queue's two
BUSY = "The server is busy with many requests at once: try again in a moment."

P = ParamSpec("P")
R = TypeVar("R")


class WorkGate:
    """A bounded semaphore as a decorator: `gate(fn)` runs fn once one of `workers` slots is free (waiting callers go
    in about the order they came; past `max_waiting` waiting, a caller gets `gr.Error(BUSY)` at once)."""

    def __init__(self, workers: int = WORKERS, max_waiting: int = MAX_WAITING):
        if workers < 1 or max_waiting < 0:
            raise ValueError(f"workers must be at least 1 and max_waiting at least 0, got {workers} and {max_waiting}")
        self.workers, self.max_waiting = workers, max_waiting
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._waiting = 0

    def _enter(self) -> None:
        if self._slots.acquire(blocking=False):
            return
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise gr.Error(BUSY)
            self._waiting += 1
        try:
            self._slots.acquire()
        finally:
            with self._lock:
                self._waiting -= 1

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"{fn.__name__}: only a plain function holds its slot while it runs")

        @functools.wraps(fn)  # Gradio reads the wrapped function's signature
        def gated(*args: P.args, **kwargs: P.kwargs) -> R:
            self._enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._slots.release()

        gated.gate = self  # type: ignore[attr-defined]  # which gate a wrapped handler passes (the layout's tests read it)
        return gated
