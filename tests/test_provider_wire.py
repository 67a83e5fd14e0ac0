"""What the real provider clients put on the wire after routing: sizes, request knobs, bytes.

langchain-openai, langchain-anthropic and langchain-google-genai talk to a loopback server that
records each request body (tests/recording_server.py, tests/helpers.Loopback).
"""

from __future__ import annotations

import base64
import io
import json
import warnings

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.tracers.base import BaseTracer
from PIL import Image

from cares_integrations import FixedRouter
from cares_integrations.langchain import CaresImageResizer, routing_summary
from helpers import Loopback, Reply, encode, render_page
from recording_server import RecordingServer

pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

LETTER = render_page(1700, 2200, text_px=28, lines=40)  # a 200-dpi letter page
LETTER_PNG = encode(LETTER, "PNG")
LETTER_B64 = base64.b64encode(LETTER_PNG).decode("ascii")
LETTER_URL = "data:image/png;base64," + LETTER_B64


def _size_and_bytes(url_or_b64: str) -> tuple[tuple[int, int], int, str]:
    b64 = url_or_b64.split(",", 1)[1] if url_or_b64.startswith("data:") else url_or_b64
    data = base64.b64decode(b64)
    img = Image.open(io.BytesIO(data))
    return img.size, len(data), img.format


def _openai_image(body: dict) -> dict:
    [part] = [p for p in body["messages"][0]["content"] if p.get("type") == "image_url"]
    return part["image_url"]


def _ask(model, resizer, block, question="What is the title of this page?"):
    events = []
    from langchain_core.callbacks import BaseCallbackHandler

    class Events(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append(data)

    chain = resizer | model
    chain.invoke([HumanMessage(content=[{"type": "text", "text": question}, block])], config={"callbacks": [Events()]})
    return events[-1]


@pytest.fixture()
def server():
    with RecordingServer() as s:
        yield s


def _openai(server):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="gpt-4o", base_url=server.url + "/v1", api_key="test", max_retries=0)


def test_openai_title_question_at_512_goes_out_low_detail_for_85_tokens(server):
    report = _ask(_openai(server), CaresImageResizer(router=FixedRouter(512), target="openai:gpt-4o"),
                  {"type": "image_url", "image_url": {"url": LETTER_URL}})
    sent = _openai_image(server.requests[-1])
    size, n_bytes, fmt = _size_and_bytes(sent["url"])
    assert sent["detail"] == "low" and max(size) <= 512 and fmt == "PNG"
    assert n_bytes <= len(LETTER_PNG)
    assert report["tokens_before"] == 765 and report["tokens_after"] == 85 < 765
    assert report["images"][0]["step"] == "detail=low"


def test_openai_detail_is_always_explicit_and_high_when_the_request_needs_tiles(server):
    report = _ask(_openai(server), CaresImageResizer(router=FixedRouter(1024), target="openai:gpt-4o"),
                  {"type": "image", "base64": LETTER_B64, "mime_type": "image/png"})  # a v1 block
    sent = _openai_image(server.requests[-1])
    size, n_bytes, _ = _size_and_bytes(sent["url"])
    assert sent["detail"] == "high" and size == (768, 994) and n_bytes <= len(LETTER_PNG)
    image = report["images"][0]
    assert image["tokens_after"] == image["tokens_before"] == 765
    assert image["cannot_save"].startswith("cannot save on openai:gpt-4o: the router asks for 1024 px")


def test_a_low_detail_block_is_a_cap_priced_at_85(server):
    report = _ask(_openai(server), CaresImageResizer(router=FixedRouter(1024), target="openai:gpt-4o"),
                  {"type": "image_url", "image_url": {"url": LETTER_URL, "detail": "low"}})
    sent = _openai_image(server.requests[-1])
    size, _, _ = _size_and_bytes(sent["url"])
    assert sent["detail"] == "low" and max(size) <= 512
    assert report["tokens_after"] == 85 and report["images"][0]["target"] == "openai:gpt-4o:low"


def test_fixed_384_small_image_gets_low_detail(server):
    small = encode(render_page(396, 512, text_px=10, lines=20), "PNG")
    url = "data:image/png;base64," + base64.b64encode(small).decode()
    report = _ask(_openai(server), CaresImageResizer(router=FixedRouter(384), target="openai:gpt-4o"),
                  {"type": "image_url", "image_url": {"url": url}})
    assert _openai_image(server.requests[-1])["detail"] == "low"
    assert report["tokens_before"] == 255 and report["tokens_after"] == 85


def test_anthropic_gets_the_decided_size_and_never_more_bytes(server):
    from langchain_anthropic import ChatAnthropic

    model = ChatAnthropic(model="claude-sonnet-4-5", base_url=server.url, api_key="test", max_retries=0)
    report = _ask(model, CaresImageResizer(router=FixedRouter(768), target="anthropic:claude-sonnet-4-5"),
                  {"type": "image_url", "image_url": {"url": LETTER_URL}})
    [part] = [p for p in server.requests[-1]["messages"][0]["content"] if p.get("type") == "image"]
    size, n_bytes, _ = _size_and_bytes(part["source"]["data"])
    assert list(size) == report["images"][0]["send_size"] and n_bytes <= len(LETTER_PNG)
    assert report["tokens_after"] < report["tokens_before"]


