"""Reading and writing image content blocks in every form langchain-core 1.x accepts.

Each form is rewritten in its own shape with all its other keys kept:

================  ==========================================================================
form              shape
================  ==========================================================================
``image_url``     OpenAI chat completions ``{"type": "image_url", "image_url": {"url": ..., "detail": ...}}``
``image_url_str`` the same with a bare string: ``{"type": "image_url", "image_url": "data:..."}``
``input_image``   OpenAI Responses API ``{"type": "input_image", "image_url": ..., "detail": ...}``
``v1``            LangChain v1 standard block ``{"type": "image", "base64" | "url": ..., "mime_type": ...}``
``v0``            LangChain v0 block ``{"type": "image", "source_type": "base64" | "url", ...}``
``anthropic``     Anthropic ``{"type": "image", "source": {"type": "base64" | "url", ...}}``
================  ==========================================================================

Blocks that only reference an image stored elsewhere (a provider file id) cannot be read; they are
reported as skipped and left exactly as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..core.apply import ImageResult
from ..core.codec import make_data_url, split_data_url
from ..core.fetch import is_remote_url

BlockForm = Literal["image_url", "image_url_str", "input_image", "v1", "v0", "anthropic"]


@dataclass(frozen=True)
class ImageBlockRef:
    """One image found in a content block: its form, and the image source to route.

    ``source`` is what :func:`cares_integrations.apply.route_and_resize` reads (a data URL, a bare
    base64 string, an http(s) URL; a path or ``file:`` URL is read only under a local-file
    policy); it is None when the block only references a stored file, and ``skip_reason`` then
    says why it is left alone.
    """

    form: BlockForm
    source: str | None
    skip_reason: str | None = None


def block_detail(block: Any) -> str | None:
    """The OpenAI ``detail`` a caller set on an image block (any form), or None."""
    if not isinstance(block, dict):
        return None
    inner = block.get("image_url")
    detail = inner.get("detail") if isinstance(inner, dict) else block.get("detail")
    if detail is None and isinstance(block.get("extras"), dict):
        detail = block["extras"].get("detail")
    return detail if isinstance(detail, str) else None


def _ref(form: BlockForm, source: Any, what: str) -> ImageBlockRef:
    if isinstance(source, str) and source:
        return ImageBlockRef(form, source)
    return ImageBlockRef(form, None, f"{form} image block has no inline image or URL ({what})")


def read_image_block(block: Any) -> ImageBlockRef | None:
    """The image in ``block``, or None when the block is not an image block (text, tool use ...)."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "image_url":
        inner = block.get("image_url")
        if isinstance(inner, dict):
            return _ref("image_url", inner.get("url"), "image_url.url missing")
        return _ref("image_url_str", inner, "image_url missing")
    if kind == "input_image":
        return _ref("input_image", block.get("image_url"), "file_id reference")
    if kind != "image":
        return None
    if "source_type" in block:
        source_type = block.get("source_type")
        if source_type == "base64":
            return _ref("v0", block.get("data"), "data missing")
        if source_type == "url":
            return _ref("v0", block.get("url"), "url missing")
        return ImageBlockRef("v0", None, f"v0 image block with source_type {source_type!r} is a reference")
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "base64":
            return _ref("anthropic", source.get("data"), "source.data missing")
        if source.get("type") == "url":
            return _ref("anthropic", source.get("url"), "source.url missing")
        return ImageBlockRef("anthropic", None, f"anthropic image source of type {source.get('type')!r} is a reference")
    if "base64" in block:
        return _ref("v1", block.get("base64"), "base64 empty")
    if "url" in block:
        return _ref("v1", block.get("url"), "url empty")
    return ImageBlockRef("v1", None, "v1 image block with only a file_id reference")


def _is_fetched_url(ref: ImageBlockRef, result: ImageResult) -> bool:
    """A remote URL that was fetched and resized: its output is a data URL now."""
    return is_remote_url(ref.source) and result.changed


def request_knobs(result: ImageResult | None) -> dict[str, Any]:
    """The provider request fields the decision asks for (``detail``, ``media_resolution``)."""
    if result is None or result.decision is None:
        return {}
    return dict(result.decision.request_knobs)


def needs_write(result: ImageResult | None) -> bool:
    """Whether a block must be rewritten: a new image, or request knobs to set."""
    return result is not None and (result.changed or bool(request_knobs(result)))


