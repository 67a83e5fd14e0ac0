"""``CaresImagePostprocessor``: resize every retrieved page image for the query, in one batch.

Add it to any query engine's ``node_postprocessors``. Each ``ImageNode`` (or ``Node`` with an
``image_resource``) comes back as a copy carrying the page resized to the size the router picked
for the query, so the multimodal LLM is sent fewer visual tokens. Text nodes, scores and order are
unchanged, and the nodes held by the index or docstore are never modified.
"""

from __future__ import annotations

from typing import Any, List, Optional

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from ..core.router import Router
from ._component import CaresOptions
from ._nodes import aresize_nodes, rebuild, resize_nodes
from .events import build_event

dispatcher = get_dispatcher(__name__)


class CaresImagePostprocessor(CaresOptions, BaseNodePostprocessor):
    """Resize each retrieved page image to the smallest size that still answers the query.

    All image nodes of one query are routed in ONE ``route_batch`` call. Each returned image
    node is a copy: the resized page as base64 in ``image`` with its ``image_mimetype``, and
    ``image_path`` / ``image_url`` cleared so the LLM integration sends the resized bytes (the
    originals are kept in the decision). The decision is stored under ``metadata["cares"]``
    (excluded from LLM and embedding text) and dispatched as a :class:`CaresResizeEvent`.

    Remote ``image_url`` pages are left as they are, with the reason recorded, unless the
    router's ``FetchPolicy`` allows their host.

    Example::

        from llama_index.core.query_engine import RetrieverQueryEngine
        from cares_integrations.llama_index import CaresImagePostprocessor

        engine = RetrieverQueryEngine.from_args(
            retriever, llm=vlm, multimodal=True,
            node_postprocessors=[CaresImagePostprocessor(target="openai:gpt-4o")],
        )
    """

    _router: Router = PrivateAttr()

    def __init__(self, router: Router | str | None = None, **kwargs: Any) -> None:
        """``router``: a :class:`Router`, a ``load_router`` source (``"fixed:768"``, a gate
        folder), or None for the default router. Other options are the documented fields."""
        super().__init__(**kwargs)
        self._init_router(router)

    @classmethod
    def class_name(cls) -> str:
        """Name used when the component is serialized."""
        return "CaresImagePostprocessor"

    @staticmethod
    def _query_str(query_bundle: Optional[QueryBundle]) -> str:
        if query_bundle is None:
            raise ValueError(
                "CaresImagePostprocessor routes images for a question: call postprocess_nodes with "
                "query_bundle= or query_str= (query engines pass it for you)"
            )
        return query_bundle.query_str

    def _finish(self, nodes: List[NodeWithScore], query: str, plan: Any, results: Any) -> List[NodeWithScore]:
        inner = [n.node for n in nodes]
        new_nodes, decisions = rebuild(inner, plan, results, self.metadata_key)
        dispatcher.event(build_event("postprocessor", query, results, decisions, self._target_name()))
        return [
            n if new is n.node else NodeWithScore(node=new, score=n.score)
            for n, new in zip(nodes, new_nodes)
        ]

    @dispatcher.span
    def _postprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        """Route and resize every image node for the query in one batch; copies, never mutates."""
        query = self._query_str(query_bundle)
        plan, results = resize_nodes(self.router, [n.node for n in nodes], query, **self._route_kwargs())
        return self._finish(nodes, query, plan, results)

    @dispatcher.span
    async def _apostprocess_nodes(
        self, nodes: List[NodeWithScore], query_bundle: Optional[QueryBundle] = None
    ) -> List[NodeWithScore]:
        """Async version: decoding, routing and resizing run in worker threads, off the event loop."""
        query = self._query_str(query_bundle)
        plan, results = await aresize_nodes(self.router, [n.node for n in nodes], query, **self._route_kwargs())
        return self._finish(nodes, query, plan, results)
