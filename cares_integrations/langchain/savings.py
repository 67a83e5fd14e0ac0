"""Totals of what routing saved over a chain, agent or batch run, like ``get_openai_callback``.

    from cares_integrations.langchain import cares_savings

    with cares_savings() as savings:
        chain.invoke(...)
    print(savings)            # images, resized, tokens before/after per target, bytes
    savings.as_dict()         # the same as plain data

:class:`CaresSavingsHandler` listens for the ``cares_route`` event every component emits
(the resizer, the middleware, the chat-model wrapper, the tools), so it can also be passed as a
callback directly: ``chain.invoke(x, config={"callbacks": [handler]})``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook

from .resizer import EVENT_NAME

__all__ = ["CaresSavingsHandler", "cares_savings"]


class CaresSavingsHandler(BaseCallbackHandler):
    """Totals images, tokens before/after per target and bytes from ``cares_route`` events."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.images = 0
        self.resized = 0
        self.bytes_before = 0
        self.bytes_after = 0
        self.per_target: dict[str, dict[str, int]] = {}

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        """Add one routing report to the totals."""
        if name != EVENT_NAME or not isinstance(data, dict):
            return
        with self._lock:
            for image in data.get("images") or ():
                self.images += 1
                self.resized += bool(image.get("changed"))
                self.bytes_before += image.get("bytes_before") or 0
                self.bytes_after += image.get("bytes_after") or image.get("bytes_before") or 0
                target, before, after = image.get("target"), image.get("tokens_before"), image.get("tokens_after")
                if target and before is not None and after is not None:
                    row = self.per_target.setdefault(target, {"images": 0, "tokens_before": 0, "tokens_after": 0})
                    row["images"] += 1
                    row["tokens_before"] += before
                    row["tokens_after"] += after

    @property
    def tokens_before(self) -> int:
        """Visual tokens without routing, summed over targets."""
        return sum(r["tokens_before"] for r in self.per_target.values())

    @property
    def tokens_after(self) -> int:
        """Visual tokens with routing, summed over targets."""
        return sum(r["tokens_after"] for r in self.per_target.values())

    def as_dict(self) -> dict[str, Any]:
        """The totals as plain data (for logs and metadata)."""
        return {"images": self.images, "resized": self.resized, "tokens_before": self.tokens_before,
                "tokens_after": self.tokens_after, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after, "per_target": {k: dict(v) for k, v in self.per_target.items()}}

    def __repr__(self) -> str:
        lines = [f"Images routed: {self.images} ({self.resized} resized)",
                 f"Visual tokens: {self.tokens_before} -> {self.tokens_after}",
                 f"Bytes: {self.bytes_before} -> {self.bytes_after}"]
        lines += [f"  {t}: {r['tokens_before']} -> {r['tokens_after']} ({r['images']} images)"
                  for t, r in self.per_target.items()]
        return "\n".join(lines)


_savings_var: ContextVar[CaresSavingsHandler | None] = ContextVar("cares_savings", default=None)
register_configure_hook(_savings_var, inheritable=True)


@contextmanager
def cares_savings() -> Iterator[CaresSavingsHandler]:
    """Total what routing saves for every run inside the ``with`` block (see the module doc)."""
    handler = CaresSavingsHandler()
    token = _savings_var.set(handler)
    try:
        yield handler
    finally:
        _savings_var.reset(token)
