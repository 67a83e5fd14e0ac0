"""Hostile input (issue 9): untrusted strings never read local files or start programs, odd page
shapes route, a caller's objects stay as they were. Each test reproduces one finding."""

from __future__ import annotations

import base64
import copy
import io
import os
import subprocess
import threading

import pytest
from helpers import png_header

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from llama_index.core.llms import ChatMessage, ImageBlock, MessageRole, TextBlock  # noqa: E402
from llama_index.core.schema import ImageNode, NodeWithScore  # noqa: E402
from PIL import Image  # noqa: E402

from cares_integrations import (  # noqa: E402
    DecompressionBombError,
    FixedRouter,
    ImageDecodeError,
    LocalFilePolicy,
    RouterError,
    TextScaleRouter,
    load_image,
    load_router,
    route_and_resize,
)
from cares_integrations.core.codec import decode_base64, looks_like_base64_image  # noqa: E402
from cares_integrations.langchain import CaresDocumentTransformer, CaresImageResizer, wrap_tool  # noqa: E402
from cares_integrations.llama_index import CaresImagePostprocessor, resize_chat_messages  # noqa: E402
from conftest import encode, render_page  # noqa: E402

QUESTION = "Describe"
SECRET_MARK = b"TOP-SECRET-MARKER"


@pytest.fixture
def secret(tmp_path):
    """A real PNG outside any allowed folder (if it were read, it would be inlined)."""
    path = tmp_path / "private" / "secret.png"
    path.parent.mkdir()
    img = render_page(300, 400, text_px=9, lines=12)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=_text_chunk(SECRET_MARK.decode()))
    path.write_bytes(buf.getvalue())
    return path


