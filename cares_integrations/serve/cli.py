"""``cares serve ROUTER``: start (or join) Ray, deploy the router service, serve until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``cares serve``."""
    p = argparse.ArgumentParser(
        prog="cares serve",
        description="Serve a router over HTTP on Ray Serve (POST /route, GET /info, /healthz, /stats). "
                    "Clients: load_router('http://HOST:PORT').",
    )
    p.add_argument("router", help="router source: 'text-scale', 'fixed:768', a gate folder or hub id, 'default'")
    p.add_argument("--replicas", type=int, default=1, help="replicas (default 1; ignored with --autoscale)")
    p.add_argument("--autoscale", default=None, metavar="MIN:MAX",
                   help="autoscale between MIN and MAX replicas on ongoing requests instead of fixed --replicas")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica; a fraction (0.25) shares one GPU")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (default 1)")
    p.add_argument("--max-batch", type=int, default=16, help="items per batched prediction (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill (default 10)")
    p.add_argument("--device", default=None, help="device for gates (default: cuda with --num-gpus, else auto)")
    p.add_argument("--fetch-host", action="append", default=None,
                   help="allow fetching http(s) images from this host (repeatable; default: never fetch)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1; 0.0.0.0 for a cluster)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: join a running one or start one)")
    p.add_argument("--dry-run", action="store_true", help="print the deployment options as JSON and exit")
    return p


def app_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`~cares_integrations.serve.app.build_app` keywords from the parsed arguments."""
    options: dict[str, Any] = dict(
        replicas=args.replicas, num_gpus=args.num_gpus, num_cpus=args.num_cpus, max_batch_size=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, device=args.device, fetch_hosts=args.fetch_host,
    )
    if args.autoscale:
        try:
            lo, hi = (int(v) for v in args.autoscale.split(":"))
        except ValueError:
            raise SystemExit(f"cares serve: --autoscale takes MIN:MAX, got {args.autoscale!r}") from None
        options["autoscaling"] = {"min_replicas": lo, "max_replicas": hi, "target_ongoing_requests": 2 * args.max_batch}
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cares serve``."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    options = app_options(args)
    if args.dry_run:
        print(json.dumps({"router": args.router, "host": args.host, "port": args.port, **options}))
        return 0
    import ray
    from ray import serve

    from .app import build_app

    ray.init(address=args.address or None, include_dashboard=False)
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(args.router, **options), name="cares", route_prefix="/", blocking=False)
    print(f"cares serve: {args.router} at http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        ray.shutdown()
    return 0
