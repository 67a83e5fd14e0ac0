"""Fetching remote page images, only where a :class:`FetchPolicy` allows it.

Only ``http`` and ``https`` URLs are fetched. Every redirect hop is checked against the
allow-list again (or redirects are refused, as the policy says); the policy's ``timeout`` is one
deadline for the whole download, redirects included, not a per-read timeout; and by default a
host that resolves to a loopback, private, link-local, multicast or otherwise reserved address
is refused unless the allow-list names that IP address literally (the usual SSRF guard). The
connection goes to the address that was checked, so a second DNS answer cannot change it.

Async callers fetch on :data:`FETCH_EXECUTOR`, a small pool of its own, so slow servers never
hold the threads that decode and resize inline images.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .errors import ImageDecodeError, ImageSkipped
from .sources import read_capped

FETCH_WORKERS = 8
"""Threads of :data:`FETCH_EXECUTOR`: at most this many downloads run at once; more wait their turn."""

FETCH_EXECUTOR = ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="cares-fetch")
"""The bounded pool async fetches run on, apart from the loop's default executor."""


@dataclass(frozen=True, init=False)
class FetchPolicy:
    """Opt-in rules for fetching remote ``http(s)`` images.

    ``allowed_hosts``: hosts that may be fetched (``"*"`` any host; ``"*.example.com"`` its
    subdomains; an IP address literally, which is also what lets a private or loopback address
    through the SSRF guard). ``timeout``: seconds for the whole download, redirects included.
    ``max_bytes``: the largest response. ``follow_redirects``: follow redirects (each hop is
    checked like the first URL) or refuse them; ``max_redirects`` bounds the hops.
    ``block_private``: refuse hosts resolving to loopback, private, link-local, multicast or
    reserved addresses unless ``allowed_hosts`` names the address itself.
    """

    allowed_hosts: frozenset[str]
    timeout: float
    max_bytes: int
    follow_redirects: bool
    max_redirects: int
    block_private: bool

    def __init__(self, allowed_hosts: Iterable[str] | str = (), timeout: float = 10.0,
                 max_bytes: int = 20 * 1024 * 1024, *, follow_redirects: bool = True, max_redirects: int = 5,
                 block_private: bool = True) -> None:
        if isinstance(allowed_hosts, str):
            allowed_hosts = (allowed_hosts,)
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        object.__setattr__(self, "allowed_hosts", frozenset(h.lower().strip("[]") for h in allowed_hosts))
        object.__setattr__(self, "timeout", float(timeout))
        object.__setattr__(self, "max_bytes", int(max_bytes))
        object.__setattr__(self, "follow_redirects", bool(follow_redirects))
        object.__setattr__(self, "max_redirects", int(max_redirects))
        object.__setattr__(self, "block_private", bool(block_private))

    def allows(self, url: str) -> bool:
        """Whether ``url`` is http(s) and its host is on the allow-list."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            return False
        host = (parts.hostname or "").lower()
        for pattern in self.allowed_hosts:
            if pattern == "*" or pattern == host:
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
        return False

    def address_allowed(self, address: str) -> bool:
        """Whether the SSRF guard lets a connection go to the IP ``address``."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if getattr(ip, "ipv4_mapped", None) is not None:
            ip = ip.ipv4_mapped  # type: ignore[union-attr]
        if not self.block_private or ip.is_global and not ip.is_multicast:
            return True
        return str(ip) in self.allowed_hosts or address.lower() in self.allowed_hosts


def is_remote_url(value: Any) -> bool:
    """True for strings that are ``http://`` or ``https://`` URLs."""
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


def _host_label(url: str) -> str:
    return repr(urllib.parse.urlsplit(url).hostname or "")


def check_url(url: str, policy: FetchPolicy | None) -> None:
    """Raise :class:`ImageSkipped` unless ``policy`` lets ``url`` be fetched (no network used)."""
    if policy is None:
        raise ImageSkipped("remote image URL left as is: remote fetching is off")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ImageSkipped(f"remote image URL left as is: scheme {scheme!r} is never fetched (http and https only)")
    if not policy.allows(url):
        raise ImageSkipped(f"remote image URL left as is: host {_host_label(url)} is not allow-listed")


