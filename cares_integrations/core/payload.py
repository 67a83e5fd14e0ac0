"""Reading and writing page images in every form they travel through a pipeline.

A page image reaches us as a PIL image, raw bytes, a base64 string, a ``data:`` URL, a local
path, or a remote ``http(s)`` URL. :func:`load_image` turns any of these into a
:class:`DecodedImage` (EXIF orientation applied, first frame of a multi-frame file, pixel-limit
checked) and :meth:`DecodedImage.encode_like` writes a resized image back in the caller's form.
Remote URLs are fetched only when the caller passes a :class:`FetchPolicy`.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DecompressionBombError, ImageDecodeError, ImageSkipped

DEFAULT_MAX_PIXELS = 64_000_000
"""Default decompression-bomb guard: 64 megapixels (a 600-dpi A3 scan is about 35 MP)."""

ImageInput = Union[Image.Image, bytes, bytearray, memoryview, str, os.PathLike, "DecodedImage"]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?)(;base64)?,", re.I)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/_=\r\n-]+$")

_FORMAT_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "MPO": "image/jpeg",
}
_MIME_FORMAT = {v: k for k, v in _FORMAT_MIME.items() if k != "MPO"}
_MIME_FORMAT["image/jpg"] = "JPEG"
# Formats we can write back; anything else is re-encoded as PNG (lossless).
_WRITABLE = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}


class SourceKind(str, Enum):
    """The form in which an image was handed to us; outputs are written back in the same form."""

    PIL = "pil"
    BYTES = "bytes"
    BASE64 = "base64"
    DATA_URL = "data_url"
    PATH = "path"
    URL = "url"


@dataclass(frozen=True)
class FetchPolicy:
    """Opt-in rules for fetching remote ``http(s)`` images.

    Only hosts in ``allowed_hosts`` are fetched (``"*"`` allows any host; ``"*.example.com"``
    allows subdomains), with a timeout in seconds and a byte limit on the response.
    """

    allowed_hosts: frozenset[str] = frozenset()
    timeout: float = 10.0
    max_bytes: int = 20 * 1024 * 1024

    def __init__(self, allowed_hosts=(), timeout: float = 10.0, max_bytes: int = 20 * 1024 * 1024):
        if isinstance(allowed_hosts, str):
            allowed_hosts = (allowed_hosts,)
        object.__setattr__(self, "allowed_hosts", frozenset(h.lower() for h in allowed_hosts))
        object.__setattr__(self, "timeout", float(timeout))
        object.__setattr__(self, "max_bytes", int(max_bytes))

    def allows(self, url: str) -> bool:
        """Whether ``url``'s host is on the allow-list."""
        host = (urllib.parse.urlsplit(url).hostname or "").lower()
        for pattern in self.allowed_hosts:
            if pattern == "*" or pattern == host:
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
        return False


def mime_for_format(fmt: str) -> str:
    """The MIME type for a PIL format name (``"PNG"`` -> ``"image/png"``)."""
    return _FORMAT_MIME.get(fmt.upper(), "image/png")


def format_for_mime(mime: str | None) -> str | None:
    """The PIL format name for a MIME type, or None when unknown."""
    if not mime:
        return None
    return _MIME_FORMAT.get(mime.lower().strip())


def is_remote_url(value: Any) -> bool:
    """True for strings that are ``http://`` or ``https://`` URLs."""
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


