"""One batch whose results are known in part before routing (an early failure, a cache hit) and
filled in, in order, from one routed batch of the rest: the bookkeeping every glue plan and the
decision cache share."""

from __future__ import annotations

from typing import Generic, Sequence, TypeVar

T = TypeVar("T")


class PartialResults(Generic[T]):
    """``size`` slots: :meth:`settle` those known early, route :attr:`todo`, then :meth:`merge`."""

    def __init__(self, size: int, early: dict[int, T] | None = None) -> None:
        self.size = size
        self.early: dict[int, T] = dict(early or {})

    def settle(self, index: int, result: T) -> None:
        """Record the result of slot ``index`` now (it is not routed)."""
        self.early[index] = result

    @property
    def todo(self) -> list[int]:
        """The slots still to route, in order."""
        return [i for i in range(self.size) if i not in self.early]

    def merge(self, routed: Sequence[T]) -> list[T]:
        """Every slot's result: the early ones, and ``routed`` (one per :attr:`todo` slot, in order)."""
        routed = list(routed)
        if len(routed) != self.size - len(self.early):
            raise ValueError(f"expected {self.size - len(self.early)} routed results, got {len(routed)}")
        it = iter(routed)
        return [self.early[i] if i in self.early else next(it) for i in range(self.size)]
