"""The router service on a real local Ray instance and Serve applications (CPU only, loopback).

One module-scoped Ray session serves two applications: a tiny gate (built offline) and the
text-scale router. Checked: decisions through the service equal in-process ones; 64 concurrent
clients take fewer model calls than requests; a bad item fails alone; a killed replica is
replaced while clients retry and lose nothing. Every wait is bounded.
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

    async def client(i: int) -> None:
        for _ in range(300):  # until the replica is replaced and answering (bounded)
            done.append(await remote.aroute(page, f"q{i}"))
            if replaced.is_set():
                return

    async def killer() -> int:
        await asyncio.sleep(0.5)
        os.kill(old_pid, signal.SIGKILL)
        for _ in range(240):
            await asyncio.sleep(0.5)
            try:
                pid = (await asyncio.to_thread(_get, url + "/healthz"))["pid"]
            except OSError:
                continue
            if pid != old_pid:
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
    assert remote.retried >= 1  # requests in flight on the killed replica were retried, not lost


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
