"""In-process gates vs one shared Ray Serve deployment, for N concurrent clients (N = 1, 8, 32).

Each client is its own process sending ``--requests`` pages one after another (pages of its
own: no two clients, in one round or across rounds, send the same page, so the replica's vision
cache gives the served side no hits the in-process gates could not have; both get one: each
client's warm-up page is routed again first). In-process: each client loads its own tiny gate
(tests/tiny_models.py; no download) and imports torch. Served: each client holds only a
``RemoteRouter`` (no torch) to one Serve deployment of the same gate (one replica,
``@serve.batch``). Reported in one run, as served / in-process ratios: throughput (pages/s over
all clients), p50 and p99 latency per call, and the resident memory (RSS) of all processes
together (the clients, plus Ray's processes for the served side). ``--device cuda`` puts the
gates (the replica's and every in-process one) on the GPU, and first reports the gate's images/s
by batch size on that device (``--batch-sizes``; any device can ask for it).

    python benchmarks/bench_serve.py                     # CPU, clients 1,8,32
    python benchmarks/bench_serve.py --clients 1,4 --requests 8
    python benchmarks/bench_serve.py --device cuda       # GPU: images/s by batch size, then the ratios
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _pages(n: int, client: int = 0) -> list[bytes]:
    """``n`` distinct pages for one client (sizes differ per client, so no page is shared)."""
    from conftest import encode, render_page

    return [encode(render_page(700 + 13 * i, 900 + 7 * client, text_px=12)) for i in range(n)]


def _rss(pid: int) -> int:
    import psutil  # Ray's own copy: importing ray puts it on sys.path (spawned clients inherit it)

    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _client(mode: str, source: str, device: str, n: int, client: int, ready, start, out) -> None:
    from cares_integrations import load_router

    if mode == "local":
        import torch

        torch.set_num_threads(1)
        router = load_router(source, device=device)
    else:  # what an application holding a RemoteRouter loads: no torch
        router = load_router(source)
    pages = _pages(n, client)
    router.route(pages[0], "warm-up")
    ready.put(os.getpid())
    start.wait()
    lat = []
    t0 = time.perf_counter()
    for i, page in enumerate(pages):
        t = time.perf_counter()
        router.route(page, f"What is on line {i}?")
        lat.append(time.perf_counter() - t)
    out.put({"pid": os.getpid(), "lat": lat, "wall": time.perf_counter() - t0, "rss": _rss(os.getpid())})
    if hasattr(router, "close"):
        router.close()


def _run_clients(mode: str, source: str, device: str, clients: int, requests: int, first: int = 0) -> dict:
    """``clients`` processes numbered from ``first`` (their pages follow from the number)."""
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(mode, source, device, requests, first + i, ready, start, out))
             for i in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:  # every client has loaded its router and routed one page
        ready.get(timeout=600)
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=900) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=30)
    lat = sorted(x for r in results for x in r["lat"])
    return {"throughput": clients * requests / wall, "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "client_rss": sum(r["rss"] for r in results)}


def _ray_rss() -> int:
    """RSS of every Ray process: all that ``ray.init`` started under this process (GCS, raylet,
    agents, log monitor, workers, Serve's controller, proxy and replica), plus any Ray process
    found by name; not this driver, and not multiprocessing's helper."""
    import psutil

    pids = {p.pid for p in psutil.Process().children(recursive=True)}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "ray" in cmd and ("raylet" in cmd or "gcs_server" in cmd or "ray::" in cmd or "default_worker" in cmd):
            pids.add(proc.pid)
    total = 0
    for pid in pids:
        try:
            if "multiprocessing" in " ".join(psutil.Process(pid).cmdline()):
                continue
        except psutil.Error:
            continue
        total += _rss(pid)
    return total


def batch_throughput(source: str, device: str, batch_sizes: list[int], repeats: int = 3) -> list[dict]:
    """The gate's images/s on ``device`` for each batch size: ``router.predict`` over ``repeats``
    batches of distinct pages (cache cleared first, so every image runs the backbone), after one
    warm-up batch. The GPU table of docs/performance.md; on CPU it checks the same code path."""
    import torch

    from cares_integrations import load_router

    router = load_router(source, device=device)
    cache = getattr(getattr(router, "backbone", None), "cache", None)
    rows = []
    for size in batch_sizes:
        pages = _pages(size * (repeats + 1), client=size)
        questions = [f"What is on line {i}?" for i in range(size)]
        router.predict(pages[:size], questions)  # warm-up (kernels, allocator)
        if cache is not None:
            cache.clear()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for r in range(1, repeats + 1):
            router.predict(pages[r * size:(r + 1) * size], questions)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rows.append({"batch_size": size, "images_per_s": size * repeats / (time.perf_counter() - t0),
                     "backbone_images": None if cache is None else cache.misses})
    return rows


def serve_options(device: str, max_batch: int) -> dict:
    """``build_app`` keywords for the benchmark's one replica (a whole GPU with ``cuda``)."""
    gpu = device.startswith("cuda")
    return {"device": device, "num_cpus": 0, "num_gpus": 1.0 if gpu else 0.0, "max_batch_size": max_batch,
            "batch_wait_ms": 5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=16, help="pages per client")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--batch-sizes", default=None,
                    help="report the gate's images/s at these batch sizes first (default with cuda: 1,8,32,128)")
    args = ap.parse_args()
    if args.batch_sizes is None and args.device.startswith("cuda"):
        args.batch_sizes = "1,8,32,128"
    import ray
    import torch
    from ray import serve
    from tiny_models import tiny_idefics3

    from cares_integrations.routers.gate import GateHead, ProxyBackbone, save_gate
    from cares_integrations.serve import build_app

    backbone = ProxyBackbone.from_pretrained(str(tiny_idefics3()), device="cpu")
    config = backbone.gate_config(hidden_dim=16)
    gate = Path(tempfile.mkdtemp(prefix="bench-serve-gate-"))
    save_gate(gate, config, GateHead(config.in_dim, 16, 3))
    if args.batch_sizes:
        for row in batch_throughput(str(gate), args.device, [int(b) for b in args.batch_sizes.split(",")]):
            print(f"{args.device} batch {row['batch_size']:>4}: {row['images_per_s']:.1f} images/s", flush=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=os.cpu_count(), num_gpus=1 if args.device.startswith("cuda") else 0, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    rows = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(str(gate), **serve_options(args.device, args.max_batch)), name="bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        first = 0  # client numbers continue across rounds: no round resends an earlier round's pages
        for n in (int(c) for c in args.clients.split(",")):
            local = _run_clients("local", str(gate), args.device, n, args.requests, first)
            served = _run_clients("remote", url, args.device, n, args.requests, first)
            first += n
            served_rss = served["client_rss"] + _ray_rss()
            row = {"clients": n, "local": local, "served": served, "served_total_rss": served_rss,
                   "throughput_ratio": served["throughput"] / local["throughput"],
                   "p50_ratio": served["p50_ms"] / local["p50_ms"], "p99_ratio": served["p99_ms"] / local["p99_ms"],
                   "memory_ratio": served_rss / local["client_rss"]}
            rows.append(row)
            print(f"clients={n:>3}  throughput x{row['throughput_ratio']:.2f}  p50 x{row['p50_ratio']:.2f}  "
                  f"p99 x{row['p99_ratio']:.2f}  memory x{row['memory_ratio']:.2f}  "
                  f"(in-process {local['throughput']:.1f}/s, {local['client_rss'] / 2**20:.0f} MiB; "
                  f"served {served['throughput']:.1f}/s, {served_rss / 2**20:.0f} MiB)", flush=True)
        stats = json.loads(__import__("urllib.request").request.urlopen(url + "/stats", timeout=10).read())
        print(f"replica: {stats['items_routed']} items in {stats['model_calls']} model calls "
              f"({stats['items_routed'] / max(1, stats['model_calls']):.1f} images per batch), "
              f"vision cache {stats['cache_hits']} hits / {stats['cache_misses']} misses")
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
