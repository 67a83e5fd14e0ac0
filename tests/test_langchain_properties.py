"""Property-based: over generated conversations, only image blocks change, each in its own form."""

from __future__ import annotations

import base64
import copy

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.language_models._utils import _normalize_messages
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from cares_integrations.langchain import CaresImageResizer
from cares_integrations.langchain.blocks import read_image_block
from helpers import encode, render_page
from langchain_helpers import FORMS, SMALL, CountingRouter, RecordingChatModel, block, decode, without_image

_PAGES = {
    "portrait-png": (render_page(300, 400, text_px=9, lines=8), "PNG", "image/png"),
    "landscape-jpeg": (render_page(260, 180, text_px=9, lines=5), "JPEG", "image/jpeg"),
    "tiny-png": (render_page(90, 70, text_px=6, lines=3), "PNG", "image/png"),  # below SMALL: unchanged
}
_ENCODED = {k: (base64.b64encode(encode(img, fmt)).decode("ascii"), mime, img.size) for k, (img, fmt, mime) in _PAGES.items()}

texts = st.text(alphabet="abc xyz?.", min_size=0, max_size=12)
text_blocks = texts.map(lambda t: {"type": "text", "text": t})
image_blocks = st.tuples(st.sampled_from(FORMS), st.sampled_from(sorted(_ENCODED))).map(
    lambda fp: block(fp[0], b64=_ENCODED[fp[1]][0], mime=_ENCODED[fp[1]][1]) | {"_page": fp[1]}
)
other_blocks = st.sampled_from(
    [{"type": "tool_use", "id": "t", "name": "x", "input": {}}, {"type": "reasoning", "reasoning": "hm"}]
)
mixed = st.lists(st.one_of(text_blocks, image_blocks, texts), min_size=0, max_size=4)
kwargs_ = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2)
ids = st.one_of(st.none(), st.text(alphabet="abcdef0123", min_size=1, max_size=6))


def _strip(content):
    """Drop the helper's page tag (kept apart so blocks stay exactly as a user would write them)."""
    if isinstance(content, str):
        return content
    return [{k: v for k, v in b.items() if k != "_page"} if isinstance(b, dict) else b for b in content]


@st.composite
def messages(draw):
    kind = draw(st.sampled_from(["system", "human", "ai", "tool"]))
    mid = draw(ids)
    if kind == "system":
        return SystemMessage(content=draw(st.one_of(texts, st.lists(text_blocks, max_size=2))), id=mid)
    if kind == "human":
        content = draw(st.one_of(texts, mixed))
        return HumanMessage(content=_strip(content), id=mid, name=draw(st.one_of(st.none(), st.just("u"))),
                            additional_kwargs=draw(kwargs_))
    if kind == "ai":
        calls = draw(st.lists(st.builds(lambda i: {"name": "look", "args": {"page": i}, "id": f"c{i}"},
                                        st.integers(0, 9)), max_size=2, unique_by=lambda c: c["id"]))
        content = draw(st.one_of(texts, st.lists(st.one_of(text_blocks, other_blocks), max_size=2)))
        return AIMessage(content=content, tool_calls=calls, id=mid, response_metadata={"model": "m"},
                         additional_kwargs=draw(kwargs_))
    content = draw(st.one_of(texts, st.lists(st.one_of(text_blocks, image_blocks), max_size=2)))
    return ToolMessage(content=_strip(content), tool_call_id="c1", id=mid, artifact=draw(kwargs_))


def _pages_in(content):
    return [b["_page"] for b in content if isinstance(b, dict) and "_page" in b] if isinstance(content, list) else []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(messages(), min_size=1, max_size=5))
def test_only_images_change_each_in_its_own_form(convo):
    before = [copy.deepcopy(m.model_dump()) for m in convo]
    router = CountingRouter()
    model = RecordingChatModel()
    resizer = CaresImageResizer(router=router)
    out = resizer.invoke(convo)
    calls = router.calls
    (resizer | model).invoke(convo)

    assert [m.model_dump() for m in convo] == before  # the caller's objects are untouched
    assert len(out) == len(convo)
    n_images = 0
    for old, new in zip(convo, out):
        assert type(new) is type(old)
        for field in ("id", "name", "additional_kwargs", "type"):
            assert getattr(new, field) == getattr(old, field)
        # only the routing summary is added, on the last message of a conversation with images
        assert {k: v for k, v in new.response_metadata.items() if k != "cares"} == old.response_metadata
        if isinstance(old, AIMessage):
            assert new.tool_calls == old.tool_calls
        if isinstance(old, ToolMessage):
            assert new.tool_call_id == old.tool_call_id and new.artifact == old.artifact
        if isinstance(old.content, str):
            assert new.content == old.content
            continue
        assert len(new.content) == len(old.content)
        for ob, nb in zip(old.content, new.content):
            ref = read_image_block(ob)
            if ref is None:
                assert nb == ob
                continue
            n_images += 1
            assert read_image_block(nb).form == ref.form
            assert without_image(nb) == without_image(ob)
            original = decode(ob)
            img = decode(nb)
            assert max(img.size) == min(SMALL, max(original.size))
            assert img.format == original.format
    assert calls == (1 if n_images else 0)
    assert model.received[0] == _normalize_messages(out)  # the model is sent exactly the result
