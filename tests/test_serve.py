"""The router service on a real local Ray instance and Serve applications (CPU only, loopback).

One module-scoped Ray session serves two applications: a tiny gate (built offline) and the
text-scale router. Checked: decisions through the service equal in-process ones; 64 concurrent
clients take fewer model calls than requests; a bad item fails alone; a killed replica is
replaced while clients retry and lose nothing; a RemoteRouter inside every LangChain and
LlamaIndex component gives what the in-process router gives, and its local fallback is recorded
in a component's output when the service is down. Every wait is bounded. The component tests
live here, not in their frameworks' test files, so the suite starts Ray once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import encode, render_page

pytest.importorskip("ray.serve")
pytest.importorskip("aiohttp")

from cares_integrations import ImageDecodeError, UnknownTargetError, load_router  # noqa: E402
from cares_integrations.serve import RemoteRouter  # noqa: E402
from cares_integrations.serve.wire import encode_view  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGES = [render_page(), render_page(600, 400, text_px=20), render_page(1800, 2400, text_px=9, lines=80)]
QUESTIONS = ["What is the total revenue?", "Title?", "Read the footnote."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def gate_dir(tmp_path_factory) -> Path:
    import torch
    from tiny_models import tiny_idefics3

    from cares_integrations.routers.gate import GateHead, ProxyBackbone, save_gate

    backbone = ProxyBackbone.from_pretrained(str(tiny_idefics3()), device="cpu")
    config = backbone.gate_config(hidden_dim=16, temperature=1.5)
    torch.manual_seed(0)
    head = GateHead(config.in_dim, 16, 3)
    with torch.no_grad():
        head[3].weight.mul_(20)
    folder = tmp_path_factory.mktemp("served-gate")
    save_gate(folder, config, head.eval())
    return folder


@pytest.fixture(scope="module")
def service(gate_dir):
    """Ray (2 CPUs, no dashboard, loopback) with the gate at /gate and text-scale at /text."""
    import ray
    from ray import serve

    from cares_integrations.serve import build_app

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(str(gate_dir), num_cpus=0.5, max_batch_size=32, batch_wait_ms=50, device="cpu"),
                  name="gate", route_prefix="/gate")
        serve.run(build_app("text-scale", num_cpus=0.5, max_batch_size=16, batch_wait_ms=5),
                  name="text", route_prefix="/text")
        yield {"gate": f"http://127.0.0.1:{port}/gate", "text": f"http://127.0.0.1:{port}/text"}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def test_decisions_equal_in_process_ones(service, gate_dir):
    for url, local in ((service["gate"], load_router(str(gate_dir), device="cpu")),
                       (service["text"], load_router("text-scale"))):
        remote = load_router(url)
        try:
            assert isinstance(remote, RemoteRouter)
            for target in (None, "openai:gpt-4o", "qwen2.5-vl"):
                got = remote.route_batch([encode(p) for p in PAGES], QUESTIONS, target=target)
                assert got == local.route_batch([encode(p) for p in PAGES], QUESTIONS, target=target)
            assert remote.predict(PAGES[:1], QUESTIONS[:1]) == local.predict(PAGES[:1], QUESTIONS[:1])
        finally:
            remote.close()
    info = _get(service["gate"] + "/info")
    assert info["view"] == {"mode": "RGB", "fit_long_side": 64, "reduce_to": None}  # the tiny model's tile
    assert _get(service["text"] + "/info")["view"]["reduce_to"] == 2400


async def test_64_concurrent_clients_share_batches(service):
    before = _get(service["gate"] + "/stats")
    clients = [RemoteRouter(service["gate"], retries=2) for _ in range(64)]
    try:
        pages = [encode(render_page(500 + 10 * i, 700)) for i in range(64)]
        decisions = await asyncio.gather(*(c.aroute(p, f"question {i}") for i, (c, p) in enumerate(zip(clients, pages))))
    finally:
        for c in clients:
            c.close()
    assert [d.original_size for d in decisions] == [(500 + 10 * i, 700) for i in range(64)]
    after = _get(service["gate"] + "/stats")
    assert after["items_routed"] - before["items_routed"] == 64
    assert 1 <= after["model_calls"] - before["model_calls"] < 64


def test_a_bad_item_fails_alone(service):
    view = encode_view(render_page(600, 400).convert("L").reduce(1))
    good = {"image": view, "page_size": [600, 400], "question": "q", "target": None}
    items = [good,
             {"image": "bm90IGFuIGltYWdl", "question": "q"},                       # base64 of text
             {"image": "/etc/passwd", "question": "q"},                           # a local path
             {**good, "target": "no-such-model"},
             {**good, "page_size": [6000, 4000]},                                 # view of another page
             {"image": "http://127.0.0.1:9/x.png", "question": "q"},              # fetching is off
             good]
    status, body = _post(service["text"] + "/route", {"items": items})
    assert status == 200
    kinds = [r.get("error", {}).get("type") for r in body["results"]]
    assert kinds == [None, "ImageDecodeError", "ImageDecodeError", "UnknownTargetError", "ValueError",
                     "ImageSkipped", None]
    assert body["results"][0]["decision"] == body["results"][-1]["decision"]
    assert _post(service["text"] + "/route", {"nope": 1})[0] == 400
    with RemoteRouter(service["text"]) as remote:
        results = remote.route_batch_results([encode(PAGES[0]), encode(PAGES[1])], "q", target="no-such-model")
        assert all(isinstance(r, UnknownTargetError) for r in results)
        with pytest.raises(ImageDecodeError):  # decoded on the client, under the client's intake rules
            remote.route(b"not an image", "q")


async def test_killed_replica_is_replaced_and_clients_retry(service):
    url = service["text"]
    old_pid = _get(url + "/healthz")["pid"]
    remote = RemoteRouter(url, retries=12, backoff=0.2, max_backoff=2.0, timeout=20)
    page = encode(render_page(1200, 1600, text_px=10, lines=60))
    done: list = []
    replaced = asyncio.Event()

    spans: list = []  # (start, end) of every answered call
    moments: dict = {}

    async def client(i: int) -> None:
        for _ in range(300):  # until the replica is replaced and answering (bounded)
            start = time.monotonic()
            done.append(await remote.aroute(page, f"q{i}"))
            spans.append((start, time.monotonic()))
            if replaced.is_set():
                return

    async def killer() -> int:
        await asyncio.sleep(0.5)
        moments["killed"] = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        for _ in range(240):
            await asyncio.sleep(0.5)
            try:
                pid = (await asyncio.to_thread(_get, url + "/healthz"))["pid"]
            except OSError:
                continue
            if pid != old_pid:
                moments["replaced"] = time.monotonic()
                replaced.set()
                return pid
        replaced.set()
        return old_pid

    try:
        tasks = [asyncio.create_task(client(i)) for i in range(6)]
        new_pid = await asyncio.wait_for(killer(), timeout=150)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=150)
    finally:
        remote.close()
    assert new_pid != old_pid  # a new replica took over
    assert len({d.send_size for d in done}) == 1 and len(done) >= 6  # every call answered, same decision
    # calls in flight while the replica was down were answered, not lost: either the client
    # retried them (``remote.retried``) or Ray's proxy held them for the new replica; which one
    # depends on timing, so the test asserts the outcome
    assert any(start <= moments["replaced"] and end >= moments["killed"] for start, end in spans)


def test_fallback_router_is_recorded_when_the_service_is_down():
    url = f"http://127.0.0.1:{_free_port()}"
    remote = RemoteRouter(url, retries=1, backoff=0.01, connect_timeout=2, fallback="text-scale")
    try:
        decision = remote.route(encode(PAGES[0]), "q", target="openai:gpt-4o")
    finally:
        remote.close()
    assert decision == load_router("text-scale").route(encode(PAGES[0]), "q", target="openai:gpt-4o").model_copy(
        update={"notes": decision.notes})
    assert decision.router == "text-scale" and "decided by the local fallback text-scale" in decision.notes[-1]
    assert remote.attempts == 2 and remote.fallbacks == 1


def test_config_file_and_cli_options():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from cares_integrations.cli import main

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "docs" / "serve_config.yaml").read_text()))
    app = config.applications[0]
    assert app.import_path == "cares_integrations.serve.app:app_builder"
    assert app.deployments[0].name == "cares-router"
    from cares_integrations.serve.app import app_builder

    built = app_builder({"router": "fixed:512", "num_gpus": "0.25", "max_batch_size": "8", "replicas": "3"})
    assert built is not None
    assert main(["serve", "text-scale", "--replicas", "2", "--num-gpus", "0.5", "--port", "9123", "--dry-run"]) == 0


# -- RemoteRouter inside every component ---------------------------------------------------------
# Each component runs on the same inputs with the in-process router and with a RemoteRouter to
# the service above (and, where the option takes one, the URL string itself). Their outputs carry
# every image at its decided size and the decisions, so equal outputs mean equal decisions; each
# test also checks that the images were resized and that the remote run went through the service.

TARGET = "openai:gpt-4o"


def _b64(page) -> str:
    import base64

    return base64.b64encode(encode(page)).decode("ascii")


def _lc_turn(i: int):
    """A user turn with two pages; the first with OpenAI detail "low" on page 1 (a capped target)."""
    from langchain_core.messages import HumanMessage

    first, second = PAGES[i], PAGES[(i + 1) % len(PAGES)]
    return [HumanMessage(content=[
        {"type": "text", "text": QUESTIONS[i]},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(first),
                                            "detail": "low" if i == 1 else "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(second)}},
    ])]


@pytest.mark.parametrize("app", ["gate", "text"])
async def test_remote_router_in_an_lcel_chain(service, gate_dir, app):
    from langchain_core.runnables import RunnableLambda

    from cares_integrations import ResolutionPolicy
    from cares_integrations.langchain import CaresImageResizer

    local = load_router(str(gate_dir), device="cpu") if app == "gate" else load_router("text-scale")

    def sent(messages):  # what the model is sent: the routing summary names the router, so it is left out
        return [m.model_copy(update={"response_metadata": {k: v for k, v in m.response_metadata.items()
                                                           if k != "cares"}}) for m in messages]

    def chain(router, **options):
        return CaresImageResizer(router=router, target=TARGET, **options) | RunnableLambda(sent)

    inputs = [_lc_turn(i) for i in range(len(PAGES))]
    with load_router(service[app]) as remote:
        remote.info()
        before = remote.attempts
        got = chain(remote).invoke(inputs[1])
        assert remote.attempts - before == 1  # both images in one request, each with its own target
        assert got == chain(local).invoke(inputs[1]) and got != inputs[1]
        before = remote.attempts
        assert chain(remote).batch(inputs) == chain(local).batch(inputs)
        assert remote.attempts - before == 1  # one request for every image of every input
        assert await chain(remote).abatch(inputs) == chain(local).batch(inputs)
        # A component's own policy is applied to the service's predictions.
        policy = ResolutionPolicy(mode="discrete", max_long_side=400)
        pinned = chain(remote, policy=policy).batch(inputs)
        assert pinned == chain(local, policy=policy).batch(inputs) != chain(local).batch(inputs)
        assert remote.attempts - before == 3  # the policy's copy shares the pool, /info and counters


async def test_remote_router_in_the_document_transformer(service):
    from langchain_core.documents import Document

    from cares_integrations.langchain import CaresDocumentTransformer

    docs = [Document(f"page {i}", metadata={"image": _b64(p), "page": i}) for i, p in enumerate(PAGES)]
    want = CaresDocumentTransformer(router=load_router("text-scale"), target=TARGET).transform_documents(
        docs, query=QUESTIONS[0])
    with load_router(service["text"]) as remote:
        transformer = CaresDocumentTransformer(router=remote, target=TARGET)
        assert transformer.transform_documents(docs, query=QUESTIONS[0]) == want
        assert await transformer.atransform_documents(docs, query=QUESTIONS[0]) == want
        assert remote.attempts == 3  # /info, then one request per call
    assert [d.metadata["cares"]["send_size"] for d in want] == [[768, 994], [600, 400], [768, 1024]]
    assert want[0].metadata["cares"]["router"] == "text-scale"


async def test_remote_router_in_the_agent_tools(service):
    from langchain_core.tools import tool

    from cares_integrations.langchain import make_page_image_tool, wrap_tool

    received: list[str] = []

    @tool
    def read_page(page_image: str, question: str) -> str:
        """Answer a question about a page image (a data URL)."""
        received.append(page_image)
        return "ok"

    page_url = "data:image/png;base64," + _b64(PAGES[2])
    call = {"type": "tool_call", "name": "get_page_image", "id": "c1", "args": {"page": "p3", "question": "Footnote?"}}
    local = load_router("text-scale")
    with load_router(service["text"]) as remote:
        for router in (remote, local):
            wrap_tool(read_page, router=router, target=TARGET).invoke({"page_image": page_url, "question": "Footnote?"})
        await wrap_tool(read_page, router=remote, target=TARGET).ainvoke({"page_image": page_url, "question": "Footnote?"})
        messages = [make_page_image_tool({"p3": encode(PAGES[2])}, router=r, target=TARGET).invoke(call)
                    for r in (remote, local)]
        messages.append(await make_page_image_tool({"p3": encode(PAGES[2])}, router=remote, target=TARGET).ainvoke(call))
        assert remote.attempts == 5
    assert received[0] == received[1] == received[2] != page_url
    assert messages[0].content == messages[1].content == messages[2].content
    assert messages[0].artifact == messages[1].artifact and messages[1].artifact["send_size"] == [768, 1024]


async def test_remote_router_in_the_agent_middleware(service):
    from langchain.agents import create_agent

    from agent_helpers import ScriptedToolModel, image_sizes
    from cares_integrations.langchain import CaresMiddleware

    sent = []
    with load_router(service["text"]) as remote:
        for router in (remote, load_router("text-scale")):
            model = ScriptedToolModel()
            agent = create_agent(model, [], middleware=[CaresMiddleware(router=router, target=TARGET)])
            agent.invoke({"messages": _lc_turn(0)})
            await agent.ainvoke({"messages": _lc_turn(2)})
            sent.append([[m.content for m in received] for received in model.received])
        assert remote.attempts == 3
    assert sent[0] == sent[1]
    assert image_sizes(model.received[0]) == [(768, 994), (600, 400)]


async def test_remote_router_in_the_llama_index_postprocessor_and_transform(service):
    from llama_index.core.schema import ImageNode, NodeWithScore

    from cares_integrations.llama_index import CaresImagePostprocessor, CaresImageTransform

    def nodes():
        return [ImageNode(image=_b64(p), id_=f"n{i}") for i, p in enumerate(PAGES)]

    def seen(out):
        return [(n.node_id, n.image, n.metadata) for n in out]

    local = load_router("text-scale")
    want = seen(n.node for n in CaresImagePostprocessor(router=local, target=TARGET).postprocess_nodes(
        [NodeWithScore(node=n, score=1.0) for n in nodes()], query_str=QUESTIONS[0]))
    want_transform = seen(CaresImageTransform(router=local, target=TARGET, query=QUESTIONS[0])(nodes()))
    assert [m["cares"]["send_size"] for _, _, m in want] == [[768, 994], [600, 400], [768, 1024]]
    assert want_transform == want
    with load_router(service["text"]) as remote:
        for router in (remote, service["text"]):  # the RemoteRouter, or its URL for load_router
            post = CaresImagePostprocessor(router=router, target=TARGET)
            scored = [NodeWithScore(node=n, score=1.0) for n in nodes()]
            assert seen(n.node for n in post.postprocess_nodes(scored, query_str=QUESTIONS[0])) == want
            assert seen(n.node for n in await post.apostprocess_nodes(scored, query_str=QUESTIONS[0])) == want
            transform = CaresImageTransform(router=router, target=TARGET, query=QUESTIONS[0])
            assert seen(transform(nodes())) == want
            assert seen(await transform.acall(nodes())) == want
            assert isinstance(post._router, RemoteRouter) and post._router.attempts >= 2
            if router is not remote:
                post._router.close()
                transform._router.close()
        assert remote.attempts == 5


async def test_remote_router_in_the_llama_index_chat_helpers_and_llm(service):
    from llama_index.core.llms import ChatMessage, ImageBlock, TextBlock
    from recording_server import RecordingServer
    from test_agents_llama_index import make_llm, wire_images

    from cares_integrations.llama_index import aresize_chat_messages, resize_chat_messages

    messages = [ChatMessage(role="user", blocks=[TextBlock(text=QUESTIONS[0]),
                                                 ImageBlock(image=encode(PAGES[0]), image_mimetype="image/png"),
                                                 ImageBlock(image=encode(PAGES[2]), image_mimetype="image/png")])]

    def images(out):
        return [b.image for m in out for b in m.blocks if isinstance(b, ImageBlock)]

    local = load_router("text-scale")
    want = images(resize_chat_messages(messages, router=local, target=TARGET))
    assert want != images(messages)
    with load_router(service["text"]) as remote:
        assert images(resize_chat_messages(messages, router=remote, target=TARGET)) == want
        assert images(await aresize_chat_messages(messages, router=remote, target=TARGET)) == want
        with RecordingServer(["ok", "ok", "ok"]) as server:
            for router in (remote, local, service["text"]):
                llm = make_llm(server, router)
                assert str(llm.chat(messages).message.content) == "ok"
                if router is not remote and router is not local:
                    llm._router.close()
            sent = [wire_images(request) for request in server.requests]
        assert remote.attempts == 4
    assert sent[0] == sent[1] == sent[2] == [("user", (768, 994)), ("user", (768, 1024))]


def test_remote_router_fallback_is_recorded_inside_a_component():
    from llama_index.core.schema import ImageNode, NodeWithScore

    from cares_integrations.llama_index import CaresImagePostprocessor

    remote = RemoteRouter(f"http://127.0.0.1:{_free_port()}", retries=0, connect_timeout=2, fallback="text-scale")
    scored = [NodeWithScore(node=ImageNode(image=_b64(p), id_=f"n{i}"), score=1.0) for i, p in enumerate(PAGES)]
    try:
        out = CaresImagePostprocessor(router=remote, target=TARGET).postprocess_nodes(scored, query_str="q")
    finally:
        remote.close()
    want = CaresImagePostprocessor(router=load_router("text-scale"), target=TARGET).postprocess_nodes(
        [NodeWithScore(node=ImageNode(image=_b64(p), id_=f"n{i}"), score=1.0) for i, p in enumerate(PAGES)], query_str="q")
    for got, expected in zip(out, want):
        meta, notes = dict(got.node.metadata["cares"]), got.node.metadata["cares"]["notes"]
        assert "decided by the local fallback text-scale" in notes[-1] and notes[:-1] == expected.node.metadata["cares"]["notes"]
        meta["notes"] = expected.node.metadata["cares"]["notes"]
        assert meta == expected.node.metadata["cares"] and got.node.image == expected.node.image
    assert remote.fallbacks == len(PAGES) and remote.attempts == 1


def test_bench_serve_gpu_path_runs_on_cpu(gate_dir):
    """The benchmark's ``--device cuda`` additions, through the same code on CPU (no GPU here):
    images/s per batch size with every image through the backbone, and the replica's options (a
    whole GPU with cuda) accepted by build_app."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_serve

    from cares_integrations.serve import build_app

    rows = bench_serve.batch_throughput(str(gate_dir), "cpu", [1, 3], repeats=2)
    assert [(r["batch_size"], r["backbone_images"]) for r in rows] == [(1, 2), (3, 6)]
    assert all(r["images_per_s"] > 0 for r in rows)
    cuda = bench_serve.serve_options("cuda", 32)
    assert (cuda["device"], cuda["num_gpus"], cuda["max_batch_size"]) == ("cuda", 1.0, 32)
    assert bench_serve.serve_options("cpu", 8)["num_gpus"] == 0.0
    assert build_app(str(gate_dir), **cuda) is not None
