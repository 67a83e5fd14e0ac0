"""The payload guard: never send more bytes than the original, and fit each provider's limits.

Runs after an image is resized for its decision (:func:`guard`):

* a resized PNG is written compactly when that is lossless (grayscale ``L`` when every pixel is
  gray, an exact palette when it has at most 256 colours): text pages shrink to a third or less;
* when the result is still larger than the original, the original goes out untouched (no
  re-encode); the decision then says so and counts the tokens the target charges for it;
* an image over the target's byte limit (base64 size), side limit or patch limit is resized to
  fit before the call, never left to fail at the provider; the decision says which. The side
  limit depends on the request: Anthropic allows 8000 px, but 2000 px per side once a request
  holds more than 20 images (``images_per_request``);
* a request holding more images than the provider accepts raises :class:`TooManyImagesError`
  before anything is routed (:func:`check_image_count`); no image is dropped to fit.
"""

from __future__ import annotations

import io
import math
from typing import Any

from PIL import Image

from .decision import RouteDecision
from .errors import TooManyImagesError
from .payload import DecodedImage, encode_image
from .resize import resize_image
from .tokens import CostModel, ProviderLimits, get_target

__all__ = ["base64_size", "check_image_count", "compact_png", "guard"]


def base64_size(n_bytes: int) -> int:
    """Length of the base64 text of ``n_bytes`` bytes (what providers' byte limits count)."""
    return 4 * math.ceil(n_bytes / 3)


def compact_png(image: Image.Image) -> Image.Image:
    """The same pixels in the smallest lossless PNG mode: ``L`` for gray RGB, ``P`` for <= 256 colours."""
    img = image
    if img.mode == "RGBA" and img.getextrema()[3][0] == 255:
        img = img.convert("RGB")  # fully opaque: the alpha channel carries nothing
    if img.mode == "RGB":
        r, g, b = img.split()
        if r.tobytes() == g.tobytes() == b.tobytes():
            return r  # every pixel is gray
        colours = img.getcolors(256)
        if colours is not None:
            palette_img = Image.new("P", img.size)
            lut = {c: i for i, (_, c) in enumerate(colours)}
            flat = [v for _, c in colours for v in c]
            palette_img.putpalette(flat + [0] * (768 - len(flat)))
            palette_img.putdata([lut[p] for p in img.getdata()])
            return palette_img
    return img


def _variant(model: CostModel, knobs: dict[str, Any]) -> CostModel:
    """The knob setting of ``model`` that a decision's request knobs select."""
    for v in model.variants():
        if knobs and v.knobs == knobs:
            return v
    return model


def check_image_count(target: str | CostModel | None, n_images: int) -> None:
    """Raise :class:`TooManyImagesError` when one request of ``n_images`` images exceeds what
    ``target``'s provider accepts per request (OpenAI 500, Anthropic 600, Gemini 3,600)."""
    if target is None:
        return
    model = get_target(target)
    limit = model.limits.max_images if model.limits is not None else None
    if limit is not None and n_images > limit:
        raise TooManyImagesError(
            f"this request holds {n_images} images; {model.provider} accepts at most {limit} per request "
            f"(target {target if isinstance(target, str) else model.name!r}); send them in several requests",
            limit=limit, provider=model.provider, n_images=n_images,
        )


def _fit_limits(size: tuple[int, int], limits: ProviderLimits | None,
                n_images: int = 1) -> tuple[tuple[int, int], str | None]:
    """``size`` shrunk to the provider's side and patch limits for a request of ``n_images``
    images, and what was done (or None)."""
    if limits is None:
        return size, None
    w, h = size
    side = limits.max_side_for(n_images)
    if side and max(w, h) > side:
        scale = side / max(w, h)
        fitted = (max(1, int(w * scale)), max(1, int(h * scale)))
        if side != limits.max_side:
            return fitted, (f"resized to fit {side}x{side} px: the limit per image when a request holds more "
                            f"than {limits.many_images} images (this one holds {n_images})")
        return fitted, f"resized to fit the {side}-px side limit"
    if limits.max_patches and math.ceil(w / 32) * math.ceil(h / 32) > limits.max_patches:
        scale = math.sqrt(limits.max_patches / (math.ceil(w / 32) * math.ceil(h / 32))) * 0.99
        while math.ceil(w * scale / 32) * math.ceil(h * scale / 32) > limits.max_patches:
            scale *= 0.99
        return (max(1, int(w * scale)), max(1, int(h * scale))), (
            f"resized to fit the {limits.max_patches}-patch limit (the provider rejects larger images)"
        )
    return size, None


