"""The one base64 and ``data:`` URL codec, and format sniffing from leading bytes.

Every module that reads or writes inline images (payload intake, the LangChain blocks and
tools, the LlamaIndex nodes and chat blocks) goes through these functions, so there is one
rule for what counts as base64 and one way to build or split a data URL.

Base64 is accepted in the standard (``+/``) or the URL-safe (``-_``) alphabet, with or without
padding and with embedded whitespace; a string that mixes the two alphabets, or holds any other
character, is valid in neither and raises :class:`ImageDecodeError`. Error messages never quote
the payload itself.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse

from .errors import ImageDecodeError

_STANDARD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_WHITESPACE = re.compile(r"\s+")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*?)(?P<b64>;base64)?,", re.I)

# Leading bytes of the formats we can name. Only the ones in the decoder allow-list are decoded;
# the others are named in the error so a caller sees why (an EPS labelled image/png, say).
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"%!PS", 0, "EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"%PDF", 0, "PDF"),
    (b"8BPS", 0, "PSD"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG2000"),
    (b"gimp xcf", 0, "XCF"),
    (b"\x59\xa6\x6a\x95", 0, "SUN"),
    (b"#define", 0, "XBM"),
    (b"/* XPM */", 0, "XPM"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format named by ``data``'s leading bytes (``"PNG"``, ``"EPS"`` ...), or None."""
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for magic, offset, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def base64_alphabet(text: str) -> str | None:
    """``"standard"`` or ``"urlsafe"`` when ``text`` (whitespace ignored) is written in that
    base64 alphabet, else None (mixed alphabets, other characters, or empty)."""
    cleaned = _WHITESPACE.sub("", text)
    if not cleaned:
        return None
    if _STANDARD.fullmatch(cleaned):
        return "standard"
    if _URLSAFE.fullmatch(cleaned):
        return "urlsafe"
    return None


def decode_base64(text: str | bytes, what: str = "base64 image string") -> bytes:
    """Decode base64 strictly, in the standard or the URL-safe alphabet (padding optional).

    Raises :class:`ImageDecodeError` for an empty string, a string valid in neither alphabet,
    or an impossible length; the message names ``what`` but never quotes the payload.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError as exc:
            raise ImageDecodeError(f"{what} is not valid base64: it holds non-ASCII bytes") from exc
    cleaned = "".join(text.split())
    if not cleaned:
        raise ImageDecodeError(f"{what} is empty")
    body = cleaned.rstrip("=")
    if len(cleaned) - len(body) > 2 or len(body) % 4 == 1:
        raise ImageDecodeError(f"{what} is not valid base64: {len(cleaned)} characters is not a valid length")
    padded = body + "=" * (-len(body) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        pass
    if "+" not in body and "/" not in body:  # maybe the URL-safe alphabet; never a mix of both
        try:
            return base64.b64decode(padded.translate(_URLSAFE_TO_STANDARD), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise ImageDecodeError(
        f"{what} is not valid base64: its {len(cleaned)} characters fit neither the standard "
        "nor the URL-safe alphabet"
    )


def encode_base64(data: bytes) -> str:
    """Standard-alphabet, padded base64 text of ``data``."""
    return base64.b64encode(bytes(data)).decode("ascii")


def looks_like_base64_image(text: str) -> bool:
    """The one base64 detection rule: ``text`` is written in one base64 alphabet and its first
    decoded bytes name a known image format (every base64 image starts with its format's magic).

    Only the first few characters are decoded, so this is cheap on a multi-megabyte string.
    """
    if not isinstance(text, str) or len(text) < 8:
        return False
    head = _WHITESPACE.sub("", text[:64])[:24]
    if len(head) < 8 or base64_alphabet(head) is None:
        return False
    try:
        return sniff_format(decode_base64(head[: len(head) // 4 * 4].rstrip("=") or head)) is not None
    except ImageDecodeError:
        return False


def is_data_url(value: object) -> bool:
    """True for strings that start with ``data:``."""
    return isinstance(value, str) and value[:5].lower() == "data:"


def split_data_url(url: str) -> tuple[str | None, bool, str]:
    """(MIME type or None, whether the payload is base64, the payload text) of a data URL."""
    match = _DATA_URL.match(url)
    if not match:
        raise ImageDecodeError(f"malformed data URL ({len(url)} characters; expected data:[<mime>][;base64],<data>)")
    return match.group("mime"), match.group("b64") is not None, url[match.end():]


def parse_data_url(url: str) -> tuple[bytes, str | None]:
    """The decoded bytes and the MIME type of a data URL."""
    mime, is_b64, payload = split_data_url(url)
    if is_b64:
        return decode_base64(payload, "data URL payload"), mime
    return urllib.parse.unquote_to_bytes(payload), mime


def make_data_url(data: bytes | str, mime: str | None) -> str:
    """A base64 data URL for ``data`` (raw bytes, or base64 text used as it is)."""
    text = data if isinstance(data, str) else encode_base64(data)
    return f"data:{mime or ''};base64,{text}"
