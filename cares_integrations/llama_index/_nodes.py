"""Translate LlamaIndex nodes to plain image inputs and back; no routing happens here.

An ``ImageNode`` holds its page as base64 in ``image``, or as ``image_path`` / ``image_url``
(or, like the legacy query engine reads it, ``metadata["file_path"]``). A ``Node`` or
``ImageDocument`` holds it in ``image_resource``. :func:`image_source` finds the page in that
order of precedence (the order LlamaIndex itself reads them); :func:`with_result` returns a copy
of the node carrying the resized bytes and the decision, never touching the original.

The node's own ``image_path`` (and ``image_resource.path``), which the indexer sets, is read
here as a regular file under the byte limit; ``image_url`` and ``metadata["file_path"]`` are
untrusted strings, read only under the component's ``local_files`` policy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from llama_index.core.schema import BaseNode, ImageNode, Node

from ..core.apply import ImageResult, OnError, aroute_and_resize, failed_result, route_and_resize
from ..core.codec import make_data_url
from ..core.errors import ImageDecodeError
from ..core.partial import PartialResults
from ..core.router import ROUTER_TARGET, Router
from ..core.sources import ANY_LOCAL_FILE, LocalFilePolicy, read_local_file

DEFAULT_METADATA_KEY = "cares"


@dataclass
class ImageSource:
    """Where a node's image lives (``field``) and the plain input handed to the core."""

    field: str
    value: Any


def _own_file(path: Any) -> bytes:
    """The bytes of a node's own image file (set by the indexer): any regular file, size-limited."""
    return read_local_file(str(path), ANY_LOCAL_FILE, "the node's image file")


def image_source(node: BaseNode) -> Optional[ImageSource]:
    """The image of ``node``, or None for a node that carries no image (a text node).

    Raises :class:`ImageDecodeError` for an ``ImageNode`` that names no image at all, or whose
    own image file cannot be read.
    """
    if isinstance(node, ImageNode):
        if node.image:
            return ImageSource("image", make_data_url(node.image, node.image_mimetype))
        if node.image_path:
            return ImageSource("image_path", _own_file(node.image_path))
        if node.image_url:
            return ImageSource("image_url", str(node.image_url))
        if node.metadata.get("file_path"):
            return ImageSource("metadata.file_path", str(node.metadata["file_path"]))
        raise ImageDecodeError(f"ImageNode {node.node_id!r} has no image, image_path, image_url or file_path")
    if isinstance(node, Node) and node.image_resource is not None:
        res = node.image_resource
        if res.data:
            return ImageSource("image_resource.data", make_data_url(_text(res.data), res.mimetype))
        if res.path:
            return ImageSource("image_resource.path", _own_file(res.path))
        if res.url:
            return ImageSource("image_resource.url", str(res.url))
    return None


def _text(data: str | bytes) -> str:
    return data.decode("ascii") if isinstance(data, (bytes, bytearray)) else data


def _origin(node: BaseNode, field: str) -> dict[str, Any]:
    """What the node pointed at before resizing, so clearing a path or URL loses nothing."""
    out: dict[str, Any] = {"field": field}
    if isinstance(node, ImageNode):
        if node.image_path:
            out["image_path"] = node.image_path
        if node.image_url:
            out["image_url"] = str(node.image_url)
    elif isinstance(node, Node) and node.image_resource is not None:
        if node.image_resource.path:
            out["image_path"] = str(node.image_resource.path)
        if node.image_resource.url:
            out["image_url"] = str(node.image_resource.url)
    return out


def record(node: BaseNode, field: str, result: ImageResult) -> dict[str, Any]:
    """The decision dict stored in node metadata and in the event."""
    meta = result.as_metadata()
    meta["node_id"] = node.node_id
    meta["source"] = _origin(node, field)
    if result.changed and result.mime_type:
        meta["mime_type"] = result.mime_type
    return meta


