"""Fetching under a FetchPolicy (issue 9): redirects checked hop by hop, one deadline per download,
the SSRF guard, and fetches that never starve the threads routing inline images. Loopback servers
only (the guard is told to allow the literal 127.0.0.1), every wait bounded."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from cares_integrations import FetchPolicy, FixedRouter, ImageDecodeError, ImageSkipped, aroute_and_resize, load_image
from cares_integrations.core.fetch import fetch
from helpers import Reply, loopback_server
from langchain_helpers import PAGE_PNG, PAGE_URL

LOOPBACK = FetchPolicy(allowed_hosts=["127.0.0.1"], timeout=5)


def test_the_ssrf_guard_refuses_loopback_unless_the_ip_is_named():
    with loopback_server({"/page.png": PAGE_PNG}) as server:
        port = server.port
        for policy in (FetchPolicy(allowed_hosts=["*"]), FetchPolicy(allowed_hosts=["localhost"])):
            url = server.url() if "*" in policy.allowed_hosts else f"http://localhost:{port}/page.png"
            with pytest.raises(ImageSkipped, match="private, loopback"):
                load_image(url, fetch=policy)
        assert server.requests == []  # refused before connecting
        assert load_image(server.url(), fetch=LOOPBACK).size == (300, 400)
        assert load_image(server.url(), fetch=FetchPolicy(allowed_hosts=["*"], block_private=False)).size == (300, 400)


def test_every_redirect_hop_is_checked():
    with loopback_server({"/page.png": PAGE_PNG}) as other, loopback_server({}) as allowed:
        allowed.routes["/to-other"] = Reply(status=302, headers={"Location": f"http://localhost:{other.port}/page.png"})
        allowed.routes["/to-self"] = Reply(status=301, headers={"Location": "/page.png"})
        allowed.routes["/page.png"] = PAGE_PNG
        allowed.routes["/loop"] = Reply(status=302, headers={"Location": "/loop"})
        with pytest.raises(ImageSkipped, match="redirect refused: host 'localhost' is not allow-listed"):
            load_image(allowed.url("/to-other"), fetch=LOOPBACK)
        assert other.requests == []  # the other host was never asked
        assert load_image(allowed.url("/to-self"), fetch=LOOPBACK).size == (300, 400)
        with pytest.raises(ImageSkipped, match="refuses redirects"):
            load_image(allowed.url("/to-self"), fetch=FetchPolicy(allowed_hosts=["127.0.0.1"], follow_redirects=False))
        with pytest.raises(ImageDecodeError, match="more than 5 redirects"):
            load_image(allowed.url("/loop"), fetch=LOOPBACK)


def test_a_redirect_to_another_scheme_opens_no_connection():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    try:
        with loopback_server({"/ftp": Reply(status=302, headers={"Location": f"ftp://127.0.0.1:{port}/x.png"})}) as s:
            with pytest.raises(ImageSkipped, match="scheme 'ftp' is never fetched"):
                load_image(s.url("/ftp"), fetch=LOOPBACK)
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody connected
    finally:
        listener.close()


def test_the_timeout_is_one_deadline_for_the_whole_download():
    # 400 bytes, one every 25 ms: 10 s in all; every read is quick, so only an overall deadline stops it
    with loopback_server({"/slow.png": Reply(PAGE_PNG[:400], drip_s=0.025)}) as server:
        with pytest.raises(ImageDecodeError, match="within the 0.5 s deadline"):
            fetch(server.url("/slow.png"), FetchPolicy(allowed_hosts=["127.0.0.1"], timeout=0.5))


async def test_slow_fetches_never_starve_inline_images():
    release = threading.Event()

    def stuck(request):
        release.wait(30)
        return Reply(PAGE_PNG)

    router = FixedRouter(64, fetch=FetchPolicy(allowed_hosts=["127.0.0.1"], timeout=30))
    with loopback_server({"/stuck.png": stuck}) as server:
        slow = [asyncio.ensure_future(aroute_and_resize(router, [server.url("/stuck.png")], "q", on_error="passthrough"))
                for _ in range(12)]  # more than the loop's default executor has threads
        try:
            for _ in range(500):  # bounded: until the server holds them
                if len(server.requests) >= 8:
                    break
                await asyncio.sleep(0.01)
            # an unrelated inline image is routed while every fetch thread is stuck
            [result] = await asyncio.wait_for(aroute_and_resize(router, [PAGE_URL], "q"), 20)
            assert result.changed and not any(t.done() for t in slow)
        finally:
            release.set()
        results = await asyncio.wait_for(asyncio.gather(*slow), 30)
    assert all(r[0].changed for r in results)