def _data_url_of(block: dict[str, Any], ref: ImageBlockRef, result: ImageResult) -> str:
    """The image of the block as a data URL (the routed output, or the block's own image)."""
    if result.data_url is not None:
        return result.data_url
    source = ref.source or ""
    if source.startswith("data:") or is_remote_url(source):
        return source
    mime = block.get("mime_type") or (block.get("source") or {}).get("media_type") or result.mime_type or "image/png"
    return make_data_url(source, mime)


def _with_knobs(block: dict[str, Any], ref: ImageBlockRef, result: ImageResult) -> dict[str, Any]:
    """Write the decision's request knobs in the schema the provider's LangChain client sends.

    * ``detail`` (OpenAI): on ``image_url`` and ``input_image`` blocks. langchain-openai drops any
      ``detail`` of v0/v1 standard blocks on the way to the wire (langchain-core's
      ``convert_to_openai_image_block``), so those become ``image_url`` blocks carrying it.
    * ``media_resolution`` (Gemini 3): langchain-google-genai sends a per-part
      ``mediaResolution`` only from v0/v1 image blocks (and only for Gemini 3 model names), so
      ``image_url`` and Anthropic-form blocks become v1 blocks carrying it.
    """
    knobs = request_knobs(result)
    if "detail" in knobs:
        detail = knobs["detail"]
        if ref.form == "image_url":
            return {**block, "image_url": {**block["image_url"], "detail": detail}}
        if ref.form == "input_image":
            return {**block, "detail": detail}
        url = _data_url_of(block, ref, result)
        return {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    if "media_resolution" in knobs:
        level = knobs["media_resolution"]
        if ref.form in ("v1", "v0"):
            return {**block, "media_resolution": level}
        url = _data_url_of(block, ref, result)
        if url.startswith("data:"):
            mime, _, payload = split_data_url(url)
            mime = mime or "image/png"
            return {"type": "image", "base64": payload, "mime_type": mime, "media_resolution": level}
        return {"type": "image", "url": url, "media_resolution": level}
    return block


def write_image_block(block: dict[str, Any], ref: ImageBlockRef, result: ImageResult) -> dict[str, Any]:
    """A NEW block holding ``result.output`` and the decision's request knobs; ``block`` is kept.

    The block keeps its own form where the provider's client carries the knobs in it (see
    :func:`_with_knobs` for the two cases where it cannot). Returns ``block`` itself when there
    is nothing to write (skipped, failed in passthrough mode, or unchanged with no knobs). A
    fetched http(s) image comes back inline: a data URL in the OpenAI forms and ``url`` fields
    holding data URLs, base64 (``source_type``/``source.type`` switched to ``"base64"``) in the
    v1, v0 and Anthropic forms.
    """
    if not needs_write(result):
        return block
    if not result.changed:
        return _with_knobs(block, ref, result)
    return _with_knobs(_write_image(block, ref, result), ref, result)


def _write_image(block: dict[str, Any], ref: ImageBlockRef, result: ImageResult) -> dict[str, Any]:
    """``block`` in its own form holding ``result.output``."""
    out = result.output
    mime = result.mime_type
    if ref.form == "image_url":
        return {**block, "image_url": {**block["image_url"], "url": out}}
    if ref.form in ("image_url_str", "input_image"):
        return {**block, "image_url": out}

    fetched = _is_fetched_url(ref, result)
    if fetched:  # the output of a fetched URL is a data URL; base64 forms want the payload alone
        mime, out = result.mime_type or "image/png", result.base64
    if ref.form == "v1":
        if "base64" in block or fetched:
            new = {k: v for k, v in block.items() if not (fetched and k == "url")}
            new["base64"] = out
            new["mime_type"] = mime or new.get("mime_type")
            return new
        new = {**block, "url": out}  # a data URL stays a data URL
        if "mime_type" in block and mime:
            new["mime_type"] = mime
        return new
    if ref.form == "v0":
        if block.get("source_type") == "base64" or fetched:
            new = {k: v for k, v in block.items() if not (fetched and k == "url")}
            new.update(source_type="base64", data=out)
            new["mime_type"] = mime or new.get("mime_type")
            return new
        new = {**block, "url": out}
        if "mime_type" in block and mime:
            new["mime_type"] = mime
        return new
    # anthropic
    source = block["source"]
    if source.get("type") == "base64" or fetched:
        new_source = {k: v for k, v in source.items() if not (fetched and k == "url")}
        new_source.update(type="base64", data=out)
        new_source["media_type"] = mime or new_source.get("media_type")
        return {**block, "source": new_source}
    return {**block, "source": {**source, "url": out}}
