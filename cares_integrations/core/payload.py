"""Reading and writing page images in every form they travel through a pipeline.

A page image reaches us as a PIL image, raw bytes, a base64 string, a ``data:`` URL, a local
path, or a remote ``http(s)`` URL. :func:`load_image` turns any of these into a
:class:`DecodedImage` (EXIF orientation applied, first frame of a multi-frame file, pixel-limit
checked) and :meth:`DecodedImage.encode_like` writes a resized image back in the caller's form.
Remote URLs are fetched only when the caller passes a :class:`FetchPolicy`.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Union

from PIL import Image, ImageOps

from .codec import base64_alphabet, decode_base64, encode_base64, looks_like_base64_image, make_data_url, parse_data_url, sniff_format
from .composite import flatten
from .errors import DecompressionBombError, ImageDecodeError, ImageSkipped
from .fetch import FetchedImage, FetchPolicy, check_url, fetch as fetch_url, is_remote_url
from .sources import ANY_LOCAL_FILE, LocalFilePolicy, file_url_path, read_local_file

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "FetchPolicy",
    "ImageInput",
    "LocalFilePolicy",
    "SourceKind",
    "encode_image",
    "format_for_mime",
    "is_remote_url",
    "load_image",
    "mime_for_format",
]

DEFAULT_MAX_PIXELS = 64_000_000
"""Default decompression-bomb guard: 64 megapixels (a 600-dpi A3 scan is about 35 MP)."""

DEFAULT_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"})
"""Formats decoded by default, recognised from their leading bytes before Pillow sees them.

Anything else (EPS, PDF, PSD, ICO ...) is refused with an :class:`ImageDecodeError`; EPS in
particular would make Pillow start Ghostscript."""

ImageInput = Union[Image.Image, bytes, bytearray, memoryview, str, os.PathLike, "DecodedImage"]

_OTHER_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")

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


def mime_for_format(fmt: str) -> str:
    """The MIME type for a PIL format name (``"PNG"`` -> ``"image/png"``)."""
    return _FORMAT_MIME.get(fmt.upper(), "image/png")


def format_for_mime(mime: str | None) -> str | None:
    """The PIL format name for a MIME type, or None when unknown."""
    if not mime:
        return None
    return _MIME_FORMAT.get(mime.lower().strip())


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
        return self.wrap(data, fmt)

    def wrap(self, data: bytes, fmt: str | None = None) -> Any:
        """Encoded ``data`` in the original's form: bytes, base64, or (otherwise) a data URL."""
        if self.source_kind in (SourceKind.BYTES, SourceKind.PIL):
            return data
        if self.source_kind is SourceKind.BASE64:
            return encode_base64(data)
        return make_data_url(data, mime_for_format(self.output_format(fmt)))


def encode_image(image: Image.Image, fmt: str, *, quality: int = 90) -> bytes:
    """Encode a PIL image, converting modes the format cannot hold (RGBA to JPEG on white)."""
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    img = image
    params: dict[str, Any] = {}
    if fmt == "JPEG":
        if img.mode in ("RGBA", "LA", "P"):
            img = flatten(img)
        elif img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
        params = {"quality": int(quality), "optimize": False}
    elif fmt == "PNG":
        params = {"compress_level": 6}
    elif fmt == "WEBP":
        params = {"quality": int(quality)}
    elif fmt == "BMP" and img.mode not in ("RGB", "L", "1", "P"):
        img = flatten(img)
    elif fmt == "GIF" and img.mode not in ("P", "L"):
        img = img.convert("P", palette=Image.Palette.ADAPTIVE)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


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


