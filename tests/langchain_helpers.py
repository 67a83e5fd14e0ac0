"""Helpers for the LangChain tests: tiny pages in every block form, the one recording chat model,
and routers that count or remember what they were asked."""

from __future__ import annotations

import base64
import io
import threading
from typing import Any, Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image
from pydantic import Field, PrivateAttr

from cares_integrations import FixedRouter
from helpers import encode, render_page

PAGE = render_page(300, 400, text_px=9, lines=12)
PAGE_PNG = encode(PAGE, "PNG")
PAGE_JPEG = encode(PAGE, "JPEG", quality=85)
PAGE_B64 = base64.b64encode(PAGE_PNG).decode("ascii")
PAGE_JPEG_B64 = base64.b64encode(PAGE_JPEG).decode("ascii")
PAGE_URL = "data:image/png;base64," + PAGE_B64
CORRUPT_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n this is not an image at all").decode("ascii")
SMALL = 120  # the long side the FixedRouter asks for in most tests


class CountingRouter(FixedRouter):
    """A real FixedRouter that counts ``_predict`` calls and remembers questions and threads."""

    def __init__(self, long_side: int = SMALL, **options: Any) -> None:
        super().__init__(long_side, **options)
        self.calls = 0
        self.queries: list[list[str]] = []
        self.threads: list[int] = []

    def _predict(self, images, queries):
        self.calls += 1
        self.queries.append(list(queries))
        self.threads.append(threading.get_ident())
        return super()._predict(images, queries)


class RecordingChatModel(BaseChatModel):
    """The tests' one recording chat model: a real ``BaseChatModel`` that records every list of
    messages it is sent (thread-safe) and answers :meth:`answer` (``respond(messages)``, else
    ``"ok"``). Its first ``fail_first`` calls raise ``error`` instead. Subclass and override
    :meth:`answer` for a fake that must be built with no arguments."""

    received: list[list[BaseMessage]] = Field(default_factory=list)
    respond: Callable[[list[BaseMessage]], str] | None = None
    fail_first: int = 0
    error: Any = None
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def answer(self, messages: list[BaseMessage]) -> str:
        """The reply text for ``messages``."""
        return self.respond(messages) if self.respond is not None else "ok"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        with self._lock:
            self.received.append(list(messages))
            n = len(self.received)
        if n <= self.fail_first:
            raise self.error
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answer(list(messages))))])

    @property
    def _llm_type(self) -> str:
        return "recording"


def block(form: str, b64: str = PAGE_B64, mime: str = "image/png") -> dict[str, Any]:
    """An image block of ``form`` holding ``b64``, with extra keys that must survive."""
    url = f"data:{mime};base64,{b64}"
    if form == "image_url":
        return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}
    if form == "image_url_str":
        return {"type": "image_url", "image_url": url, "detail": "low"}
    if form == "input_image":
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    if form == "v1":
        return {"type": "image", "base64": b64, "mime_type": mime, "id": "lc_img_1", "extras": {"page": 3}}
    if form == "v1_url":
        return {"type": "image", "url": url, "mime_type": mime, "id": "lc_img_2"}
    if form == "v0":
        return {"type": "image", "source_type": "base64", "data": b64, "mime_type": mime, "caption": "p3"}
    if form == "anthropic":
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": mime, "data": b64},
            "cache_control": {"type": "ephemeral"},
        }
    raise ValueError(form)


FORMS = ["image_url", "image_url_str", "input_image", "v1", "v1_url", "v0", "anthropic"]


def image_payload(blk: dict[str, Any]) -> tuple[str, str | None]:
    """(base64 payload, MIME type) of any image block form, as written."""
    if blk["type"] == "image_url":
        url = blk["image_url"]["url"] if isinstance(blk["image_url"], dict) else blk["image_url"]
    elif blk["type"] == "input_image":
        url = blk["image_url"]
    elif "source" in blk:
        return blk["source"]["data"], blk["source"]["media_type"]
    elif "data" in blk:
        return blk["data"], blk.get("mime_type")
    elif "base64" in blk:
        return blk["base64"], blk.get("mime_type")
    else:
        url = blk["url"]
    head, _, payload = url.partition(",")
    return payload, head[5:].split(";")[0]


def decode(blk: dict[str, Any]) -> Image.Image:
    """The image in any block form, decoded with Pillow."""
    payload, _ = image_payload(blk)
    img = Image.open(io.BytesIO(base64.b64decode(payload)))
    img.load()
    return img


def without_image(blk: dict[str, Any]) -> dict[str, Any]:
    """The block with its image payload (and MIME type) blanked, to compare the other keys."""
    out = {k: v for k, v in blk.items() if k not in ("base64", "data", "mime_type", "url")}
    if isinstance(blk.get("image_url"), dict):
        out["image_url"] = {k: v for k, v in blk["image_url"].items() if k != "url"}
    elif "image_url" in blk:
        out["image_url"] = None
    if isinstance(blk.get("source"), dict):
        out["source"] = {k: v for k, v in blk["source"].items() if k not in ("data", "media_type")}
    return out
