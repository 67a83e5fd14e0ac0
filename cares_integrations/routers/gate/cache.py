"""A bounded, thread-safe LRU cache of vision-tower outputs keyed by image content.

The same page asked a new question skips the vision tower: the connector's output (what gets
merged into the text embeddings) is looked up by a hash of the pixels plus the preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import torch
from PIL import Image

from ...core.lru import LRUCache, pixel_digest


@dataclass(frozen=True)
class VisionEntry:
    """One image's vision features (``n_image_tokens x text_hidden``) and its tile grid."""

    features: torch.Tensor
    rows: int
    cols: int


def image_key(image: Image.Image, preprocessing: Hashable) -> tuple:
    """A content key for ``image``: its :func:`~cares_integrations.core.lru.pixel_digest`, plus ``preprocessing``."""
    return (pixel_digest(image), preprocessing)


class VisionCache(LRUCache[VisionEntry]):
    """Least-recently-used map from :func:`image_key` to :class:`VisionEntry`, at most ``max_entries``.

    ``max_entries=0`` disables caching. All methods hold a lock, so threads can share one cache.
    """

    def __init__(self, max_entries: int = 256) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        super().__init__(max_entries)

    @property
    def max_entries(self) -> int:
        """The most entries kept (0: caching disabled)."""
        return self.maxsize

    def __repr__(self) -> str:
        return f"VisionCache(entries={len(self)}, max_entries={self.max_entries}, hits={self.hits}, misses={self.misses})"
