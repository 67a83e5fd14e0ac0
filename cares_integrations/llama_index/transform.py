"""``CaresImageTransform``: resize page images at ingestion time, for a question known in advance.

Routing depends on the question, so a query-time :class:`CaresImagePostprocessor` is the right
tool for open-ended questions. When every question about a corpus has the same shape (an
extraction workload such as "What is the invoice total?"), resizing once at ingestion stores
smaller pages in the docstore and the vector store, and every later query sends them as they are.
"""

from __future__ import annotations

from typing import Any, Sequence

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.schema import BaseNode, TransformComponent

from ..core.router import Router
from ._component import CaresOptions
from ._nodes import aresize_nodes, rebuild, resize_nodes
from .events import build_event

dispatcher = get_dispatcher(__name__)


class CaresImageTransform(CaresOptions, TransformComponent):
    """An ingestion-pipeline step: route each ``ImageNode`` / ``ImageDocument`` for one fixed
    question and return copies carrying the resized page and the decision.

    Example::

        from llama_index.core.ingestion import IngestionPipeline
        pipeline = IngestionPipeline(transformations=[
            CaresImageTransform(query="What is the invoice total?", target="openai:gpt-4o"),
        ])
        nodes = pipeline.run(documents=image_documents)
    """

    query: str = Field(description="The question every image is routed for.")
    _router: Router = PrivateAttr()

    def __init__(self, router: Router | str | None = None, **kwargs: Any) -> None:
        """``router``: a :class:`Router`, a ``load_router`` source, or None for the default."""
        super().__init__(**kwargs)
        self._init_router(router)

    @classmethod
    def class_name(cls) -> str:
        """Name used when the component is serialized (and in ingestion-cache keys)."""
        return "CaresImageTransform"

    def _finish(self, nodes: Sequence[BaseNode], plan: Any, results: Any) -> list[BaseNode]:
        out, decisions = rebuild(list(nodes), plan, results, self.metadata_key)
        dispatcher.event(build_event("transform", self.query, results, decisions, self._target_name()))
        return out

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        """Resize the image nodes of ``nodes`` in one batch; other nodes pass through in order."""
        plan, results = resize_nodes(self.router, list(nodes), self.query, **self._route_kwargs())
        return self._finish(nodes, plan, results)

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        """Async :meth:`__call__`, off the event loop."""
        plan, results = await aresize_nodes(self.router, list(nodes), self.query, **self._route_kwargs())
        return self._finish(nodes, plan, results)