def guard(
    decoded: DecodedImage,
    decision: RouteDecision,
    out: Any,
    data: bytes | None,
    *,
    fmt: str | None,
    quality: int,
    images_per_request: int = 1,
) -> tuple[Any, bytes | None, RouteDecision]:
    """(output, bytes, decision) after the never-bigger rule and the target's limits.

    ``out``/``data`` are what resizing produced for ``decision``; ``images_per_request`` is how
    many images the request this one goes out in holds (for per-request side limits). PIL
    outputs have no bytes and pass through unchanged.
    """
    if data is None:
        return out, data, decision
    raw = decoded.raw
    model = get_target(decision.target) if decision.target else None
    limits = model.limits if model is not None else None
    out_fmt = decoded.output_format(fmt) if out is not decoded.original else decoded.format
    payload = "resized" if out is not decoded.original else "original"
    size = tuple(decision.send_size)
    image: Image.Image | None = None

    def encode(img: Image.Image) -> bytes:
        return encode_image(compact_png(img) if out_fmt == "PNG" else img, out_fmt, quality=quality)

    if out is not decoded.original and out_fmt == "PNG":
        image = Image.open(io.BytesIO(data))
        image.load()
        smaller = encode(image)
        if len(smaller) < len(data):
            data, out = smaller, decoded.wrap(smaller, fmt)
    if (out is not decoded.original and raw is not None and len(data) >= len(raw) and image is not None
            and (decision.tokens_after or 0) < (decision.tokens_before or 0)):
        # the resize saves tokens but its lossless PNG is not smaller: 16 levels keep text legible
        quantized = image.convert("RGB") if image.mode not in ("RGB", "L") else image
        quantized = quantized.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        small = encode_image(quantized, "PNG", quality=quality)
        if len(small) < len(raw):
            data, out = small, decoded.wrap(small, fmt)
            payload = "resized; written as a 16-colour PNG to stay below the original's bytes"
    if out is not decoded.original and raw is not None and len(data) >= len(raw) and (fmt is None or out_fmt == decoded.format):
        out, data, payload = decoded.original, raw, (
            f"original: the resized image ({len(data)} bytes) was not smaller than the original ({len(raw)} bytes)"
        )
        size = tuple(decoded.size)
    # provider limits: sides and patches, then bytes (as base64)
    fitted, why = _fit_limits(size, limits, images_per_request)
    src = decoded.image
    if why is not None and fitted != size:
        data = encode(resize_image(src, fitted))
        out, size, payload = decoded.wrap(data, fmt), fitted, why
    if limits is not None and limits.max_image_base64 and base64_size(len(data)) > limits.max_image_base64:
        limit_mb = limits.max_image_base64 / (1024 * 1024)
        for _ in range(8):
            scale = math.sqrt(limits.max_image_base64 / base64_size(len(data))) * 0.95
            size = (max(1, int(size[0] * scale)), max(1, int(size[1] * scale)))
            data = encode(resize_image(src, size))
            if base64_size(len(data)) <= limits.max_image_base64:
                break
        out, payload = decoded.wrap(data, fmt), f"resized to fit {model.provider}'s {limit_mb:g} MB per-image limit (base64)"
    update: dict[str, Any] = {"bytes_before": len(raw) if raw is not None else None, "bytes_after": len(data),
                              "payload": payload}
    if size != tuple(decision.send_size):
        update["send_size"] = size
        if model is not None:
            update["tokens_after"] = _variant(model, decision.request_knobs).tokens(*size)
    return out, data, decision.model_copy(update=update)
