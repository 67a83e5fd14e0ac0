"""CaresMiddleware and CaresChatModel inside real create_agent / LangGraph agents."""

from __future__ import annotations

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402

from agent_helpers import ScriptedToolModel, call, image_sizes, shape  # noqa: E402
from cares_integrations.core.conversation import DecisionCache  # noqa: E402
from cares_integrations.langchain import CaresChatModel, CaresMiddleware, make_page_image_tool  # noqa: E402
from langchain_helpers import PAGE, PAGE_PNG, PAGE_URL, SMALL, CountingRouter  # noqa: E402

ORIGINAL = PAGE.size  # 300x400
ROUTED = (90, SMALL)
# The routers here are FixedRouter(120) with free_detail off: for gpt-4o a 300x400 page is one
# tile, so free detail would grow it back to its own size.


def user(question: str = "What is the total on this page?") -> HumanMessage:
    return HumanMessage(id="user_1", content=[{"type": "text", "text": question},
                                 {"type": "image_url", "image_url": {"url": PAGE_URL}}])


def script() -> list:
    return [call("get_page_image", "call_1", page="p2", question="total"), call("get_page_image", "call_2", page="p2", question="total")]


def build(router, model, **options):
    tool = make_page_image_tool({"p2": PAGE_PNG}, router=CountingRouter(long_side=1000))  # the tool itself keeps 300x400
    return create_agent(model, [tool], middleware=[CaresMiddleware(router=router, target="openai:gpt-4o", **options)])


def test_every_turn_is_routed_and_state_keeps_originals():
    router, model = CountingRouter(free_detail=False), ScriptedToolModel(script=script())
    result = build(router, model).invoke({"messages": [user()]})
    assert len(model.received) == 3  # two tool turns, then the answer
    for sent in model.received:
        sizes = image_sizes(sent)
        assert sizes and all(s == ROUTED for s in sizes), sizes
    assert [len(image_sizes(s)) for s in model.received] == [1, 2, 3]
    # The stored state has every image at its original size.
    stored = result["messages"]
    assert image_sizes(stored) == [ORIGINAL] * 3
    # Routing changes images only: types, ids, tool calls and order are what the state holds.
    assert shape(model.received[-1]) == shape(stored[:-1])
    # The user's page and the tool's page are the same bytes? No: the tool re-encodes; so 2 distinct
    # images for one question: routed once each, then answered from the cache.
    assert router.calls == 2
    assert sum(len(q) for q in router.queries) == 2