@dataclass
class DecodedImage:
    """An image read from any supported form, ready to measure, route and resize.

    ``image`` is the first frame with EXIF orientation applied, in a mode Pillow can resize
    (RGB, RGBA or L). ``size`` is its (width, height). ``notes`` records what was done to read it
    (orientation applied, first of N frames, mode converted) so decisions can report it.
    """

    image: Image.Image
    format: str
    source_kind: SourceKind
    original: Any = field(repr=False)
    raw: bytes | None = field(default=None, repr=False)
    n_frames: int = 1
    notes: list[str] = field(default_factory=list)
    source_mime: str | None = None
    original_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.original_size is None:
            self.original_size = self.image.size

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image as stored, after EXIF orientation.

        Equal to ``image.size`` unless the image was draft-decoded at a reduced scale.
        """
        return self.original_size  # type: ignore[return-value]

    @property
    def mime_type(self) -> str:
        """MIME type of the format we write back."""
        return mime_for_format(self.output_format())

    def output_format(self, fmt: str | None = None) -> str:
        """The format an output is written in: ``fmt`` if given, else the input's own."""
        chosen = (fmt or self.format or "PNG").upper()
        if chosen == "JPG":
            chosen = "JPEG"
        if chosen == "MPO":
            chosen = "JPEG"
        return chosen if chosen in _WRITABLE else "PNG"

    def encode(self, image: Image.Image, *, fmt: str | None = None, quality: int = 90) -> bytes:
        """Encode ``image`` as bytes in ``fmt`` (default: the input's format)."""
        return encode_image(image, self.output_format(fmt), quality=quality)

    def encode_like(self, image: Image.Image, *, fmt: str | None = None, quality: int = 90) -> Any:
        """Write ``image`` back in the form the original came in.

        PIL in, PIL out; bytes in, bytes out; base64 in, base64 out; data URL in, data URL out.
        A local path or a fetched URL cannot be written back in place, so those become data URLs.
        """
        if self.source_kind is SourceKind.PIL:
            return image
        data = self.encode(image, fmt=fmt, quality=quality)
        if self.source_kind is SourceKind.BYTES:
            return data
        if self.source_kind is SourceKind.BASE64:
            return base64.b64encode(data).decode("ascii")
        mime = mime_for_format(self.output_format(fmt))
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def encode_image(image: Image.Image, fmt: str, *, quality: int = 90) -> bytes:
    """Encode a PIL image, converting modes the format cannot hold (RGBA to JPEG on white)."""
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    img = image
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        if img.mode in ("RGBA", "LA", "P"):
            img = _flatten(img)
        elif img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
        params = {"quality": int(quality), "optimize": False}
    elif fmt == "PNG":
        params = {"compress_level": 6}
    elif fmt == "WEBP":
        params = {"quality": int(quality)}
    elif fmt == "BMP" and img.mode not in ("RGB", "L", "1", "P"):
        img = _flatten(img)
    elif fmt == "GIF" and img.mode not in ("P", "L"):
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _flatten(img: Image.Image) -> Image.Image:
    """Composite an image with alpha onto white and return RGB."""
    rgba = img.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _normalise_mode(img: Image.Image, notes: list[str]) -> Image.Image:
    """Bring any Pillow mode to RGB, RGBA or L without losing content."""
    mode = img.mode
    if mode in ("RGB", "RGBA", "L"):
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(img)
        if mode == "F" or mode == "I":
            lo, hi = float(arr.min()), float(arr.max())
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            out = ((arr.astype("float64") - lo) * scale).clip(0, 255).astype("uint8")
            notes.append(f"{mode} image rescaled from [{lo:g}, {hi:g}] to 8-bit")
        else:
            out = (arr.astype("uint32") >> 8).astype("uint8")
            notes.append("16-bit image reduced to 8-bit")
        return Image.fromarray(out)
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        notes.append(f"palette image converted to {'RGBA' if has_alpha else 'RGB'}")
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode == "LA":
        return img.convert("RGBA")
    if mode == "1":
        return img.convert("L")
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB")
        return img.convert("RGB")
    notes.append(f"{mode} image converted to RGB")
    return img.convert("RGB")


def _decode_base64(text: str, what: str) -> bytes:
    cleaned = "".join(text.split())
    if not cleaned:
        raise ImageDecodeError(f"{what} is empty")
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"{what} is not valid base64: {exc}") from exc


def _parse_data_url(url: str) -> tuple[bytes, str | None]:
    match = _DATA_URL.match(url)
    if not match:
        raise ImageDecodeError(f"malformed data URL (starts {url[:40]!r})")
    payload = url[match.end():]
    mime = match.group("mime")
    if url[: match.end()].lower().rstrip(",").endswith(";base64"):
        return _decode_base64(payload, "data URL payload"), mime
    return urllib.parse.unquote_to_bytes(payload), mime


