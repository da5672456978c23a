"""The work gate (sae.app.gate): at most `workers` gated calls run at once, every call runs and returns its own result,
and Gradio still sees the handler's signature."""

from __future__ import annotations

import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sae.app.gate import WORKERS, WorkGate


def test_at_most_workers_calls_run_at_once():
    gate = WorkGate(2)
    lock, running, most = threading.Lock(), [0], [0]

    @gate
    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i * i

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(16)))
    assert results == [i * i for i in range(16)] and most[0] == 2  # eight callers, two at a time, none lost


def test_a_failing_call_frees_its_slot():
    gate = WorkGate(1)

    @gate
    def fails() -> None:
        raise RuntimeError("bad upload")

    for _ in range(3):  # a slot kept by a failure would block the second call forever
        with pytest.raises(RuntimeError):
            fails()
    assert gate(lambda: "served")() == "served"


def test_the_wrapped_handler_keeps_its_signature_and_names_its_gate():
    def handler(ref: object, model_name: str, *controls: object) -> tuple:
        return (ref, model_name, controls)

    gate = WorkGate()
    wrapped = gate(handler)
    assert inspect.signature(wrapped) == inspect.signature(handler) and wrapped.__name__ == "handler"
    assert wrapped.gate is gate and gate.workers == WORKERS and wrapped(1, "m", 2, 3) == (1, "m", (2, 3))


def test_no_worker_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        WorkGate(0)


def test_past_max_waiting_a_caller_is_told_the_server_is_busy():
    import gradio as gr

    gate = WorkGate(1, max_waiting=1)
    started, release = threading.Event(), threading.Event()

    @gate
    def hold() -> str:
        started.set()
        release.wait(10)
        return "done"

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(hold)
        started.wait(10)
        waiting = pool.submit(hold)  # takes the one waiting place
        deadline = time.monotonic() + 10
        while gate._waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(gr.Error, match="busy"):
            hold()  # a third caller is refused at once, holding no thread
        release.set()
        assert running.result(10) == waiting.result(10) == "done"
    assert gate(lambda: "served")() == "served"  # every slot and waiting place given back


def test_a_generator_or_coroutine_cannot_be_gated():
    def frames():
        yield 1

    async def later() -> int:
        return 1

    for fn in (frames, later):
        with pytest.raises(TypeError, match="plain function"):
            WorkGate()(fn)