def test_no_saving_sends_the_original_jpeg_untouched(server):
    from langchain_anthropic import ChatAnthropic

    jpeg = encode(render_page(600, 800, text_px=12, lines=20).convert("RGB"), "JPEG", quality=80)
    b64 = base64.b64encode(jpeg).decode()
    model = ChatAnthropic(model="claude-sonnet-4-5", base_url=server.url, api_key="test", max_retries=0)
    report = _ask(model, CaresImageResizer(router=FixedRouter(2000), target="anthropic:claude-sonnet-4-5"),
                  {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": b64}})
    [part] = [p for p in server.requests[-1]["messages"][0]["content"] if p.get("type") == "image"]
    assert part["source"]["data"] == b64 and part["source"]["media_type"] == "image/jpeg"
    assert "cannot save" in report["images"][0]["cannot_save"]


def test_gemini_3_gets_media_resolution_per_image():
    pytest.importorskip("langchain_google_genai")
    from langchain_google_genai import ChatGoogleGenerativeAI

    bodies = []

    def answer(request):
        bodies.append(json.loads(request.body))
        reply = {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
                 "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}}
        return Reply(json.dumps(reply).encode(), headers={"Content-Type": "application/json"})

    path = "/v1beta/models/gemini-3-flash-preview:generateContent"
    server = Loopback({path: answer, path.replace("v1beta", "v1"): answer}).start()
    try:
        model = ChatGoogleGenerativeAI(model="gemini-3-flash-preview", base_url=server.url(""), api_key="test",
                                       max_retries=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = _ask(model, CaresImageResizer(router=FixedRouter(512), target="gemini-3"),
                          {"type": "image_url", "image_url": {"url": LETTER_URL}})
    finally:
        server.stop()
    [part] = [p for p in bodies[-1]["contents"][0]["parts"] if "inlineData" in p or "inline_data" in p]
    assert part["mediaResolution"] == {"level": "MEDIA_RESOLUTION_LOW"}
    inline = part.get("inlineData") or part["inline_data"]
    size, n_bytes, _ = _size_and_bytes(inline["data"])
    assert list(size) == report["images"][0]["send_size"] and n_bytes <= len(LETTER_PNG)
    assert report["tokens_before"] == 1120 and report["tokens_after"] == 280


def test_cares_savings_totals_a_chain_run(server):
    from cares_integrations.langchain import cares_savings

    chain = CaresImageResizer(router=FixedRouter(512), target="openai:gpt-4o") | _openai(server)
    block = {"type": "image_url", "image_url": {"url": LETTER_URL}}
    with cares_savings() as savings:
        chain.batch([[HumanMessage(content=[{"type": "text", "text": "title?"}, block])]] * 2)
    assert savings.images == 2 and savings.resized == 2
    assert savings.per_target == {"openai:gpt-4o": {"images": 2, "tokens_before": 1530, "tokens_after": 170}}
    assert 0 < savings.bytes_after < savings.bytes_before == 2 * len(LETTER_PNG)
    assert "765" not in repr(savings) and "1530 -> 170" in repr(savings)


# -- per-request limits: images per request and Anthropic's 2000-px rule above 20 images ------------
WIDE = encode(render_page(2400, 1200, text_px=20, lines=30), "PNG")  # over 2000 px, within Opus 4.7's 2576
WIDE_URL = "data:image/png;base64," + base64.b64encode(WIDE).decode("ascii")


def _claude(server, model="claude-opus-4-7"):
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(model=model, base_url=server.url, api_key="test", max_retries=0)


def _pages(n, url=WIDE_URL):
    return [HumanMessage(content=[{"type": "text", "text": "Which page lists item 10?"},
                                  *({"type": "image_url", "image_url": {"url": url}} for _ in range(n))])]


def _sent_sizes(body):
    return [_size_and_bytes(p["source"]["data"])[0] for p in body["messages"][0]["content"] if p.get("type") == "image"]


@pytest.mark.parametrize("n, fits", [(20, False), (21, True)])
def test_anthropic_more_than_20_images_are_each_fitted_to_2000_px(server, n, fits):
    events = []
    from langchain_core.callbacks import BaseCallbackHandler

    class Events(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append(data)

    chain = CaresImageResizer(router=FixedRouter(2576), target="anthropic:claude-opus-4-7") | _claude(server)
    chain.invoke(_pages(n), config={"callbacks": [Events()]})
    sizes = _sent_sizes(server.requests[-1])
    assert len(sizes) == n  # nothing dropped
    images = events[-1]["images"]
    if fits:
        assert all(max(s) <= 2000 for s in sizes) and set(sizes) == {(2000, 1000)}
        assert all("2000x2000 px" in img["payload"] and "more than 20 images" in img["payload"] for img in images)
        assert all(img["tokens_after"] == 72 * 36 for img in images)  # what Claude charges for 2000x1000
    else:  # 20 images: the 8000-px limit, so the page goes out at the size Opus 4.7 keeps
        assert set(sizes) == {(2400, 1200)}
        assert not any("2000x2000" in (img.get("payload") or "") for img in images)


def test_too_many_images_for_anthropic_raise_before_the_call(server):
    from cares_integrations import TooManyImagesError

    small = "data:image/png;base64," + base64.b64encode(encode(render_page(64, 64, text_px=6, lines=2), "PNG")).decode()
    chain = CaresImageResizer(router=FixedRouter(512), target="anthropic:claude-sonnet-4-5") | _claude(server, "claude-sonnet-4-5")
    with pytest.raises(TooManyImagesError, match="601 images; Anthropic accepts at most 600 per request") as info:
        chain.invoke(_pages(601, small))
    assert info.value.limit == 600 and info.value.provider == "Anthropic" and info.value.n_images == 601
    assert "'anthropic:claude-sonnet-4-5'" in str(info.value)  # the target as the caller named it
    assert server.requests == []  # never sent, nothing silently dropped


def test_too_many_images_for_openai_raise_in_the_chat_model_wrapper(server):
    from cares_integrations import TooManyImagesError
    from cares_integrations.langchain import CaresChatModel

    small = "data:image/png;base64," + base64.b64encode(encode(render_page(64, 64, text_px=6, lines=2), "PNG")).decode()
    llm = CaresChatModel(model=_openai(server), router=FixedRouter(512))  # target from the model: openai:gpt-4o
    with pytest.raises(TooManyImagesError, match="OpenAI accepts at most 500"):
        llm.invoke(_pages(501, small))
    assert server.requests == []


# -- the chat model's run carries the decision summary ----------------------------------------------
class Tracer(BaseTracer):
    """Records chat-model runs with their input messages and metadata, as LangChainTracer does."""

    def __init__(self):
        super().__init__(_schema_format="original+chat")
        self.runs = []

    def _persist_run(self, run):
        pass

    def _on_chat_model_start(self, run):
        self.runs.append(run)


class Starts(BaseCallbackHandler):
    """What every chat model's ``on_chat_model_start`` is given: the summary and the run metadata."""

    def __init__(self):
        self.seen = []
        self.metadata = []

    def on_chat_model_start(self, serialized, messages, *, metadata=None, **kwargs):
        self.seen.append(routing_summary(messages[0]))
        self.metadata.append(dict(metadata or {}))


@pytest.mark.parametrize("call", ["invoke", "stream"])
def test_lcel_chat_model_run_carries_the_decision_summary(server, call):
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("human", [{"type": "text", "text": "{question}"},
                                                          {"type": "image_url", "image_url": {"url": "{page}"}}])])
    chain = prompt | CaresImageResizer(router=FixedRouter(1024), target="openai:gpt-4o") | _openai(server)
    tracer, starts = Tracer(), Starts()
    inputs = {"question": "What is the title?", "page": LETTER_URL}
    if call == "invoke":
        chain.invoke(inputs, config={"callbacks": [tracer, starts]})
    else:
        assert "".join(c.content for c in chain.stream(inputs, config={"callbacks": [tracer, starts]})) == "done"
    [summary] = starts.seen
    assert summary["target"] == "openai:gpt-4o" and summary["tokens_before"] == summary["tokens_after"] == 765
    assert summary["steps"] == ["detail=high, 4 tiles"]
    assert summary["notes"][0].startswith("cannot save on openai:gpt-4o: the router asks for 1024 px")
    [run] = tracer.runs  # the chat model's own run, as a tracer (LangSmith) records it
    assert run.run_type == "chat_model"
    assert run.inputs["messages"][0][-1]["kwargs"]["response_metadata"]["cares"] == summary
    body = json.dumps(server.requests[-1])
    assert "cares" not in body and "cannot save" not in body  # the summary is not sent to the provider


def test_chat_model_wrapper_puts_the_summary_in_both_runs_metadata(server):
    from cares_integrations.langchain import CaresChatModel

    tracer, starts = Tracer(), Starts()
    llm = CaresChatModel(model=_openai(server), router=FixedRouter(512))
    llm.invoke(_pages(1, LETTER_URL), config={"callbacks": [tracer, starts]})
    outer, inner = tracer.runs  # the wrapper's run, then the wrapped ChatOpenAI's run
    assert inner.parent_run_id == outer.id
    for run in (outer, inner):
        assert run.metadata["cares"]["target"] == "openai:gpt-4o"
        assert run.metadata["cares"]["tokens_before"] == 765 and run.metadata["cares"]["tokens_after"] == 85
    assert starts.metadata[1]["cares"] == inner.metadata["cares"]  # handlers see it as run metadata
    assert starts.seen[1] == inner.metadata["cares"]
