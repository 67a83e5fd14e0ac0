"""A bounded, thread-safe LRU cache of vision-tower outputs keyed by image content.

The same page asked a new question skips the vision tower: the connector's output (what gets
merged into the text embeddings) is looked up by a hash of the pixels plus the preprocessing.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

import torch
from PIL import Image


@dataclass(frozen=True)
class VisionEntry:
    """One image's vision features (``n_image_tokens x text_hidden``) and its tile grid."""

    features: torch.Tensor
    rows: int
    cols: int


def image_key(image: Image.Image, preprocessing: Hashable) -> tuple:
    """A content key for ``image``: mode, size and a hash of the raw pixels, plus ``preprocessing``."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()
    return (image.mode, image.size, digest, preprocessing)


class VisionCache:
    """Least-recently-used map from :func:`image_key` to :class:`VisionEntry`, at most ``max_entries``.

    ``max_entries=0`` disables caching. All methods hold a lock, so threads can share one cache.
    """

    def __init__(self, max_entries: int = 256) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = int(max_entries)
        self._data: OrderedDict[tuple, VisionEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> VisionEntry | None:
        """The entry for ``key`` (marking it recently used), or None."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: tuple, entry: VisionEntry) -> None:
        """Store ``entry``, evicting the least recently used ones beyond ``max_entries``."""
        if self.max_entries == 0:
            return
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry and reset the hit/miss counters."""
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __repr__(self) -> str:
        return f"VisionCache(entries={len(self)}, max_entries={self.max_entries}, hits={self.hits}, misses={self.misses})"
