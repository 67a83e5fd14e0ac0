"""CaresImageResizer with real langchain-core objects: block forms, input kinds, batching,
events, errors and follow-up questions."""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import ConfigurableField
from langchain_core.tracers.base import BaseTracer

from cares_integrations import FixedRouter, ImageDecodeError, ResolutionPolicy
from cares_integrations.langchain import EVENT_NAME, CaresImageResizer
from langchain_helpers import (
    CORRUPT_B64,
    FORMS,
    PAGE_B64,
    SMALL,
    CountingRouter,
    RecordingChatModel,
    block,
    decode,
    image_payload,
    without_image,
)


def human(*blocks: Any, text: str = "What is the revenue for item 10?") -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": text}, *blocks], id="h1", name="alice")


def resizer(router=None, **kwargs) -> CaresImageResizer:
    return CaresImageResizer(router=router or CountingRouter(), **kwargs)


# -- every block form, end to end ---------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_each_block_form_reaches_the_model_resized_with_its_keys(form):
    model = RecordingChatModel()
    original = block(form)
    chain = resizer() | model
    chain.invoke([SystemMessage("be brief"), human(original)])

    sent = model.received[0]
    assert [m.type for m in sent] == ["system", "human"]
    text_block, image_block = sent[1].content
    assert text_block == {"type": "text", "text": "What is the revenue for item 10?"}
    img = decode(image_block)
    assert max(img.size) == SMALL and img.size[0] < img.size[1]
    if form == "v0":  # the chat model itself normalises v0 blocks to v1, extras kept
        assert image_block["type"] == "image" and image_block["extras"] == {"caption": "p3"}
    else:
        assert without_image(image_block) == without_image(original)
        assert set(image_block) == set(original)


@pytest.mark.parametrize("form", FORMS)
def test_format_change_updates_the_mime_type_in_each_form(form):
    out = resizer(image_format="jpeg").invoke([human(block(form))])
    new = out[0].content[1]
    _, mime = image_payload(new)
    assert mime == "image/jpeg"
    assert decode(new).format == "JPEG"
    assert without_image(new) == without_image(block(form))


def test_image_already_small_enough_is_the_same_block_object():
    original = human(block("v1"))
    out = resizer(CountingRouter(2000)).invoke([original])
    assert out[0].content is original.content  # nothing changed: the very same blocks go on
    assert out[0].response_metadata["cares"]["n_resized"] == 0 and original.response_metadata == {}


def test_default_target_sizes_for_the_provider_and_counts_tokens(page_data_url):
    events = []

    class Catch(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append((name, data))

    msg = human({"type": "image_url", "image_url": {"url": page_data_url}})
    out = resizer(FixedRouter(512), target="openai:gpt-4o").invoke([msg], config={"callbacks": [Catch()]})
    img = decode(out[0].content[1])
    assert max(img.size) >= 512 and img.size != (850, 1100)
    [(name, data)] = events
    assert name == EVENT_NAME and data["target"] == "openai:gpt-4o"
    assert data["tokens_after"] < data["tokens_before"]
    assert data["images"][0]["send_size"] == list(img.size)


def test_default_router_with_a_token_target(page_data_url, page_b64):
    pytest.importorskip("cares_integrations.routers.textscale")
    model = RecordingChatModel()
    events = []

    class Catch(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append(data)

    resizer_ = CaresImageResizer(target="openai:gpt-4o")  # router: load_router()
    inputs = [[human({"type": "image_url", "image_url": {"url": page_data_url}})],
              [human(block("anthropic", b64=page_b64), text="What is the title?")]]
    (resizer_ | model).batch(inputs, config={"callbacks": [Catch()]})
    assert len(events) == 2 and {e["router"] for e in events} == {resizer_.router.name}
    for event in events:
        img = event["images"][0]
        assert img["target"] == "openai:gpt-4o" and img["original_size"] == [850, 1100]
        assert event["tokens_after"] <= event["tokens_before"]
    sent_sizes = sorted(list(decode(sent[0].content[1]).size) for sent in model.received)
    assert sent_sizes == sorted(e["images"][0]["send_size"] for e in events)


# -- input kinds --------------------------------------------------------------------------------


def test_returns_the_same_kind_it_received():
    r = resizer()
    msg = human(block("v1"))
    value = ChatPromptValue(messages=[msg])
    out = r.invoke(value)
    assert type(out) is ChatPromptValue and max(decode(out.messages[0].content[1]).size) == SMALL

    assert isinstance(r.invoke(msg), HumanMessage)
    assert isinstance(r.invoke([msg]), list)
    as_tuple = r.invoke((msg,))
    assert isinstance(as_tuple, tuple) and max(decode(as_tuple[0].content[1]).size) == SMALL

    s = StringPromptValue(text="hello")
    assert r.invoke(s) is s
    assert r.invoke("plain text") == "plain text"


def test_message_dicts_and_pairs_are_rewritten_in_their_own_form():
    r = resizer()
    as_dict = {"role": "user", "content": [{"type": "text", "text": "q?"}, block("image_url")], "name": "bob"}
    out = r.invoke([as_dict, ("assistant", "fine")])
    assert out[0]["name"] == "bob" and out[0]["role"] == "user"
    assert max(decode(out[0]["content"][1]).size) == SMALL
    assert out[1] == ("assistant", "fine")
    assert as_dict["content"][1] == block("image_url")  # caller's dict untouched


def test_prompt_template_with_image_placeholder_to_recording_model():
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer from the page."),
            ("human", [{"type": "text", "text": "{question}"}, {"type": "image_url", "image_url": {"url": "{page}"}}]),
        ]
    )
    model = RecordingChatModel()
    router = CountingRouter()
    chain = prompt | CaresImageResizer(router=router) | model
    chain.invoke({"question": "Total for item 3?", "page": "data:image/png;base64," + PAGE_B64})
    assert router.queries == [["Total for item 3?"]]
    assert max(decode(model.received[0][1].content[1]).size) == SMALL