class _Deadline:
    """One deadline for a whole download: shuts the live socket down when it passes."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise TimeoutError("deadline passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                sock.close()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cancel(self) -> None:
        self._timer.cancel()


def _resolve(host: str, port: int, policy: FetchPolicy, deadline: _Deadline) -> str:
    """The checked IP address to connect to for ``host``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ImageDecodeError(f"could not resolve remote image host {host!r}: {exc.strerror or exc}") from exc
    deadline.remaining()
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise ImageDecodeError(f"remote image host {host!r} has no address")
    refused = [a for a in addresses if not policy.address_allowed(a)]
    if refused:
        raise ImageSkipped(
            f"remote image URL left as is: host {host!r} resolves to a private, loopback, link-local or "
            "reserved address (name the IP address in allowed_hosts to allow it)"
        )
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self._address, self._deadline = address, deadline

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self._deadline.remaining())
        self._deadline.watch(self.sock)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining(), context=ssl.create_default_context())
        self._address, self._deadline = address, deadline

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self._deadline.remaining())
        self._deadline.watch(raw)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
        self._deadline.watch(self.sock)


def _get(url: str, policy: FetchPolicy, deadline: _Deadline) -> tuple[int, str | None, bytes]:
    """One hop: (status, Location header, body) of GET ``url`` on a checked address."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname or ""
    address = _resolve(host, port, policy, deadline)
    conn = (_PinnedHTTPS if https else _PinnedHTTP)(host, port, address, deadline)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request("GET", target, headers={"User-Agent": "cares-integrations", "Accept": "image/*"})
        sock = conn.sock  # the connection drops its reference once the response is read
        sock.settimeout(deadline.remaining())
        response = conn.getresponse()
        if 300 <= response.status < 400:
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            raise ImageDecodeError(f"remote image host {host!r} answered HTTP {response.status}")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > policy.max_bytes:
            raise ImageDecodeError(f"remote image is {int(length)} bytes, over the {policy.max_bytes}-byte limit")
        body = read_capped(response.read1, policy.max_bytes, "remote image",
                           before_each=lambda: sock.settimeout(deadline.remaining()))
        deadline.remaining()  # the deadline may have cut the body short
        if length is not None and length.isdigit() and len(body) != int(length):
            raise ImageDecodeError(f"remote image ended after {len(body)} of {int(length)} bytes")
        return response.status, None, body
    finally:
        conn.close()


def fetch(url: str, policy: FetchPolicy | None) -> bytes:
    """The body of ``url``, fetched under ``policy`` (see the module docstring for the rules).

    Raises :class:`ImageSkipped` when the policy does not allow the URL, a redirect hop, or the
    address a host resolves to, and :class:`ImageDecodeError` when the download fails, runs
    past the deadline or over the byte limit.
    """
    check_url(url, policy)
    assert policy is not None
    deadline = _Deadline(policy.timeout)
    current = url
    try:
        for _ in range(policy.max_redirects + 1):
            status, location, body = _get(current, policy, deadline)
            if location is None and not 300 <= status < 400:
                return body
            if not policy.follow_redirects:
                raise ImageSkipped(f"remote image URL left as is: host {_host_label(current)} redirects, "
                                   "and this fetch policy refuses redirects")
            if not location:
                raise ImageDecodeError(f"remote image host {_host_label(current)} answered HTTP {status} without a Location")
            nxt = urllib.parse.urljoin(current, location)
            try:
                check_url(nxt, policy)
            except ImageSkipped as exc:
                raise ImageSkipped(f"redirect refused: {exc.reason.replace('remote image URL left as is: ', '')}") from None
            current = nxt
        raise ImageDecodeError(f"remote image took more than {policy.max_redirects} redirects")
    except (ImageDecodeError, ImageSkipped):
        raise
    except Exception as exc:  # network errors of every kind, and the deadline
        if deadline.expired or isinstance(exc, TimeoutError):
            raise ImageDecodeError(
                f"could not fetch remote image from {_host_label(current)}: no complete answer within "
                f"the {policy.timeout:g} s deadline"
            ) from exc
        raise ImageDecodeError(f"could not fetch remote image from {_host_label(current)}: {type(exc).__name__}: {exc}") from exc
    finally:
        deadline.cancel()


@dataclass(frozen=True)
class FetchedImage:
    """A remote URL already downloaded (by :func:`aprefetch`): decoded as the URL it came from."""

    url: str
    data: bytes


async def aprefetch(images: Sequence[Any], policy: FetchPolicy | None) -> list[Any]:
    """``images`` with each fetchable http(s) URL replaced by a :class:`FetchedImage` (or by the
    exception its fetch raised), downloaded concurrently on :data:`FETCH_EXECUTOR`."""
    out = list(images)
    if policy is None:
        return out
    loop = asyncio.get_running_loop()
    todo = [i for i, img in enumerate(out) if is_remote_url(img) and policy.allows(img)]
    if not todo:
        return out
    got = await asyncio.gather(
        *(loop.run_in_executor(FETCH_EXECUTOR, fetch, out[i], policy) for i in todo), return_exceptions=True
    )
    for i, data in zip(todo, got):
        out[i] = data if isinstance(data, BaseException) else FetchedImage(out[i], data)
    return out
