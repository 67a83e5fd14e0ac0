"""MicroBatcher: concurrent submissions gathered into bounded batches run off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

from cares_integrations.core.batching import MicroBatcher


class Recorder:
    """A batch function that records its batches and the thread it ran on."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.batches: list[list] = []
        self.threads: set[int] = set()
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [x * 10 for x in items]


async def test_concurrent_submits_are_batched_and_ordered():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=4, max_wait_ms=50)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert [len(b) for b in fn.batches] == [4, 4, 2]
    assert sorted(x for b in fn.batches for x in b) == list(range(10))
    assert threading.get_ident() not in fn.threads  # ran in a worker thread


async def test_submit_many_splits_into_bounded_batches():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=3, max_wait_ms=0)
    assert await batcher.submit_many(list(range(7))) == [i * 10 for i in range(7)]
    assert max(len(b) for b in fn.batches) == 3 and len(fn.batches) == 3
    assert await batcher.submit_many([]) == []


async def test_items_arriving_during_a_batch_form_the_next_one():
    fn = Recorder(delay=0.05)
    batcher = MicroBatcher(fn, max_batch_size=16, max_wait_ms=0)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)  # the first batch is running now
    rest = await asyncio.gather(*(batcher.submit(i) for i in range(1, 6)))
    assert await first == 0 and rest == [10, 20, 30, 40, 50]
    assert [len(b) for b in fn.batches] == [1, 5]


async def test_event_loop_keeps_running_during_a_batch():
    fn = Recorder(delay=0.2)
    batcher = MicroBatcher(fn, max_batch_size=2, max_wait_ms=0)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.ensure_future(ticker())
    await batcher.submit(1)
    task.cancel()
    assert ticks >= 3  # the loop was not blocked while the batch function slept


async def test_errors_reach_every_caller_of_the_failing_batch_only():
    fn = Recorder(fail_on=3)
    batcher = MicroBatcher(fn, max_batch_size=2, max_wait_ms=20)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == [0, 10]
    assert all(isinstance(r, ValueError) and "bad item 3" in str(r) for r in results[2:])
    assert await batcher.submit(5) == 50  # the batcher keeps working after a failure


async def test_wrong_result_count_is_an_error():
    batcher = MicroBatcher(lambda items: items[:-1], max_batch_size=4, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="results"):
        await batcher.submit_many([1, 2])


def test_one_batcher_serves_several_event_loops():
    batcher = MicroBatcher(Recorder(), max_batch_size=4, max_wait_ms=1)
    assert asyncio.run(batcher.submit(1)) == 10
    assert asyncio.run(batcher.submit_many([2, 3])) == [20, 30]


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(Recorder(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(Recorder(), max_wait_ms=-1)


class _Gate:
    """A batch function that blocks until released (a threading.Event, bounded wait)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.batches: list[list] = []

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.started.set()
        assert self.release.wait(10)
        return [x * 10 for x in items]


async def _wait_for(event: threading.Event) -> None:
    for _ in range(500):  # bounded: at most 5 s
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never started")


async def test_cancelled_worker_during_a_batch_still_serves_everyone():
    fn = _Gate()
    batcher = MicroBatcher(fn, max_batch_size=2, max_wait_ms=0)
    running = [asyncio.ensure_future(batcher.submit(i)) for i in range(2)]
    await _wait_for(fn.started)
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in range(2, 5)]
    await asyncio.sleep(0)
    state = next(iter(batcher._states.values()))
    state.worker.cancel()  # e.g. a task group tearing down, or a stray cancel()
    await asyncio.sleep(0.01)
    fn.release.set()
    # Nobody cancelled a caller: the running batch's callers get results, not CancelledError,
    # and the queued callers are served without any new call arriving.
    results = await asyncio.wait_for(asyncio.gather(*running, *queued), 10)
    assert results == [0, 10, 20, 30, 40]
    assert [sorted(b) for b in fn.batches] == [[0, 1], [2, 3], [4]]


async def test_cancelled_idle_worker_is_replaced_for_queued_callers():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch_size=8, max_wait_ms=200)
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0.01)  # the worker now waits for company
    next(iter(batcher._states.values())).worker.cancel()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 10) == [0, 10, 20]


async def test_crashed_worker_gives_callers_the_real_error_and_is_replaced():
    class FlakyExecutor(concurrent.futures.ThreadPoolExecutor):
        refused = False

        def submit(self, fn, *args, **kwargs):
            if not self.refused:
                self.refused = True
                raise RuntimeError("executor refused the first batch")
            return super().submit(fn, *args, **kwargs)

    with FlakyExecutor(max_workers=1) as pool:
        batcher = MicroBatcher(Recorder(), max_batch_size=2, max_wait_ms=0, executor=pool)
        first = await asyncio.gather(*(batcher.submit(i) for i in range(2)), return_exceptions=True)
        assert all(isinstance(e, RuntimeError) and "refused" in str(e) for e in first)
        assert await asyncio.wait_for(batcher.submit_many([5, 6, 7]), 10) == [50, 60, 70]


async def test_a_malformed_result_is_the_batch_error_and_the_next_batch_runs():
    calls = []

    def fn(items):
        calls.append(items)
        return None if len(calls) == 1 else [x for x in items]

    batcher = MicroBatcher(fn, max_batch_size=4, max_wait_ms=0)
    with pytest.raises(TypeError):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2