def test_bad_input_type_names_the_type():
    with pytest.raises(TypeError, match="got int"):
        resizer().invoke(42)


def test_caller_objects_are_not_mutated():
    msgs = [
        SystemMessage("sys", id="s"),
        human(block("v1"), block("anthropic"), block("image_url_str")),
        AIMessage("", tool_calls=[{"name": "look", "args": {"p": 1}, "id": "c1"}], additional_kwargs={"k": [1]}),
        ToolMessage(content=[block("image_url")], tool_call_id="c1", artifact={"x": 1}),
    ]
    value = ChatPromptValue(messages=msgs)
    before = copy.deepcopy(value.model_dump())
    ids = [id(m) for m in msgs]
    contents = [copy.deepcopy(m.content) for m in msgs]
    out = resizer().invoke(value)
    assert value.model_dump() == before
    assert [id(m) for m in value.messages] == ids
    assert [m.content for m in msgs] == contents
    assert out.messages[0] is msgs[0]  # unchanged messages pass through as the same objects
    assert out.messages[1] is not msgs[1] and out.messages[3] is not msgs[3]
    assert out.messages[2].tool_calls == msgs[2].tool_calls


# -- batching -------------------------------------------------------------------------------------


def test_batch_routes_every_image_of_every_input_in_one_call():
    router = CountingRouter()
    model = RecordingChatModel()
    chain = resizer(router) | model
    inputs = [[human(block("v1"), block("image_url"), text=f"question {i}")] for i in range(5)]
    chain.batch(inputs)
    assert router.calls == 1
    assert sorted(q for qs in router.queries for q in qs) == sorted([f"question {i}" for i in range(5)] * 2)
    assert len(model.received) == 5
    for sent in model.received:
        assert all(max(decode(b).size) == SMALL for b in sent[0].content[1:])


async def test_abatch_and_ainvoke_make_one_call_each_off_the_event_loop():
    router = CountingRouter()
    r = resizer(router)
    outs = await r.abatch([[human(block("v1"))], [human(block("anthropic"), block("input_image"))]])
    assert router.calls == 1
    assert max(decode(outs[1][0].content[2]).size) == SMALL
    out = await r.ainvoke([human(block("v0"), block("v1"))])
    assert router.calls == 2 and max(decode(out[0].content[2]).size) == SMALL
    assert threading.get_ident() not in router.threads  # routing ran in worker threads


async def test_stream_and_astream_pass_resized_images_on():
    model = RecordingChatModel()
    chain = resizer() | model
    msg = [human(block("v1"))]
    assert [c.content for c in chain.stream(msg)] == ["ok"]
    assert [c.content async for c in chain.astream(msg)] == ["ok"]
    assert [max(decode(sent[0].content[1]).size) for sent in model.received] == [SMALL, SMALL]


