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
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _LoopState:
    queue: list = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task | None = None


class MicroBatcher(Generic[T, R]):
    """Run ``fn(list_of_items) -> list_of_results`` on batches gathered from concurrent callers.

    ``max_batch_size`` bounds a batch; ``max_wait_ms`` bounds how long the first item of a batch
    waits for company. ``fn`` must return one result per item, in order; if it raises, every
    caller in that batch gets the exception. ``executor`` runs ``fn`` (default: the loop's
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
        if state.worker is None or state.worker.done():
            state.worker = loop.create_task(self._work(loop, state))
        return list(await asyncio.gather(*futures))

    async def _work(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
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
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.fn, [item for item, _ in live])
                results = list(results)
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
            except BaseException as exc:  # hand the failure to every caller of this batch
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                    raise
                continue
            finally:
                self.batches_run += 1
            for (_, fut), result in zip(live, results):
                if not fut.done():
                    fut.set_result(result)