def _classify_string(value: str) -> SourceKind:
    """What a string holds, from its text alone (the file system is never probed)."""
    head = value[:16].lower()
    if head.startswith("data:"):
        return SourceKind.DATA_URL
    if head.startswith(("http://", "https://")):
        return SourceKind.URL
    if head.startswith("file:"):
        return SourceKind.PATH
    if _OTHER_SCHEME.match(value[:64]):
        raise ImageSkipped("image URL left as is: only http(s), data: and (with a local-file policy) file: URLs are read")
    # Base64 of an image starts with its format's magic ("iVBORw0KGgo" for PNG, "/9j/" for
    # JPEG), which tells "/9j/4AAQ..." from "/srv/pages/a.png" without touching the disk.
    if looks_like_base64_image(value) or len(value) >= 4096:
        return SourceKind.BASE64
    if "/" not in value and "\\" not in value and "." not in value:
        if " " not in value.strip() and base64_alphabet(value) is not None:
            return SourceKind.BASE64  # decoding says precisely what is wrong with it
        raise ImageDecodeError(
            f"string image source ({len(value)} characters) is neither a data URL, an http(s) URL, "
            "a path, nor base64"
        )
    return SourceKind.PATH


def _allowed(formats: Iterable[str] | None) -> frozenset[str]:
    if formats is None:
        return DEFAULT_FORMATS
    chosen = frozenset(f.upper().replace("JPG", "JPEG") for f in formats)
    return chosen