def with_result(node: BaseNode, field: str, result: ImageResult, meta: dict[str, Any], key: Optional[str]) -> BaseNode:
    """A shallow copy of ``node`` with the resized image (if it changed) and the decision.

    The resized page replaces the image as base64 with its MIME type; ``image_path`` and
    ``image_url`` are cleared, because LLM integrations prefer a URL or path over inline bytes
    and would otherwise send the full-size original. The originals are kept in the decision.
    The decision goes under ``metadata[key]`` and ``key`` is excluded from LLM and embedding text.
    """
    new = node.model_copy()
    new.metadata = dict(node.metadata)
    new.excluded_llm_metadata_keys = list(node.excluded_llm_metadata_keys)
    new.excluded_embed_metadata_keys = list(node.excluded_embed_metadata_keys)
    if result.changed:
        payload, mime = result.base64 or "", result.mime_type
        if isinstance(new, ImageNode):
            new.image = payload
            new.image_mimetype = mime
            new.image_path = None
            new.image_url = None
        else:
            assert isinstance(new, Node) and new.image_resource is not None
            new.image_resource = new.image_resource.model_copy(
                update={"data": payload.encode("ascii"), "mimetype": mime, "path": None, "url": None}
            )
    if key:
        new.metadata[key] = meta
        for keys in (new.excluded_llm_metadata_keys, new.excluded_embed_metadata_keys):
            if key not in keys:
                keys.append(key)
    return new


@dataclass
class NodePlan:
    """The image nodes of one batch: their positions, sources, and results known before routing."""

    positions: list[int]
    sources: list[ImageSource]
    results: PartialResults[ImageResult]
    """Slot i is the node at ``positions[i]``; nodes that failed before routing are settled early."""


def plan(nodes: Sequence[BaseNode], on_error: OnError) -> NodePlan:
    """Find every image node; a node naming no image raises or is recorded, per ``on_error``."""
    positions: list[int] = []
    sources: list[ImageSource] = []
    early: dict[int, ImageResult] = {}
    for pos, node in enumerate(nodes):
        try:
            src = image_source(node)
        except ImageDecodeError as exc:
            if on_error == "raise":
                raise
            early[len(positions)] = failed_result(None, exc)
            src = ImageSource("none", None)
        if src is not None:
            positions.append(pos)
            sources.append(src)
    return NodePlan(positions, sources, PartialResults(len(positions), early))


def resize_nodes(router: Router, nodes: Sequence[BaseNode], query: str, *, target: Any = ROUTER_TARGET,
                 on_error: OnError = "raise", fmt: Optional[str] = None, quality: int = 90,
                 local_files: LocalFilePolicy | None = None) -> tuple[NodePlan, list[ImageResult]]:
    """Route every image node of ``nodes`` for ``query`` in one batch; returns the plan and results."""
    p = plan(nodes, on_error)
    todo = p.results.todo
    routed = route_and_resize(router, [p.sources[i].value for i in todo], query, target=target,
                              on_error=on_error, fmt=fmt, quality=quality, local_files=local_files) if todo else []
    return p, p.results.merge(routed)


async def aresize_nodes(router: Router, nodes: Sequence[BaseNode], query: str, *, target: Any = ROUTER_TARGET,
                        on_error: OnError = "raise", fmt: Optional[str] = None, quality: int = 90,
                        local_files: LocalFilePolicy | None = None) -> tuple[NodePlan, list[ImageResult]]:
    """Async :func:`resize_nodes`: reading, decoding, routing and resizing run off the event loop."""
    p = await asyncio.to_thread(plan, nodes, on_error)
    todo = p.results.todo
    routed = await aroute_and_resize(router, [p.sources[i].value for i in todo], query, target=target,
                                     on_error=on_error, fmt=fmt, quality=quality,
                                     local_files=local_files) if todo else []
    return p, p.results.merge(routed)


def rebuild(nodes: Sequence[BaseNode], p: NodePlan, results: list[ImageResult],
            key: Optional[str]) -> tuple[list[BaseNode], list[dict[str, Any]]]:
    """Nodes in their original order, image nodes replaced by copies; plus the decision dicts."""
    out = list(nodes)
    decisions: list[dict[str, Any]] = []
    for pos, src, result in zip(p.positions, p.sources, results):
        meta = record(nodes[pos], src.field, result)
        decisions.append(meta)
        out[pos] = with_result(nodes[pos], src.field, result, meta, key)
    return out, decisions
