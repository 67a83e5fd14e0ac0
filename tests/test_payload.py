"""Reading images in every form, and every bad input's typed error."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from cares_integrations import (
    DecompressionBombError,
    FetchPolicy,
    ImageDecodeError,
    ImageSkipped,
    SourceKind,
    load_image,
)
from helpers import encode, loopback_server, png_header, render_page


def test_every_form_decodes_to_the_same_pixels(page_image, page_png, page_b64, page_data_url, tmp_path):
    path = tmp_path / "page.png"
    path.write_bytes(page_png)
    forms = {
        SourceKind.PIL: page_image,
        SourceKind.BYTES: page_png,
        SourceKind.BASE64: page_b64,
        SourceKind.DATA_URL: page_data_url,
        SourceKind.PATH: str(path),
    }
    reference = np.asarray(page_image)
    for kind, source in forms.items():
        decoded = load_image(source)
        assert decoded.source_kind is kind
        assert decoded.size == page_image.size
        assert np.array_equal(np.asarray(decoded.image), reference), kind
    assert load_image(path).source_kind is SourceKind.PATH  # os.PathLike
    assert load_image(bytearray(page_png)).size == page_image.size
    assert load_image("file://" + str(path)).size == page_image.size


def test_encode_like_returns_the_callers_form(page_image, page_png, page_b64, page_data_url, page_jpeg, tmp_path):
    small = page_image.resize((85, 110))
    assert load_image(page_image).encode_like(small) is small
    out = load_image(page_png).encode_like(small)
    assert isinstance(out, bytes) and Image.open(io.BytesIO(out)).format == "PNG"
    out = load_image(page_b64).encode_like(small)
    assert isinstance(out, str) and Image.open(io.BytesIO(base64.b64decode(out))).size == (85, 110)
    out = load_image(page_data_url).encode_like(small)
    assert out.startswith("data:image/png;base64,")
    out = load_image("data:image/jpeg;base64," + base64.b64encode(page_jpeg).decode()).encode_like(small)
    assert out.startswith("data:image/jpeg;base64,")
    path = tmp_path / "p.jpg"
    path.write_bytes(page_jpeg)
    assert load_image(str(path)).encode_like(small).startswith("data:image/jpeg;base64,")


def test_urlsafe_and_wrapped_base64_decode(page_png, page_image):
    urlsafe = base64.urlsafe_b64encode(page_png).decode().rstrip("=")
    assert load_image(urlsafe).size == page_image.size
    wrapped = "\n".join(base64.b64encode(page_png).decode()[i : i + 76] for i in range(0, 4000, 76))
    with pytest.raises(ImageDecodeError):  # truncated to 4000 chars: not a whole image
        load_image(wrapped)


def _exif_rotated_jpeg(orientation: int) -> bytes:
    img = Image.new("RGB", (300, 100), "white")
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("orientation,expected", [(1, (300, 100)), (3, (300, 100)), (6, (100, 300)), (8, (100, 300))])
def test_exif_orientation_is_applied_before_measuring(orientation, expected):
    decoded = load_image(_exif_rotated_jpeg(orientation))
    assert decoded.size == expected
    assert decoded.image.size == expected
    assert any("EXIF orientation" in n for n in decoded.notes) == (orientation != 1)


def test_exif_orientation_with_draft_keeps_true_size():
    decoded = load_image(_exif_rotated_jpeg(6), draft=(20, 60))
    assert decoded.size == (100, 300)
    assert decoded.image.width < decoded.image.height


def test_pil_input_is_not_mutated():
    img = Image.open(io.BytesIO(_exif_rotated_jpeg(6)))
    before = img.size
    decoded = load_image(img)
    assert img.size == before and decoded.size == (100, 300)


@pytest.mark.parametrize(
    "mode,expected",
    [("RGBA", "RGBA"), ("P", "RGB"), ("L", "L"), ("CMYK", "RGB"), ("I;16", "L"), ("1", "L"), ("LA", "RGBA"), ("I", "L"), ("F", "L")],
)
def test_modes_are_normalised(mode, expected):
    base = render_page(200, 260, text_px=12)
    if mode == "I;16":
        arr = (np.asarray(base.convert("L")).astype("uint16") * 257)
        img = Image.fromarray(arr)
        assert img.mode == "I;16"
    elif mode in ("I", "F"):
        img = base.convert("L").convert(mode)
    else:
        img = base.convert(mode)
    fmt = "TIFF" if mode in ("I;16", "CMYK", "I", "F") else "PNG"
    decoded = load_image(encode(img, fmt))
    assert decoded.image.mode == expected
    assert decoded.size == (200, 260)
    if mode == "I;16":  # scaled down, not clipped: dark text stays dark, paper stays white
        arr = np.asarray(decoded.image)
        assert arr.max() == 255 and arr.min() < 60


def test_palette_with_transparency_keeps_alpha():
    img = Image.new("P", (50, 40), 0)
    img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    decoded = load_image(encode(img, "PNG"))
    assert decoded.image.mode == "RGBA"


def test_multi_frame_uses_first_frame_and_says_so():
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    decoded = load_image(buf.getvalue())
    assert decoded.n_frames == 3
    assert "first of 3 frames" in " ".join(decoded.notes)
    r, g, b = decoded.image.convert("RGB").getpixel((10, 10))
    assert r > 200 and g < 50


def test_multi_frame_tiff():
    frames = [Image.new("L", (30, 20), v) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    decoded = load_image(buf.getvalue())
    assert decoded.n_frames == 2 and decoded.image.getpixel((0, 0)) == 10


# -- bad input: one typed error each, with a message that says what was wrong -------------------


def test_decompression_bomb_is_refused_with_configurable_limit(page_png):
    with pytest.raises(DecompressionBombError, match="over the limit of 1000"):
        load_image(page_png, max_pixels=1000)
    assert issubclass(DecompressionBombError, ImageDecodeError)
    assert load_image(page_png, max_pixels=None).size == (850, 1100)


def test_decompression_bomb_from_pil_input(page_image):
    with pytest.raises(DecompressionBombError, match="850x1100"):
        load_image(page_image, max_pixels=10_000)


def test_decompression_bomb_header_only():
    # A PNG whose header claims 30000x30000 pixels is refused before any pixel is decoded.
    with pytest.raises(DecompressionBombError, match="30000x30000"):
        load_image(png_header(30000, 30000))


@pytest.mark.parametrize(
    "source,message",
    [
        (b"", "empty"),
        (b"hello, this is plainly not an image", "not a recognisable image"),
        ("data:image/png;base64,!!!notbase64!!!", "not valid base64"),
        ("data:image/png;base64,", "empty"),
        ("data:nonsense", "malformed data URL"),
        ("just some words here", "neither a data URL"),
        (12345, "unsupported image source type int"),
        (None, "unsupported image source type NoneType"),
        ("/no/such/file.png", "cannot read image file"),
        (base64.b64encode(b"GIF89a but then garbage" * 3).decode(), "not a recognisable image"),
    ],
)
def test_bad_inputs_raise_one_typed_error(source, message):
    with pytest.raises(ImageDecodeError, match=message):
        load_image(source)


def test_truncated_png_raises_typed_error(page_png):
    with pytest.raises(ImageDecodeError, match="truncated or corrupt|cannot open|not a recognisable"):
        load_image(page_png[: len(page_png) // 2])


def test_truncated_jpeg_raises_typed_error(page_jpeg):
    with pytest.raises(ImageDecodeError):
        load_image(page_jpeg[:200])


def test_remote_url_is_skipped_by_default_with_reason():
    with pytest.raises(ImageSkipped) as info:
        load_image("https://example.com/page.png")
    assert "remote fetching is off" in info.value.reason


def test_remote_url_host_not_allow_listed():
    with pytest.raises(ImageSkipped, match="not allow-listed"):
        load_image("https://evil.example.org/x.png", fetch=FetchPolicy(allowed_hosts=["docs.example.com"]))


def test_fetch_policy_host_matching():
    policy = FetchPolicy(allowed_hosts=["docs.example.com", "*.cdn.example.net"])
    assert policy.allows("https://docs.example.com/a.png")
    assert policy.allows("https://img.cdn.example.net/a.png")
    assert not policy.allows("https://example.com/a.png")
    assert FetchPolicy(allowed_hosts="*").allows("http://anything.test/x")


def test_remote_fetch_when_allowed_and_byte_limit(page_png):
    with loopback_server({"/page.png": page_png}) as server:
        url = server.url()
        decoded = load_image(url, fetch=FetchPolicy(allowed_hosts=["127.0.0.1"], timeout=5))
        assert decoded.size == (850, 1100) and decoded.source_kind is SourceKind.URL
        with pytest.raises(ImageDecodeError, match="byte limit|-byte limit"):
            load_image(url, fetch=FetchPolicy(allowed_hosts=["127.0.0.1"], max_bytes=100))


def test_remote_fetch_failure_is_typed():
    with pytest.raises(ImageDecodeError, match="could not fetch"):
        load_image("http://127.0.0.1:9/none.png", fetch=FetchPolicy(allowed_hosts=["127.0.0.1"], timeout=1))