def _fetch(url: str, policy: FetchPolicy) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "cares-integrations"})
    try:
        with urllib.request.urlopen(request, timeout=policy.timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
            if length is not None and int(length) > policy.max_bytes:
                raise ImageDecodeError(
                    f"remote image {url} is {int(length)} bytes, over the {policy.max_bytes}-byte limit"
                )
            data = response.read(policy.max_bytes + 1)
    except ImageDecodeError:
        raise
    except Exception as exc:  # network errors of every kind
        raise ImageDecodeError(f"could not fetch remote image {url}: {exc}") from exc
    if len(data) > policy.max_bytes:
        raise ImageDecodeError(f"remote image {url} exceeds the {policy.max_bytes}-byte limit")
    return data


def _classify_string(value: str) -> SourceKind:
    head = value[:16].lower()
    if head.startswith("data:"):
        return SourceKind.DATA_URL
    if head.startswith(("http://", "https://")):
        return SourceKind.URL
    if head.startswith("file://"):
        return SourceKind.PATH
    # Base64 never holds '.', '\\' or spaces, while paths usually do; "/9j/..." (JPEG base64)
    # starts with a slash, so the alphabet decides, not the first character.
    if len(value) < 4096 and os.path.exists(value):
        return SourceKind.PATH
    if _B64_CHARS.match(value[:4096]) and len(value) >= 8:
        return SourceKind.BASE64
    if len(value) < 4096 and ("." in value or "/" in value or "\\" in value) and " " not in value.strip():
        return SourceKind.PATH  # a path that doesn't exist: reading it gives the precise error
    raise ImageDecodeError(
        f"string image source is neither a data URL, an http(s) URL, an existing path, "
        f"nor base64 (starts {value[:40]!r})"
    )
    return SourceKind.PATH


def load_image(
    source: ImageInput,
    *,
    fetch: FetchPolicy | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | Callable[[int, int], tuple[int, int]] | None = None,
) -> DecodedImage:
    """Read an image from any supported form.

    ``draft`` is an optional (width, height) the caller will downscale to, or a function of the
    oriented (width, height) returning it: JPEGs are then decoded
    at the smallest power-of-two scale still at least that large (much faster, no visible loss,
    since a LANCZOS resize follows). ``size`` still reports the stored size.

    Raises :class:`ImageDecodeError` (or its subclass :class:`DecompressionBombError`) when the
    input is corrupt, not an image, missing, or over ``max_pixels``; raises
    :class:`ImageSkipped` for a remote URL when ``fetch`` does not allow its host.
    """
    if isinstance(source, DecodedImage):
        return source
    raw: bytes | None = None
    mime_hint: str | None = None
    original = source
    if isinstance(source, Image.Image):
        kind = SourceKind.PIL
        _check_pixels(source.size, max_pixels, "PIL image")
        return _finish(source, source.format or "PNG", kind, original, None, max_pixels, None)
    if isinstance(source, (bytes, bytearray, memoryview)):
        kind = SourceKind.BYTES
        raw = bytes(source)
    elif isinstance(source, os.PathLike):
        kind = SourceKind.PATH
    elif isinstance(source, str):
        kind = _classify_string(source)
    else:
        raise ImageDecodeError(
            f"unsupported image source type {type(source).__name__}; expected a PIL image, bytes, "
            "a base64 string, a data URL, a path, or an http(s) URL"
        )

    if kind is SourceKind.DATA_URL:
        raw, mime_hint = _parse_data_url(source)  # type: ignore[arg-type]
    elif kind is SourceKind.BASE64:
        raw = _decode_base64(source, "base64 image string")  # type: ignore[arg-type]
    elif kind is SourceKind.URL:
        if fetch is None or not fetch.allows(source):  # type: ignore[arg-type]
            host = urllib.parse.urlsplit(source).hostname  # type: ignore[arg-type]
            why = "remote fetching is off" if fetch is None else f"host {host!r} is not allow-listed"
            raise ImageSkipped(f"remote image URL left as is: {why}")
        raw = _fetch(source, fetch)  # type: ignore[arg-type]
    elif kind is SourceKind.PATH:
        path = str(source)
        if path.lower().startswith("file://"):
            path = urllib.request.url2pathname(urllib.parse.urlsplit(path).path)
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read image file {path!r}: {exc.strerror or exc}") from exc

    assert raw is not None
    if not raw:
        raise ImageDecodeError(f"image data from {kind.value} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        if isinstance(exc, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
            raise DecompressionBombError(f"image from {kind.value} refused: {exc}") from exc
        raise ImageDecodeError(
            f"data from {kind.value} is not a recognisable image ({len(raw)} bytes, starts {raw[:8]!r})"
        ) from exc
    except Exception as exc:
        raise ImageDecodeError(f"cannot open image from {kind.value}: {exc}") from exc
    return _finish(
        img, img.format or format_for_mime(mime_hint) or "PNG", kind, original, raw, max_pixels, mime_hint, draft
    )


def _check_pixels(size: tuple[int, int], max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise DecompressionBombError(
            f"{what} has {size[0]}x{size[1]} = {size[0] * size[1]} pixels, over the limit of "
            f"{max_pixels} (raise max_pixels if this image is legitimate)"
        )


def _finish(
    img: Image.Image,
    fmt: str,
    kind: SourceKind,
    original: Any,
    raw: bytes | None,
    max_pixels: int | None,
    mime_hint: str | None,
    draft: tuple[int, int] | Callable[[int, int], tuple[int, int]] | None = None,
) -> DecodedImage:
    """Check size, take the first frame, apply EXIF orientation, decode and normalise the mode."""
    notes: list[str] = []
    _check_pixels(img.size, max_pixels, f"image from {kind.value}")
    n_frames = int(getattr(img, "n_frames", 1) or 1)
    if n_frames > 1:
        img.seek(0)
        notes.append(f"multi-frame image: used the first of {n_frames} frames")
    try:
        orientation = img.getexif().get(0x0112, 1)
        stored_w, stored_h = img.size
        swapped = orientation in (5, 6, 7, 8)
        original_size = (stored_h, stored_w) if swapped else (stored_w, stored_h)
        if draft is not None and kind is not SourceKind.PIL and img.format == "JPEG":
            want = draft(*original_size) if callable(draft) else draft
            want = (want[1], want[0]) if swapped else want
            img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", want)
        if kind is SourceKind.PIL:
            # Don't touch the caller's object: transpose returns a copy.
            img = ImageOps.exif_transpose(img) if orientation not in (1, None) else img
        else:
            img.load()
            if orientation not in (1, None):
                img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"image from {kind.value} is truncated or corrupt: {exc}") from exc
    if orientation not in (1, None):
        notes.append(f"EXIF orientation {orientation} applied")
    if n_frames > 1 and kind is SourceKind.PIL:
        img = img.copy()
    img = _normalise_mode(img, notes)
    return DecodedImage(
        image=img,
        format=(fmt or "PNG").upper(),
        source_kind=kind,
        original=original,
        raw=raw,
        n_frames=n_frames,
        notes=notes,
        source_mime=mime_hint,
        original_size=original_size,
    )
