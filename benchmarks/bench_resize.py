"""Decode-resize-encode: cares_integrations.core.resize against a plain Pillow resize, side by side.

    python benchmarks/bench_resize.py [--repeat 15] [--long-side 768]
    python benchmarks/bench_resize.py --checks [--repeat 41]

On a 200-dpi letter page (1700x2200) saved as PNG and as JPEG, times
``resize(data, long_side=...)`` (JPEG draft decoding, LANCZOS with reducing_gap, re-encode in the
input's format) against ``Image.open(data).resize(size, LANCZOS).save(fmt)`` on the same bytes
and reports the median times and their ratio. Both outputs are compared pixel by pixel too, so a
speed-up that costs visible quality would show.

``--checks`` measures what the hostile-input checks cost (format sniffing and the decoder
allow-list, strict two-alphabet base64 validation, the regular-file/byte-limit file read) on the
same page, read from a file and from a base64 data URL: the checks alone against the whole
decode-resize-encode, and ``resize`` with the checks against ``resize`` with them patched out,
interleaved run by run.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import tempfile
import time
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cares_integrations import fit_long_side, resize

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def letter_page_200dpi() -> Image.Image:
    """A 1700x2200 page with a heading, body text, a table and fine print."""
    img = Image.new("RGB", (1700, 2200), "white")
    draw = ImageDraw.Draw(img)
    try:
        big, body, small = (ImageFont.truetype(FONT, s) for s in (64, 30, 16))
    except OSError:
        big = body = small = ImageFont.load_default()
    draw.text((120, 100), "Annual Report 2025", font=big, fill="black")
    y = 260
    for i in range(40):
        draw.text((120, y), f"Paragraph line {i}: the committee reviewed item {i * 13} at {i * 2.5:.1f}% growth.",
                  font=body, fill=(20, 20, 20))
        y += 42
    for r in range(8):
        for c in range(5):
            draw.rectangle((120 + c * 290, 2000 - 8 * 22 + r * 22, 410 + c * 290, 2022 - 8 * 22 + r * 22), outline="gray")
            draw.text((126 + c * 290, 2002 - 8 * 22 + r * 22), f"{r * 100 + c * 7}.{c}", font=small, fill="black")
    draw.rectangle((1200, 300, 1600, 700), fill=(40, 90, 200))
    return img


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _plain(data: bytes, size: tuple[int, int], fmt: str) -> bytes:
    img = Image.open(io.BytesIO(data))
    out = img.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextmanager
def _checks_off():
    """Patch the intake checks out: Pillow picks the decoder, base64 and files are read plainly."""
    from cares_integrations.core import payload

    saved = payload._open_allowed, payload.decode_base64, payload.read_local_file
    payload._open_allowed = lambda raw, formats, kind: Image.open(io.BytesIO(raw))
    payload.decode_base64 = lambda text, what="": base64.b64decode(text)
    payload.read_local_file = lambda path, policy, what="": open(path, "rb").read()
    try:
        yield
    finally:
        payload._open_allowed, payload.decode_base64, payload.read_local_file = saved


def _check_cost(source: str) -> float:
    """Seconds the checks add for ``source``: classifying the string, sniffing the format, and
    the strict base64 decode or the checked file read over a plain one."""
    from cares_integrations.core.codec import decode_base64, sniff_format
    from cares_integrations.core.payload import _classify_string
    from cares_integrations.core.sources import ANY_LOCAL_FILE, read_local_file

    t0 = time.perf_counter()
    _classify_string(source)
    if source.startswith("data:"):
        raw = decode_base64(source[22:])
        t1 = time.perf_counter()
        base64.b64decode(source[22:])
    else:
        raw = read_local_file(source, ANY_LOCAL_FILE)
        t1 = time.perf_counter()
        with open(source, "rb") as fh:
            fh.read()
    t2 = time.perf_counter()
    sniff_format(raw)
    t3 = time.perf_counter()
    return (t1 - t0) - (t2 - t1) + (t3 - t2)


def checks(repeat: int, long_side: int = 768) -> None:
    """Print the cost of the intake checks on the 200-dpi page (see the module docstring)."""
    page = letter_page_200dpi()
    data = _encode(page, "PNG")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "page.png")
        with open(path, "wb") as fh:
            fh.write(data)
        url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        print(f"page 1700x2200 (200-dpi letter) PNG, {len(data)} bytes, long side {long_side}; "
              f"median of {repeat} interleaved runs")
        print(f"{'source':<9} {'full ms':>8} {'checks ms':>10} {'share':>7} {'no-checks ms':>13} {'ratio':>7}")
        for name, source in (("file", path), ("data URL", url)):
            with_t: list[float] = []
            without_t: list[float] = []
            only_t: list[float] = []
            resize(source, long_side=long_side)
            for _ in range(repeat):
                t0 = time.perf_counter()
                resize(source, long_side=long_side)
                with_t.append(time.perf_counter() - t0)
                with _checks_off():
                    t0 = time.perf_counter()
                    resize(source, long_side=long_side)
                    without_t.append(time.perf_counter() - t0)
                only_t.append(_check_cost(source))
            w, wo, c = (statistics.median(t) for t in (with_t, without_t, only_t))
            print(f"{name:<9} {w * 1e3:>8.1f} {c * 1e3:>10.2f} {c / w:>7.2%} {wo * 1e3:>13.1f} {w / wo:>7.3f}")


def main() -> None:
    """Run the benchmark and print a table of median times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--long-side", type=int, nargs="+", default=[384, 768, 1024])
    parser.add_argument("--checks", action="store_true", help="measure the cost of the hostile-input checks")
    args = parser.parse_args()
    if args.checks:
        checks(args.repeat, args.long_side[1] if len(args.long_side) > 1 else args.long_side[0])
        return
    page = letter_page_200dpi()
    print(f"page 1700x2200 (200-dpi letter); median of {args.repeat} runs each")
    print(f"{'format':<6} {'long side':>9} {'plain ms':>9} {'ours ms':>8} {'speed-up':>9} {'mean |diff|':>12}")
    for fmt in ("PNG", "JPEG"):
        data = _encode(page, fmt)
        for long_side in args.long_side:
            size = fit_long_side(1700, 2200, long_side)
            plain = _median_time(lambda: _plain(data, size, fmt), args.repeat)
            ours = _median_time(lambda: resize(data, long_side=long_side, quality=90), args.repeat)
            a = np.asarray(Image.open(io.BytesIO(_plain(data, size, fmt))).convert("L"), dtype=float)
            b = np.asarray(Image.open(io.BytesIO(resize(data, long_side=long_side))).convert("L"), dtype=float)
            print(f"{fmt:<6} {long_side:>9} {plain * 1e3:>9.1f} {ours * 1e3:>8.1f} {plain / ours:>8.2f}x {np.abs(a - b).mean():>12.2f}")


if __name__ == "__main__":
    main()
