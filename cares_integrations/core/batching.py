"""``MicroBatcher``: gathers concurrent async requests into bounded batches for one batched call.

Many chains in a web server each ``await router.aroute(...)`` for one page; a batched model call
is far cheaper than one call per page. A ``MicroBatcher`` queues the items, waits at most
``max_wait_ms`` for more to arrive (or until ``max_batch_size`` are queued), then runs the
synchronous batch function in a worker thread so the event loop never blocks. While a batch runs,
new items queue up and form the next batch. Usable by any router (or any batched function).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _LoopState:
    queue: list = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task | None = None
    running: asyncio.Future | None = None


class MicroBatcher(Generic[T, R]):
    """Run ``fn(list_of_items) -> list_of_results`` on batches gathered from concurrent callers.

    ``max_batch_size`` bounds a batch; ``max_wait_ms`` bounds how long the first item of a batch
    waits for company. ``fn`` must return one result per item, in order; if it raises, every
    caller in that batch gets that exception. The batcher survives faults: a worker task that is
    cancelled or crashes is replaced while items are queued, and a running batch whose worker
    was cancelled still delivers its results to its callers. ``executor`` runs ``fn`` (default: the loop's
    default thread pool). One batcher can serve several event loops; each gets its own queue.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        executor: Executor | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait_ms = float(max_wait_ms)
        self.executor = executor
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self.batches_run = 0

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result."""
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue several items (they may be split over batches) and wait for all their results."""
        items = list(items)
        if not items:
            return []
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState()
        futures = [loop.create_future() for _ in items]
        state.queue.extend(zip(items, futures))
        state.wakeup.set()
        self._ensure_worker(loop, state)
        return list(await asyncio.gather(*futures))

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        """Start a worker unless one is running; a worker that ends (done, cancelled or crashed)
        while items are queued is replaced at once, so no caller waits for a later call."""
        if state.worker is not None and not state.worker.done():
            return
        state.worker = loop.create_task(self._work(loop, state))

        def replaced(task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                for _, fut in state.queue:  # a crash outside a batch: fail the queue with it
                    if not fut.done():
                        fut.set_exception(exc)
                state.queue.clear()
            if state.queue and not loop.is_closed():
                self._ensure_worker(loop, state)

        state.worker.add_done_callback(replaced)

    @staticmethod
    def _deliver(live: list[tuple[T, asyncio.Future]], outcome: asyncio.Future) -> None:
        """Hand a finished batch's results, or its real error, to its callers."""
        if outcome.cancelled():
            error: BaseException | None = RuntimeError("the batch function was cancelled")
        else:
            error = outcome.exception()
        results: list[Any] = []
        if error is None:
            try:
                results = list(outcome.result())
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
            except Exception as exc:  # noqa: BLE001 - a malformed result is this batch's error
                error = exc
        for i, (_, fut) in enumerate(live):
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(results[i])

    async def _work(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        if state.running is not None and not state.running.done():
            # A batch started by a worker that was cancelled is still running: wait for it, so
            # batches stay one at a time; its callers are served by its own callback.
            await asyncio.wait([state.running])
        waited = False
        while state.queue:
            # Only the first batch waits for company: items queued while a batch ran have waited.
            if not waited and len(state.queue) < self.max_batch_size and self.max_wait_ms > 0:
                waited = True
                deadline = loop.time() + self.max_wait_ms / 1000.0
                while len(state.queue) < self.max_batch_size:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    state.wakeup.clear()
                    try:
                        await asyncio.wait_for(state.wakeup.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
            batch = state.queue[: self.max_batch_size]
            del state.queue[: self.max_batch_size]
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                outcome = loop.run_in_executor(self.executor, self.fn, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - the executor refused the batch
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            finally:
                self.batches_run += 1
            state.running = outcome
            outcome.add_done_callback(lambda done, live=live: self._deliver(live, done))
            # If this worker is cancelled here, the batch still finishes and its callers still get
            # their results (the callback above); the next worker waits for it.
            await asyncio.wait([outcome])
