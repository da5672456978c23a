"""At most WORKERS handlers compute at once, whether their event went through Gradio's queue or not.

The slider's event skips the queue: a move is small and frequent, and the queue's per-event machinery (the server's
bookkeeping, a stream of status messages, each making the page copy the state of the components it touched, panels'
pictures included) weighs on every one. Without the queue its concurrency limit no longer bounds the model work, so
every handler that touches a model passes this gate; queued events keep the queue too (its size cap answers a flood of
uploads at once).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

# One handler per core of a free Space: more on 2 cores only interleave (docs/benchmarks.md: a class of 30 at this).
WORKERS = 2

P = ParamSpec("P")
R = TypeVar("R")


class WorkGate:
    """A bounded semaphore as a decorator: `gate(fn)` runs fn once one of `workers` slots is free (waiting callers go
    in about the order they came)."""

    def __init__(self, workers: int = WORKERS):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._slots = threading.BoundedSemaphore(workers)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)  # Gradio reads the wrapped function's signature
        def gated(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._slots:
                return fn(*args, **kwargs)

        gated.gate = self  # which gate a wrapped handler passes (the layout's tests read it)
        return gated