def test_invoke_with_many_images_is_one_call():
    router = CountingRouter()
    resizer(router).invoke([human(*(block(f) for f in FORMS))])
    assert router.calls == 1 and len(router.queries[0]) == len(FORMS)


# -- observability ----------------------------------------------------------------------------


async def test_astream_events_show_the_decisions():
    model = RecordingChatModel()
    chain = resizer(target=None) | model
    events = [e async for e in chain.astream_events([human(block("image_url"), block("v1"))], version="v2")]
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert [e["name"] for e in custom] == [EVENT_NAME]
    data = custom[0]["data"]
    assert data["n_images"] == 2 and data["n_resized"] == 2
    assert [img["form"] for img in data["images"]] == ["image_url", "v1"]
    assert all(max(img["send_size"]) == SMALL and img["original_size"] == [300, 400] for img in data["images"])
    assert data["images"][0]["question"] == "What is the revenue for item 10?"


async def test_astream_events_with_a_token_target():
    r = resizer(CountingRouter(256), target="anthropic:claude-sonnet-4")
    events = [e async for e in r.astream_events([human(block("anthropic"))], version="v2")]
    [data] = [e["data"] for e in events if e["event"] == "on_custom_event"]
    assert data["target"] == "anthropic:claude-sonnet-4"
    assert data["tokens_before"] > data["tokens_after"] > 0


def test_one_event_per_batch_input_and_run_metadata_in_tracers():
    runs = []
    events = []

    class Tracer(BaseTracer):
        def _persist_run(self, run):
            runs.append(run)

        def on_custom_event(self, name, data, *, run_id, **kwargs):
            events.append((name, run_id))

    r = resizer()
    tracer = Tracer()
    r.batch([[human(block("v1"))], [human(block("v1"), block("v0"))]], config={"callbacks": [tracer]})
    assert len(events) == 2 and len({run_id for _, run_id in events}) == 2
    metas = sorted((run.extra["metadata"]["cares"] for run in runs), key=lambda m: m["n_images"])
    assert [m["n_images"] for m in metas] == [1, 2]
    assert metas[1]["sizes"][0] == {"from": [300, 400], "to": [90, SMALL]}


