"""Shared test helpers: the one page renderer, the real-page fixture, image encoding, and the one loopback HTTP server.

Framework-specific helpers live in ``langchain_helpers.py`` (the one recording chat model);
fixtures in ``conftest.py``. Import from here as ``from helpers import ...`` (pytest puts
``tests/`` on the path).
"""

from __future__ import annotations

import http.server
import io
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at ``px`` pixels (Pillow's built-in font where DejaVu is missing)."""
    try:
        return ImageFont.truetype(FONT, px)
    except OSError:  # fonts missing: still a valid image
        return ImageFont.load_default()


def render_text(size: tuple[int, int], texts: Iterable[tuple[tuple[int, int], str, int]],
                *, background: str = "white") -> Image.Image:
    """An RGB page of ``size`` with each ``((x, y), text, text_px)`` drawn in black."""
    img = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(img)
    for xy, text, px in texts:
        draw.text(xy, text, fill="black", font=font(px))
    return img


def render_page(width: int = 850, height: int = 1100, *, text_px: int = 14, lines: int = 30) -> Image.Image:
    """A white page with a heading and lines of black text at ``text_px`` pixels: enough
    structure to route."""
    texts = [((40, 30), "Quarterly report 2024", text_px * 2)]
    y = 40 + text_px * 3
    for i in range(lines):
        if y > height - text_px * 2:
            break
        texts.append(((40, y), f"Line {i + 1}: revenue for item {i * 7 + 3} was {1000 + i * 37} EUR", text_px))
        y += int(text_px * 1.6)
    return render_text((width, height), texts)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its data is a few bytes: cheap to make,
    where encoding a real image that large takes seconds)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    """Encode a PIL image to bytes in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


# -- the loopback HTTP server ---------------------------------------------------------------------


@dataclass
class Reply:
    """What the loopback server answers for a path."""

    body: bytes = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "image/png"})
    drip_s: float = 0.0
    """Seconds between the body's bytes, written one at a time (a slow-drip server); 0: all at once."""


@dataclass(frozen=True)
class Request:
    """One request the loopback server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Route = Union[bytes, Reply, Callable[[Request], Reply]]


class Loopback:
    """A threaded HTTP server on 127.0.0.1 (a free port) that answers from ``routes`` (path ->
    bytes, a :class:`Reply`, or ``request -> Reply``; 404 for any other path) and records every
    request it receives in :attr:`requests`. Use through :func:`loopback_server`."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, dict(self.headers.items()),
                                  self.rfile.read(length) if length else b"")
                with owner._lock:
                    owner.requests.append(request)
                route = owner.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    reply = Reply(b"not found", 404, {"Content-Type": "text/plain"})
                elif callable(route):
                    reply = route(request)
                else:
                    reply = route if isinstance(route, Reply) else Reply(route)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if not reply.drip_s:
                    self.wfile.write(reply.body)
                    return
                for i in range(len(reply.body)):  # bounded by the body's length
                    try:
                        self.wfile.write(reply.body[i:i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return
                    time.sleep(reply.drip_s)

            do_GET = do_POST = do_HEAD = do_PUT = _serve  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/page.png") -> str:
        """The full URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "Loopback":
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def loopback_server(routes: Mapping[str, Route]) -> Iterator[Loopback]:
    """Serve ``routes`` on 127.0.0.1 for the ``with`` block (see :class:`Loopback`)."""
    server = Loopback(routes).start()
    try:
        yield server
    finally:
        server.stop()


REAL_PAGES = Path(__file__).parent / "fixtures" / "real_pages"
"""The checked-in real-page fixture: two Debian PDFs and their corpus labels (provenance.json)."""
REAL_PAGE_PDFS = {"debian-refcard-en-a4": "refcard-en-a4.pdf.gz", "xace-spec": "XACE-Spec.pdf.gz"}


def render_real_pages(folder: Path, labels: Path = REAL_PAGES / "labels-ppocr.jsonl.gz") -> Path:
    """Render every page the fixture ``labels`` name into ``folder`` (pdftoppm at each record's
    dpi, at the record's ``image`` path) and return ``folder``: the dataset those labels' image
    paths are relative to. Skips the calling test when poppler is not installed."""
    import gzip
    import json
    import shutil
    import subprocess

    import pytest

    if shutil.which("pdftoppm") is None:
        pytest.skip("poppler-utils not installed")
    with gzip.open(labels, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    for row in rows:
        out = folder / row["image"]
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        pdf = folder / (row["doc"] + ".pdf")
        if not pdf.exists():
            pdf.write_bytes(gzip.decompress((REAL_PAGES / REAL_PAGE_PDFS[row["doc"]]).read_bytes()))
        page = str(row["page"])
        subprocess.run(["pdftoppm", "-r", str(row["dpi"]), "-f", page, "-l", page, "-singlefile", "-png", str(pdf),
                        str(out.with_suffix(""))], check=True)
        with Image.open(out) as img:
            assert list(img.size) == row["native_size"], (out, img.size, row["native_size"])
    return folder


def unique_models() -> list:
    """Every registered token model once (aliases share a model)."""
    from cares_integrations.tokens import get_target, list_targets

    seen: dict[int, object] = {}
    for name in list_targets():
        model = get_target(name)
        seen.setdefault(id(model), model)
    return list(seen.values())
