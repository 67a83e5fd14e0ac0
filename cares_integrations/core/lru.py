"""The one bounded, thread-safe LRU cache, and the one content key of a decoded image's pixels.

Used by the decision cache (:class:`~cares_integrations.core.conversation.DecisionCache`), the
gate's vision cache and the OCR readers' page caches.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

from PIL import Image

V = TypeVar("V")


def pixel_digest(image: Image.Image) -> str:
    """A content key for a decoded image: a hash of its mode, size and raw pixels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class LRUCache(Generic[V]):
    """At most ``maxsize`` entries, the least recently used evicted first; ``maxsize=0`` keeps
    nothing. ``hits`` and ``misses`` count lookups since creation (or :meth:`clear`). Every
    method holds a lock, so threads can share one cache."""

    def __init__(self, maxsize: int) -> None:
        if int(maxsize) < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize}")
        self.maxsize = int(maxsize)
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable | None) -> V | None:
        """The entry for ``key`` (marking it recently used), or None (a miss; None never hits)."""
        with self._lock:
            if key is not None and key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key: Hashable | None, value: V) -> None:
        """Store ``value`` under ``key`` (None: not stored), evicting beyond ``maxsize``."""
        if key is None or self.maxsize == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(maxsize={self.maxsize}, size={len(self)}, hits={self.hits}, misses={self.misses})"