def test_configurable_target():
    r = resizer(FixedRouter(512)).configurable_fields(target=ConfigurableField(id="cares_target"))
    events = []

    class Catch(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append(data)

    big = block("image_url", b64=__import__("base64").b64encode(
        __import__("conftest").encode(__import__("conftest").render_page(), "PNG")).decode())
    r.invoke([human(big)], config={"configurable": {"cares_target": "openai:gpt-4o"}, "callbacks": [Catch()]})
    assert events[0]["target"] == "openai:gpt-4o" and events[0]["tokens_before"] is not None


def test_policy_override_caps_the_size():
    r = resizer(CountingRouter(300), policy=ResolutionPolicy(max_long_side=100))
    out = r.invoke([human(block("v1"))])
    assert max(decode(out[0].content[1]).size) == 100
    assert r.router.policy.max_long_side is None  # the caller's router is not changed


def test_policy_override_follows_a_reassigned_router():
    r = resizer(CountingRouter(300), policy=ResolutionPolicy(max_long_side=1000))
    assert max(decode(r.invoke([human(block("v1"))])[0].content[1]).size) == 300
    r.router = CountingRouter(200)
    assert max(decode(r.invoke([human(block("v1"))])[0].content[1]).size) == 200


# -- errors ---------------------------------------------------------------------------------------


def test_corrupt_image_raises_with_its_location():
    msg = human(block("v1"), block("anthropic", b64=CORRUPT_B64))
    with pytest.raises(ImageDecodeError, match=r"message 0, content block 2 \(anthropic block\)"):
        resizer().invoke([msg])


def test_corrupt_image_passes_through_and_is_recorded():
    events = []

    class Catch(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append(data)

    bad = block("v1", b64=CORRUPT_B64)
    msg = human(block("image_url"), bad)
    out = resizer(on_error="passthrough").invoke([msg], config={"callbacks": [Catch()]})
    assert out[0].content[2] is msg.content[2] and msg.content[2] == bad
    assert max(decode(out[0].content[1]).size) == SMALL
    assert "ImageDecodeError" in events[0]["images"][1]["error"] and events[0]["n_resized"] == 1


def test_batch_return_exceptions_fails_only_the_bad_input():
    router = CountingRouter()
    outs = resizer(router).batch(
        [[human(block("v1"))], [human(block("v1", b64=CORRUPT_B64))], 42], return_exceptions=True
    )
    assert router.calls == 1
    assert max(decode(outs[0][0].content[1]).size) == SMALL
    assert isinstance(outs[1], ImageDecodeError) and isinstance(outs[2], TypeError)
    with pytest.raises(ImageDecodeError):
        resizer().batch([[human(block("v1"))], [human(block("v1", b64=CORRUPT_B64))]])


def test_remote_url_left_as_is_without_fetch_policy():
    url_block = {"type": "image_url", "image_url": {"url": "https://example.com/page.png"}}
    router = CountingRouter()
    msg = human(url_block)
    assert resizer(router).invoke([msg])[0].content is msg.content
    assert router.calls == 0


def test_file_id_references_are_left_as_is_and_reported():
    events = []

    class Catch(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            events.append(data)

    ref = {"type": "image", "file_id": "file-123"}
    msg = human(ref, {"type": "input_image", "file_id": "file-9"})
    assert resizer().invoke([msg], config={"callbacks": [Catch()]})[0].content is msg.content
    assert [img["changed"] for img in events[0]["images"]] == [False, False]
    assert all(img["skipped_reason"] for img in events[0]["images"])


# -- questions ------------------------------------------------------------------------------------


def test_follow_up_question_reroutes_an_image_in_an_earlier_turn():
    router = CountingRouter()
    first = human(block("v1"), text="What is the title?")
    convo = [first, AIMessage("Quarterly report 2024"), HumanMessage("And the revenue for item 10?")]
    out = resizer(router).invoke(convo)
    assert router.queries == [["And the revenue for item 10?"]]
    assert out[0] is not first and max(decode(out[0].content[1]).size) == SMALL
    assert out[1] is convo[1] and out[2].content is convo[2].content  # the last one only gains the summary


def test_images_without_any_question_are_routed_for_the_empty_string():
    router = CountingRouter()
    resizer(router).invoke([SystemMessage("sys"), HumanMessage(content=[block("v1")])])
    assert router.queries == [[""]]


def test_question_getter_overrides_the_default():
    router = CountingRouter()
    seen = []

    def getter(messages, index):
        seen.append(index)
        return f"custom {index}"

    resizer(router, question_getter=getter).invoke([SystemMessage("s"), human(block("v1"), block("v0"))])
    assert router.queries == [["custom 1", "custom 1"]] and seen == [1]
    with pytest.raises(TypeError, match="question_getter must return a string"):
        resizer(question_getter=lambda m, i: 3).invoke([human(block("v1"))])


def test_importing_without_langchain_core_names_the_extra():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'langchain_core' or name.startswith('langchain_core.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    import cares_integrations.langchain\n"
        "except ImportError as e:\n"
        "    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ERR" in out and "cares-integrations[langchain]" in out


@pytest.fixture(scope="module")
def page_server():
    """The loopback server handing out the test page (remote fetching without a network)."""
    from helpers import loopback_server
    from langchain_helpers import PAGE_PNG

    with loopback_server({"/page.png": PAGE_PNG}) as server:
        yield server.url()


def test_fetched_url_images_come_back_inline_in_their_own_form(page_server):
    from cares_integrations import FetchPolicy

    router = CountingRouter(fetch=FetchPolicy(allowed_hosts=["127.0.0.1"]))
    blocks = [
        {"type": "image_url", "image_url": {"url": page_server, "detail": "high"}},
        {"type": "image", "url": page_server, "id": "b1"},
        {"type": "image", "source_type": "url", "url": page_server},
        {"type": "image", "source": {"type": "url", "url": page_server}, "cache_control": {"type": "ephemeral"}},
        {"type": "input_image", "image_url": page_server},
    ]
    out = resizer(router).invoke([human(*blocks)])[0].content[1:]
    assert all(max(decode(b).size) == SMALL for b in out)
    assert out[0]["image_url"]["url"].startswith("data:image/png;base64,") and out[0]["image_url"]["detail"] == "high"
    assert out[1] == {"type": "image", "id": "b1", "base64": out[1]["base64"], "mime_type": "image/png"}
    assert out[2]["source_type"] == "base64" and "url" not in out[2] and out[2]["mime_type"] == "image/png"
    assert out[3]["source"]["type"] == "base64" and out[3]["source"]["media_type"] == "image/png"
    assert out[3]["cache_control"] == {"type": "ephemeral"} and "url" not in out[3]["source"]
    assert out[4]["image_url"].startswith("data:image/png;base64,")
