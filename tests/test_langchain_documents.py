"""CaresDocumentTransformer: retrieved Documents' page images resized for the query."""

from __future__ import annotations

import base64
import copy
import io

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import BaseDocumentCompressor, BaseDocumentTransformer, Document
from PIL import Image

from cares_integrations import ImageDecodeError
from cares_integrations.langchain import CaresDocumentTransformer
from langchain_helpers import CORRUPT_B64, PAGE, PAGE_B64, PAGE_URL, SMALL, CountingRouter


def _size(value) -> tuple[int, int]:
    if isinstance(value, Image.Image):
        return value.size
    payload = value.partition(",")[2] if value.startswith("data:") else value
    return Image.open(io.BytesIO(base64.b64decode(payload))).size


def docs() -> list[Document]:
    return [
        Document("summary of page 1", metadata={"image": PAGE_B64, "page": 1, "mime_type": "image/png"}, id="d1"),
        Document("no image here", metadata={"page": 2}, id="d2"),
        Document("summary of page 3", metadata={"image": PAGE, "page": 3}, id="d3"),
    ]


def test_resizes_metadata_images_in_one_call_and_keeps_everything_else():
    router = CountingRouter()
    originals = docs()
    before = copy.deepcopy([d.model_dump() for d in originals])
    t = CaresDocumentTransformer(router=router)
    assert isinstance(t, BaseDocumentTransformer) and isinstance(t, BaseDocumentCompressor)
    out = t.transform_documents(originals, query="Revenue for item 3?")
    assert router.calls == 1 and router.queries == [["Revenue for item 3?"] * 2]
    assert [d.model_dump() for d in originals] == before and originals[2].metadata["image"] is PAGE
    assert [d.id for d in out] == ["d1", "d2", "d3"] and all(a is not b for a, b in zip(out, originals))
    assert max(_size(out[0].metadata["image"])) == SMALL and isinstance(out[0].metadata["image"], str)
    assert max(_size(out[2].metadata["image"])) == SMALL and isinstance(out[2].metadata["image"], Image.Image)
    assert out[0].metadata["page"] == 1 and out[0].page_content == "summary of page 1"
    assert out[0].metadata["cares"]["send_size"] == [90, SMALL] and out[0].metadata["cares"]["changed"]
    assert out[1].metadata == {"page": 2}


def test_format_change_updates_mime_type_and_page_content_images():
    t = CaresDocumentTransformer(router=CountingRouter(), image_format="JPEG", content_is_image=True)
    out = t.transform_documents(docs()[:1] + [Document(PAGE_URL, id="x")], query="q")
    assert out[0].metadata["mime_type"] == "image/jpeg"
    assert out[1].page_content.startswith("data:image/jpeg;base64,") and max(_size(out[1].page_content)) == SMALL
    assert out[1].metadata["cares"]["changed"]


async def test_async_and_compressor_forms():
    router = CountingRouter()
    t = CaresDocumentTransformer(router=router, image_key="page_image", decision_key="routing")
    d = [Document("p", metadata={"page_image": PAGE_B64})]
    out = await t.atransform_documents(d, query="q")
    assert max(_size(out[0].metadata["page_image"])) == SMALL and "routing" in out[0].metadata
    out = await t.acompress_documents(d, "q2")
    assert router.queries[-1] == ["q2"] and max(_size(out[0].metadata["page_image"])) == SMALL
    assert t.compress_documents(d, "q3")[0].metadata["routing"]["changed"]


def test_errors_are_clear():
    t = CaresDocumentTransformer(router=CountingRouter())
    with pytest.raises(TypeError, match="query"):
        t.transform_documents(docs())
    with pytest.raises(TypeError, match="not a langchain Document"):
        t.transform_documents(["text"], query="q")
    bad = [Document("x", metadata={"image": CORRUPT_B64})]
    with pytest.raises(ImageDecodeError):
        t.transform_documents(bad, query="q")
    out = CaresDocumentTransformer(router=CountingRouter(), on_error="passthrough").transform_documents(bad, query="q")
    assert out[0].metadata["image"] == CORRUPT_B64 and "ImageDecodeError" in out[0].metadata["cares"]["error"]
