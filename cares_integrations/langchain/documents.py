"""``CaresDocumentTransformer``: resize the page images carried by retrieved Documents.

The multi-vector retriever pattern of multimodal RAG indexes a summary of each page but returns
the page image itself (base64 in metadata, or as the page content). This transformer resizes
those images for the query before they are put into the prompt, in one batched router call.
"""

from __future__ import annotations

from typing import Any, Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, BaseDocumentTransformer, Document
from pydantic import ConfigDict

from ..core.apply import ImageResult, aroute_and_resize, route_and_resize
from ._component import CaresOptions

_NOT_GIVEN: Any = object()


class CaresDocumentTransformer(CaresOptions, BaseDocumentCompressor, BaseDocumentTransformer):
    """Resize each retrieved Document's page image for the query; returns NEW Documents.

    The image is read from ``metadata[image_key]`` (default ``"image"``: any form
    :func:`cares_integrations.load_image` reads: base64, data URL, bytes, PIL image, http(s)
    URL; a path only under ``local_files``), or from ``page_content`` when ``content_is_image=True`` (base64 or data URL text). The
    resized image is written back in the same place and form; the decision (or why the image was
    left alone) goes to ``metadata[decision_key]``; a ``mime_type`` metadata key, if present,
    follows the output format. Every other metadata key, the id and the
    content are kept; the input Documents are not modified. Documents without an image come
    back unchanged (as new objects) with no decision key.

    Routing options (``router``, ``target``, ``policy``, ``on_error`` (a failed image is kept
    as is with the error under ``decision_key``), ``image_format``, ``quality``, ``local_files``)
    are :class:`CaresOptions`'s.

    Use it directly (``transform_documents(docs, query=...)``) or as a document compressor
    (``compress_documents(docs, query)``, e.g. in a ``ContextualCompressionRetriever``).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    image_key: str = "image"
    """Metadata key holding the page image."""

    content_is_image: bool = False
    """Read the image from ``page_content`` (base64 or data URL) when the metadata key is absent."""

    decision_key: str = "cares"
    """Metadata key the routing decision (:meth:`ImageResult.as_metadata`) is written under."""

    def _locate(self, documents: Sequence[Document]) -> tuple[list[int], list[Any], list[bool]]:
        where: list[int] = []
        images: list[Any] = []
        in_content: list[bool] = []
        for i, doc in enumerate(documents):
            if not isinstance(doc, Document):
                raise TypeError(f"document {i} is a {type(doc).__name__}, not a langchain Document")
            if doc.metadata.get(self.image_key) is not None:
                where.append(i)
                images.append(doc.metadata[self.image_key])
                in_content.append(False)
            elif self.content_is_image and doc.page_content:
                where.append(i)
                images.append(doc.page_content)
                in_content.append(True)
        return where, images, in_content

    def _rebuild(
        self, documents: Sequence[Document], where: list[int], in_content: list[bool], results: list[ImageResult]
    ) -> list[Document]:
        out = [doc.model_copy(update={"metadata": dict(doc.metadata)}) for doc in documents]
        for i, content, result in zip(where, in_content, results):
            doc = documents[i]
            metadata = dict(doc.metadata)
            metadata[self.decision_key] = result.as_metadata()
            update: dict[str, Any] = {"metadata": metadata}
            if result.changed:
                if content:
                    update["page_content"] = result.output
                else:
                    metadata[self.image_key] = result.output
                if result.mime_type and "mime_type" in metadata:
                    metadata["mime_type"] = result.mime_type
            out[i] = doc.model_copy(update=update)
        return out

    @staticmethod
    def _query(query: Any) -> str:
        if query is _NOT_GIVEN:
            raise TypeError("CaresDocumentTransformer needs the question: pass query=... (may be '')")
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        return query

    def transform_documents(self, documents: Sequence[Document], query: Any = _NOT_GIVEN, **kwargs: Any) -> Sequence[Document]:
        """New Documents with each page image resized for ``query`` (one batched router call)."""
        question = self._query(query)
        where, images, in_content = self._locate(documents)
        results = route_and_resize(self._router(), images, question, **self._route_kwargs()) if images else []
        return self._rebuild(documents, where, in_content, results)

    async def atransform_documents(
        self, documents: Sequence[Document], query: Any = _NOT_GIVEN, **kwargs: Any
    ) -> Sequence[Document]:
        """Async :meth:`transform_documents`; the work runs off the event loop."""
        question = self._query(query)
        where, images, in_content = self._locate(documents)
        results = await aroute_and_resize(self._router(), images, question, **self._route_kwargs()) if images else []
        return self._rebuild(documents, where, in_content, results)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Document-compressor form of :meth:`transform_documents` (keeps every document)."""
        return self.transform_documents(documents, query=query)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`."""
        return await self.atransform_documents(documents, query=query)