def _open_allowed(raw: bytes, formats: frozenset[str], kind: SourceKind) -> Image.Image:
    """Open ``raw`` with the one Pillow plugin its leading bytes name, if that format is allowed.

    Pillow's own pixel-count check is not run here (our ``max_pixels`` is the guard), and no
    other decoder ever sees the bytes, so no plugin that starts a program (EPS) can be reached.
    """
    fmt = sniff_format(raw)
    allowed = ", ".join(sorted(formats))
    if fmt is None:
        raise ImageDecodeError(
            f"data from {kind.value} is not a recognisable image ({len(raw)} bytes); allowed formats: {allowed}"
        )
    if fmt not in formats:
        raise ImageDecodeError(f"data from {kind.value} is {fmt}, which is not an allowed image format ({allowed})")
    Image.preinit()
    if fmt not in Image.OPEN:
        Image.init()
    if fmt not in Image.OPEN:
        raise ImageDecodeError(f"this Pillow build cannot decode {fmt}")
    factory, _accept = Image.OPEN[fmt]
    try:
        return factory(io.BytesIO(raw), None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecompressionBombError(f"{fmt} image from {kind.value} refused by Pillow's own limit: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a malformed header raises anything from SyntaxError to struct.error
        raise ImageDecodeError(
            f"data from {kind.value} is not a recognisable image: it starts like {fmt} but is corrupt "
            f"({type(exc).__name__})"
        ) from exc


def _read_source(source: Any, kind: SourceKind, fetch: FetchPolicy | None,
                 local_files: LocalFilePolicy | None) -> tuple[bytes, str | None]:
    """The raw bytes (and a MIME hint) of a non-PIL source."""
    if isinstance(source, FetchedImage):
        return source.data, None
    if kind is SourceKind.BYTES:
        return bytes(source), None
    if kind is SourceKind.DATA_URL:
        return parse_data_url(source)
    if kind is SourceKind.BASE64:
        return decode_base64(source, "base64 image string"), None
    if kind is SourceKind.URL:
        check_url(source, fetch)
        return fetch_url(source, fetch), None
    path = os.fspath(source)
    if isinstance(path, str) and path[:5].lower() == "file:":
        path = file_url_path(path)
    return read_local_file(path, local_files), None


def load_image(
    source: ImageInput,
    *,
    fetch: FetchPolicy | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | Callable[[int, int], tuple[int, int]] | None = None,
    local_files: LocalFilePolicy | None = ANY_LOCAL_FILE,
    formats: Iterable[str] | None = None,
) -> DecodedImage:
    """Read an image from any supported form.

    ``fetch``: a :class:`FetchPolicy` lets http(s) URLs be downloaded (default: they are not).
    ``local_files``: which paths and ``file:`` URLs may be read; the default reads any regular
    file under a byte limit, right for paths the program chose itself; pass None (or a policy
    with roots) for strings from untrusted input. ``formats``: the decoder allow-list (default
    :data:`DEFAULT_FORMATS`), checked from the leading bytes. ``max_pixels``: the
    decompression-bomb guard (None lifts it, Pillow's own limit included).

    ``draft`` is an optional (width, height) the caller will downscale to, or a function of the
    oriented (width, height) returning it: JPEGs are then decoded
    at the smallest power-of-two scale still at least that large (much faster, no visible loss,
    since a LANCZOS resize follows). ``size`` still reports the stored size.

    Raises :class:`ImageDecodeError` (or its subclass :class:`DecompressionBombError`) when the
    input is corrupt, not an allowed image, unreadable, or over ``max_pixels``; raises
    :class:`ImageSkipped` for a remote URL or a local path that the policies do not allow.
    Error messages never carry bytes of the file or payload.
    """
    if isinstance(source, DecodedImage):
        return source
    allowed = _allowed(formats)
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, "PIL image")
        return _finish(source, source.format or "PNG", SourceKind.PIL, source, None, max_pixels, None)
    original: Any = source
    if isinstance(source, FetchedImage):
        kind, original = SourceKind.URL, source.url
    elif isinstance(source, (bytes, bytearray, memoryview)):
        kind = SourceKind.BYTES
    elif isinstance(source, os.PathLike):
        kind = SourceKind.PATH
    elif isinstance(source, str):
        kind = _classify_string(source)
    else:
        raise ImageDecodeError(
            f"unsupported image source type {type(source).__name__}; expected a PIL image, bytes, "
            "a base64 string, a data URL, a path, or an http(s) URL"
        )
    raw, mime_hint = _read_source(source, kind, fetch, local_files)
    if not raw:
        raise ImageDecodeError(f"image data from {kind.value} is empty (0 bytes)")
    img = _open_allowed(raw, allowed, kind)
    return _finish(
        img, img.format or format_for_mime(mime_hint) or "PNG", kind, original, raw, max_pixels, mime_hint, draft
    )


def _check_pixels(size: tuple[int, int], max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise DecompressionBombError(
            f"{what} has {size[0]}x{size[1]} = {size[0] * size[1]} pixels, over the limit of "
            f"{max_pixels} (raise max_pixels if this image is legitimate)"
        )


def _safe_reason(exc: BaseException) -> str:
    """``exc``'s type and message, the message dropped if it quotes bytes of the data."""
    text = str(exc)
    if not text or "b'" in text or 'b"' in text or len(text) > 200:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}"


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
    """Check size, pick the frame, apply EXIF orientation, decode and normalise the mode.

    A caller's PIL image is never changed: its current frame is copied (frame position, mode
    and pixels stay as they were); a file's first frame is used.
    """
    notes: list[str] = []
    _check_pixels(img.size, max_pixels, f"image from {kind.value}")
    try:
        n_frames = int(getattr(img, "n_frames", 1) or 1)
        if n_frames > 1:
            if kind is SourceKind.PIL:
                notes.append(f"multi-frame image: used its current frame, {img.tell() + 1} of {n_frames}")
                img = img.copy()
            else:
                notes.append(f"multi-frame image: used the first of {n_frames} frames")
        orientation = img.getexif().get(0x0112, 1)
        stored_w, stored_h = img.size
        swapped = orientation in (5, 6, 7, 8)
        original_size = (stored_h, stored_w) if swapped else (stored_w, stored_h)
        if draft is not None and kind is not SourceKind.PIL and img.format == "JPEG":
            want = draft(*original_size) if callable(draft) else draft
            want = (want[1], want[0]) if swapped else want
            img.draft(img.mode if img.mode in ("RGB", "L") else "RGB", want)
        if kind is not SourceKind.PIL:
            img.load()
        if orientation not in (1, None):
            img = ImageOps.exif_transpose(img)  # a copy: the caller's object is not touched
            notes.append(f"EXIF orientation {orientation} applied")
        img = _normalise_mode(img, notes)
    except (ImageDecodeError, ImageSkipped):
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on hostile data
        raise ImageDecodeError(f"image from {kind.value} is truncated or corrupt ({_safe_reason(exc)})") from exc
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