def test_repeated_image_same_question_routed_once_new_question_reroutes():
    router, model = CountingRouter(free_detail=False), ScriptedToolModel()
    agent = create_agent(model, [], middleware=[CaresMiddleware(router=router, target="openai:gpt-4o")],
                         checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    agent.invoke({"messages": [user("What is the total?")]}, cfg)
    agent.invoke({"messages": [HumanMessage("What is the total?")]}, cfg)  # same question, page resent
    assert router.calls == 1
    agent.invoke({"messages": [HumanMessage("Who signed it?")]}, cfg)  # a new question re-routes
    assert router.calls == 2
    assert router.queries[-1] == ["Who signed it?"]
    assert all(image_sizes(s) == [ROUTED] for s in model.received)


def test_cache_is_bounded():
    cache = DecisionCache(maxsize=1)
    router, model = CountingRouter(free_detail=False), ScriptedToolModel()
    mw = CaresMiddleware(router=router, target="openai:gpt-4o", cache_size=1)
    agent = create_agent(model, [], middleware=[mw], checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    for q in ("a?", "b?", "a?"):
        agent.invoke({"messages": [user(q)]}, cfg)
    assert len(mw.decision_cache) == 1 and cache.maxsize == 1
    assert router.calls == 3  # "a?" was evicted by "b?"


async def test_sync_async_and_streaming_send_the_same():
    runs = {}
    for mode in ("invoke", "ainvoke", "stream", "astream"):
        model = ScriptedToolModel(script=script())
        agent = build(CountingRouter(free_detail=False), model)
        inputs = {"messages": [user()]}
        if mode == "invoke":
            agent.invoke(inputs)
        elif mode == "ainvoke":
            await agent.ainvoke(inputs)
        elif mode == "stream":
            list(agent.stream(inputs, stream_mode="messages"))
        else:
            [c async for c in agent.astream(inputs, stream_mode="messages")]
        runs[mode] = [(shape(s), image_sizes(s)) for s in model.received]
    assert runs["invoke"] == runs["ainvoke"] == runs["stream"] == runs["astream"]
    assert len(runs["invoke"]) == 3


async def test_event_and_target_from_model():
    model = ScriptedToolModel(model_name="gpt-4o-2024-08-06")
    agent = create_agent(model, [], middleware=[CaresMiddleware(router=CountingRouter(free_detail=False))])
    events = [e async for e in agent.astream_events({"messages": [user()]}, version="v2")
              if e["event"] == "on_custom_event" and e["name"] == "cares_route"]
    assert len(events) == 1
    data = events[0]["data"]
    assert data["target"] == "openai:gpt-4o" and data["n_resized"] == 1
    assert data["tokens_before"] is not None and data["images"][0]["send_size"] == list(ROUTED)


def test_chat_model_wrapper_in_create_agent_and_langgraph():
    from langgraph.prebuilt import create_react_agent

    for make in (lambda m, t: create_agent(m, t), lambda m, t: create_react_agent(m, t)):
        inner = ScriptedToolModel(script=script())
        router = CountingRouter(free_detail=False)
        wrapped = CaresChatModel(model=inner, router=router, target="openai:gpt-4o")
        tool = make_page_image_tool({"p2": PAGE_PNG}, router=CountingRouter(long_side=1000))
        result = make(wrapped, [tool]).invoke({"messages": [user()]})
        assert [len(image_sizes(s)) for s in inner.received] == [1, 2, 3]
        assert all(s == ROUTED for sent in inner.received for s in image_sizes(sent))
        assert image_sizes(result["messages"]) == [ORIGINAL] * 3
        assert shape(inner.received[-1]) == shape(result["messages"][:-1])
        assert inner.bound_tools and router.calls == 2


async def test_page_tool_emits_the_resizer_event():
    tool = make_page_image_tool({"p2": PAGE_PNG}, router=CountingRouter(free_detail=False), target="openai:gpt-4o")
    call_ = {"type": "tool_call", "name": tool.name, "id": "call_9", "args": {"page": "p2", "question": "total?"}}
    events = [e async for e in tool.astream_events(call_, version="v2") if e["event"] == "on_custom_event"]
    assert [e["name"] for e in events] == ["cares_route"]
    data = events[0]["data"]
    assert data["tool"] == "get_page_image" and data["target"] == "openai:gpt-4o" and data["n_resized"] == 1
    assert data["images"][0]["page"] == "p2" and data["images"][0]["send_size"] == list(ROUTED)
    seen = []

    from langchain_core.callbacks import BaseCallbackHandler

    class Handler(BaseCallbackHandler):
        def on_custom_event(self, name, data, **kwargs):
            seen.append((name, data["question"]))

    tool.invoke(call_, config={"callbacks": [Handler()]})
    assert seen == [("cares_route", "total?")]


def test_decisions_are_in_the_run_metadata():
    from langchain_core.tracers.base import BaseTracer

    class Keep(BaseTracer):
        def __init__(self):
            super().__init__()
            self.runs = []

        def _persist_run(self, run):
            pass

        def _end_trace(self, run):
            self.runs.append(run)
            super()._end_trace(run)

    tracer = Keep()
    model = ScriptedToolModel()
    agent = create_agent(model, [], middleware=[CaresMiddleware(router=CountingRouter(free_detail=False),
                                                                target="openai:gpt-4o")])
    agent.invoke({"messages": [user()]}, {"callbacks": [tracer]})

    def walk(run):
        yield run
        for child in run.child_runs:
            yield from walk(child)

    resizer_runs = {r.id: r for top in tracer.runs for r in walk(top) if r.name == "CaresImageResizer"}
    found = [r.metadata["cares"] for r in resizer_runs.values() if "cares" in (r.metadata or {})]
    assert len(found) == 1
    assert found[0]["target"] == "openai:gpt-4o" and found[0]["n_resized"] == 1
    assert found[0]["sizes"] == [{"from": list(ORIGINAL), "to": list(ROUTED)}]