def _text_chunk(text: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("secret", text)
    return info


def _path_forms(path) -> list[str]:
    rel = os.path.relpath(path)
    return [str(path), rel, f"file://{path}", f"file://attacker.example{path}", "/etc/passwd",
            "/proc/self/environ", "/dev/zero"]


class Catch(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[dict] = []

    def on_custom_event(self, name, data, **kwargs):
        self.events.append(data)


def _no_bytes_anywhere(obj) -> None:
    text = repr(obj)
    for marker in ("root:x:0", "SHELL=", "PATH=", SECRET_MARK.decode(), "iVBORw0KGgo"):
        assert marker not in text, f"{marker!r} leaked"


# -- finding 1: strings in framework objects read local files ---------------------------------------


@pytest.mark.parametrize("on_error", ["raise", "passthrough"])
def test_langchain_message_paths_are_never_read(secret, monkeypatch, on_error):
    deep = secret.parent / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    catch = Catch()
    for value in _path_forms(secret) + ["../../secret.png"]:
        blocks = [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": value}},
                  {"type": "image", "url": value}, {"type": "image", "source_type": "url", "url": value},
                  {"type": "image", "source": {"type": "url", "url": value}}, {"type": "input_image", "image_url": value}]
        msg = HumanMessage(content=copy.deepcopy(blocks))
        out = CaresImageResizer(router=load_router(), on_error=on_error).invoke([msg], config={"callbacks": [catch]})
        assert out[0].content == blocks, value  # not inlined, not changed
    for event in catch.events:
        for image in event["images"]:
            assert image["changed"] is False
            assert "local path left as is" in image["skipped_reason"] or "file URL" in image["skipped_reason"] \
                or "never read" in (image.get("error") or "")
        _no_bytes_anywhere(event)


def test_langchain_local_file_policy_opts_in_to_a_folder(secret):
    msg = HumanMessage(content=[{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": str(secret)}}])
    out = CaresImageResizer(router=FixedRouter(120), local_files=LocalFilePolicy(roots=[secret.parent])).invoke([msg])
    assert out[0].content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    # a symlink inside the allowed folder pointing outside it is resolved and refused
    outside = secret.parent.parent / "outside.png"
    outside.write_bytes(secret.read_bytes())
    link = secret.parent / "link.png"
    link.symlink_to(outside)
    catch = Catch()
    msg = HumanMessage(content=[{"type": "image_url", "image_url": {"url": str(link)}}])
    out = CaresImageResizer(router=FixedRouter(120), local_files=LocalFilePolicy(roots=[secret.parent])).invoke(
        [msg], config={"callbacks": [catch]})
    assert out[0].content is msg.content and "outside the local-file policy" in catch.events[0]["images"][0]["skipped_reason"]


def test_llama_index_node_url_and_image_block_paths_are_never_read(secret):
    for value in (f"file://{secret}", str(secret), "/etc/passwd"):
        node = ImageNode(image_url=value, text="page")
        [out] = CaresImagePostprocessor(router=FixedRouter(120)).postprocess_nodes(
            [NodeWithScore(node=node, score=1.0)], query_str=QUESTION)
        assert out.node.image is None and out.node.image_url == value
        assert "local path left as is" in out.node.metadata["cares"]["skipped_reason"]
        _no_bytes_anywhere(out.node.metadata)
    for block in (ImageBlock(url=f"file://{secret}"), ImageBlock(path=secret)):
        msgs = [ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text=QUESTION), block])]
        out = resize_chat_messages(msgs, router=FixedRouter(120), on_error="raise")
        assert out[0].blocks[1].image is None and out[0].blocks[1].model_dump() == block.model_dump()
    # the node's own image_path (set by the indexer) stays readable
    [out] = CaresImagePostprocessor(router=FixedRouter(120)).postprocess_nodes(
        [NodeWithScore(node=ImageNode(image_path=str(secret)), score=1.0)], query_str=QUESTION)
    assert out.node.image is not None and out.node.metadata["cares"]["changed"] is True


def test_wrap_tool_and_document_transformer_leave_paths_alone(secret):
    received = []

    @tool
    def read_page(page_image: str, question: str) -> str:
        """Read a page."""
        received.append(page_image)
        return "ok"

    catch = Catch()
    for value in _path_forms(secret):
        wrap_tool(read_page, router=FixedRouter(120), image_args=["page_image"]).invoke(
            {"page_image": value, "question": "q"}, config={"callbacks": [catch]})
        assert received[-1] == value
    assert all(not img["changed"] and (img.get("skipped_reason") or img.get("error"))
               for event in catch.events for img in event["images"])
    _no_bytes_anywhere(catch.events)
    docs = [Document(page_content="p", metadata={"image": value}) for value in _path_forms(secret)]
    out = CaresDocumentTransformer(router=FixedRouter(120), on_error="passthrough").transform_documents(docs, query="q")
    for doc, new in zip(docs, out):
        assert new.metadata["image"] == doc.metadata["image"] and new.metadata["cares"]["changed"] is False
        assert new.metadata["cares"].get("skipped_reason") or new.metadata["cares"].get("error")
        _no_bytes_anywhere(new.metadata)


# -- finding 2: non-image files, devices and FIFOs ------------------------------------------------


@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/self/environ", "/dev/zero", "/dev/urandom"])
def test_direct_paths_to_non_images_fail_typed_without_their_bytes(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    with pytest.raises(ImageDecodeError) as info:
        load_image(path)
    _no_bytes_anywhere(str(info.value))
    [result] = route_and_resize(FixedRouter(120), [path], QUESTION, on_error="passthrough")
    assert result.output == path and result.error and "root:x" not in result.error


def test_a_fifo_never_blocks(tmp_path):
    fifo = tmp_path / "page.png"
    os.mkfifo(fifo)
    outcome: list[BaseException | object] = []
    worker = threading.Thread(target=lambda: _capture(outcome, load_image, str(fifo)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert isinstance(outcome[0], ImageDecodeError) and "not a regular file" in str(outcome[0])


def _capture(out: list, fn, *args) -> None:
    try:
        out.append(fn(*args))
    except BaseException as exc:  # noqa: BLE001
        out.append(exc)


def test_large_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 5000)
    with pytest.raises(ImageDecodeError, match="over the 4096-byte limit"):
        route_and_resize(FixedRouter(120), [str(big)], QUESTION, local_files=LocalFilePolicy(max_bytes=4096))


# -- finding 5: decoders that start programs --------------------------------------------------------

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke showpage\n"


def test_eps_labelled_png_never_reaches_ghostscript(monkeypatch):
    started = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        started.append(args)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    url = "data:image/png;base64," + base64.b64encode(EPS).decode()
    with pytest.raises(ImageDecodeError, match="EPS, which is not an allowed image format"):
        load_image(url)
    [result] = route_and_resize(FixedRouter(120), [url, EPS][:1], QUESTION, on_error="passthrough")
    assert result.output == url and "EPS" in result.error
    assert started == []


def test_decoder_allow_list_is_configurable(page_image):
    gif = encode(page_image.convert("P"), "GIF")
    assert load_image(gif).format == "GIF"
    with pytest.raises(ImageDecodeError, match="GIF, which is not an allowed"):
        load_image(gif, formats=["PNG", "JPEG"])
    with pytest.raises(ImageDecodeError, match="not an allowed"):
        FixedRouter(120, formats=["PNG"]).route(gif, QUESTION)


# -- finding 6: page shapes -------------------------------------------------------------------------

SHAPES = [(420, 6400), (10, 3000), (600, 9000), (6400, 10), (1, 500), (500, 1), (1, 1), (31, 2000), (17, 17)]


@pytest.mark.parametrize("size", SHAPES)
@pytest.mark.parametrize("router_name", ["text-scale", "learned-default", "fixed:384"])
def test_every_page_shape_routes(size, router_name):
    page = render_page(*size, text_px=9) if min(size) >= 40 else Image.new("L", size, 255)
    decision = load_router(router_name).route(page, QUESTION)
    assert 1 <= decision.long_side <= max(size)
    assert decision.send_size[0] <= size[0] and decision.send_size[1] <= size[1]


def test_a_receipt_in_a_batch_of_eight_routes_with_the_others():
    good = HumanMessage(content=[{"type": "text", "text": "Total?"}, {"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(encode(render_page(850, 1100), "PNG")).decode()}}])
    receipt = HumanMessage(content=[{"type": "text", "text": "Total?"}, {"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(encode(render_page(420, 6400, text_px=12), "PNG")).decode()}}])
    outs = CaresImageResizer(router=load_router()).batch([[good]] * 7 + [[receipt]])
    assert all(isinstance(o, list) for o in outs)


class PickyRouter(FixedRouter):
    """Raises a plain exception for narrow images, as a buggy third-party router might."""

    def _predict(self, images, queries):
        if any(d.size[0] < 100 for d in images):
            raise ZeroDivisionError("narrow page")
        return super()._predict(images, queries)


def test_one_router_failure_fails_only_that_image():
    pages = [render_page(300, 400), render_page(60, 400), render_page(300, 400)]
    results = route_and_resize(PickyRouter(120), pages, QUESTION, on_error="passthrough")
    assert [r.decision is not None for r in results] == [True, False, True]
    assert "ZeroDivisionError" in results[1].error and results[1].output is pages[1]
    with pytest.raises(RouterError, match="narrow page"):
        route_and_resize(PickyRouter(120), pages, QUESTION, on_error="raise")
    msgs = [[HumanMessage(content=[{"type": "text", "text": "q"}, {"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(encode(p, "PNG")).decode()}}])] for p in pages]
    outs = CaresImageResizer(router=PickyRouter(120)).batch(msgs, return_exceptions=True)
    assert [isinstance(o, Exception) for o in outs] == [False, True, False]


# -- finding 7: the caller's PIL image --------------------------------------------------------------


def _frames(fmt: str, n: int) -> Image.Image:
    frames = [render_page(120, 160, text_px=6 + k % 5) for k in range(n)]
    buf = io.BytesIO()
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:])
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("fmt,frame", [("GIF", 5), ("TIFF", 7)])
def test_a_callers_multi_frame_image_is_left_as_it_was(fmt, frame):
    img = _frames(fmt, 9)
    img.seek(frame)
    mode, pixels = img.mode, img.tobytes()
    for router in (FixedRouter(60), TextScaleRouter()):
        router.route(img, QUESTION)
        [result] = route_and_resize(router, [img], QUESTION)
        assert img.tell() == frame and img.mode == mode and img.tobytes() == pixels
        assert any(f"{frame + 1} of 9" in note for note in result.notes)


# -- finding 9: max_pixels=None ---------------------------------------------------------------------


@pytest.mark.parametrize("size,max_pixels", [((10000, 10000), None), ((15000, 13000), 200_000_000)])
def test_max_pixels_none_or_above_pillows_limit_lifts_the_guard(size, max_pixels):
    data = png_header(*size)
    with pytest.raises(DecompressionBombError):
        load_image(data)  # the default guard refuses it
    with pytest.raises(ImageDecodeError) as info:  # lifted: it gets as far as decoding the (truncated) data
        load_image(data, max_pixels=max_pixels)
    assert not isinstance(info.value, DecompressionBombError) and "truncated or corrupt" in str(info.value)


def test_a_real_page_above_pillows_warning_limit_routes_with_max_pixels_none():
    page = Image.new("1", (9600, 9600), 1)  # 92 MP, over Pillow's 89.5 MP warning limit
    data = encode(page, "PNG")
    decision = FixedRouter(384, max_pixels=None).route(data, QUESTION)
    assert decision.original_size == (9600, 9600) and decision.send_size == (384, 384)


# -- finding 10: base64 in both alphabets -----------------------------------------------------------


def test_base64_is_validated_in_both_alphabets(page_jpeg):
    text = base64.b64encode(page_jpeg).decode()
    assert "+" in text or "/" in text
    i = len(text) // 2
    while text[i] in "+/":
        i += 1
    tampered = text[:i] + "-" + text[i + 1:]
    with pytest.raises(ImageDecodeError, match="neither the standard nor the URL-safe alphabet"):
        load_image(tampered)
    with pytest.raises(ImageDecodeError, match="neither"):
        load_image("data:image/jpeg;base64," + tampered)
    urlsafe = base64.urlsafe_b64encode(page_jpeg).decode().rstrip("=")
    assert decode_base64(urlsafe) == page_jpeg
    assert load_image(urlsafe).image.tobytes() == load_image(page_jpeg).image.tobytes()


def test_one_base64_rule_tells_paths_from_images(page_png, page_jpeg):
    assert looks_like_base64_image(base64.b64encode(page_png).decode())
    assert looks_like_base64_image(base64.b64encode(page_jpeg).decode())  # starts "/9j/"
    for not_image in ("/etc/passwd", "/srv/pages/a.png", "../secret.png", base64.b64encode(b"hello world!").decode()):
        assert not looks_like_base64_image(not_image)
