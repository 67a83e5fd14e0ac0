"""Targets: a recording LangChain chat model (with transient failures) and a tiny local VLM."""

from __future__ import annotations

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_helpers import RecordingChatModel, decode
from PIL import Image

from cares_integrations.training.targets import (
    DEFAULT_PROMPT,
    LangChainChatTarget,
    Target,
    is_transient_error,
)


class RateLimitError(Exception):
    """Shaped like openai.RateLimitError: carries an HTTP status."""

    status_code = 429


class BadRequestError(Exception):
    status_code = 400


class RecordingChat(RecordingChatModel):
    """The recording chat model, answering with the image size it received and the question."""

    def answer(self, messages: list[BaseMessage]) -> str:
        content = messages[0].content
        w, h = decode(content[0]).size
        return f"  {w}x{h} {content[1]['text'].splitlines()[0]} "


def _pages(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (100 + 10 * i, 50), "white") for i in range(n)]


def test_langchain_target_sends_image_and_question_and_keeps_order():
    chat = RecordingChat()
    target = LangChainChatTarget(chat, max_concurrency=2)
    assert isinstance(target, Target)
    assert target.name == "langchain:recording"
    answers = target.answer_batch(_pages(5), [f"q{i}" for i in range(5)])
    assert answers == [f"{100 + 10 * i}x50 q{i}" for i in range(5)]
    assert len(chat.received) == 5
    msg = chat.received[0][0]
    assert isinstance(msg, HumanMessage)
    assert msg.content[0]["type"] == "image_url"
    assert msg.content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    texts = sorted(call[0].content[1]["text"] for call in chat.received)
    assert texts[0] == DEFAULT_PROMPT.format(question="q0")


def test_langchain_target_standard_blocks_jpeg_and_custom_prompt():
    chat = RecordingChat()
    target = LangChainChatTarget(chat, image_block="standard", image_format="jpeg",
                                 prompt_template="{question}", name="mine")
    assert target.name == "mine"
    rgba = Image.new("RGBA", (64, 32), (255, 0, 0, 128))
    assert target.answer_batch([rgba], ["what?"]) == ["64x32 what?"]
    block = chat.received[0][0].content[0]
    assert block["type"] == "image" and block["mime_type"] == "image/jpeg"
    assert chat.received[0][0].content[1]["text"] == "what?"


def test_transient_errors_are_retried_with_capped_backoff():
    chat = RecordingChat(fail_first=3, error=RateLimitError("slow down"))
    delays: list[float] = []
    target = LangChainChatTarget(chat, max_concurrency=1, max_retries=3, backoff=1.0, max_backoff=1.5,
                                 sleep=delays.append)
    answers = target.answer_batch(_pages(2), ["a", "b"])
    assert answers == ["100x50 a", "110x50 b"]
    # call 1 (a) and 2 (b) fail; retry: call 3 (a) fails, call 4 (b) ok; retry: call 5 (a) ok.
    assert len(chat.received) == 5
    assert delays == [1.0, 1.5]


def test_retries_give_up_and_raise_the_provider_error():
    chat = RecordingChat(fail_first=100, error=TimeoutError("read timed out"))
    target = LangChainChatTarget(chat, max_retries=2, backoff=0.0, sleep=lambda s: None)
    with pytest.raises(TimeoutError, match="timed out"):
        target.answer_batch(_pages(1), ["q"])
    assert len(chat.received) == 3  # first try + 2 retries


def test_bad_requests_are_not_retried():
    chat = RecordingChat(fail_first=1, error=BadRequestError("image too large"))
    slept: list[float] = []
    target = LangChainChatTarget(chat, sleep=slept.append)
    with pytest.raises(BadRequestError, match="too large"):
        target.answer_batch(_pages(1), ["q"])
    assert len(chat.received) == 1 and slept == []


class _Resp:
    def __init__(self, status_code):
        self.status_code = status_code


class APIStatusError(Exception):
    def __init__(self, status):
        super().__init__(f"status {status}")
        self.response = _Resp(status)


class APITimeoutError(Exception):
    pass


class AuthenticationError(Exception):
    pass


@pytest.mark.parametrize("exc, transient", [
    (RateLimitError(), True),
    (BadRequestError(), False),
    (APIStatusError(503), True),
    (APIStatusError(529), True),
    (APIStatusError(401), False),
    (APIStatusError(408), True),
    (APITimeoutError(), True),
    (ConnectionResetError(), True),
    (AuthenticationError(), False),
    (ValueError("bad"), False),
])
def test_is_transient_error(exc, transient):
    assert is_transient_error(exc) is transient


def test_bad_arguments_are_named():
    chat = RecordingChat()
    with pytest.raises(ValueError, match="question"):
        LangChainChatTarget(chat, prompt_template="no placeholder")
    with pytest.raises(ValueError, match="image_block"):
        LangChainChatTarget(chat, image_block="anthropic-ish")
    with pytest.raises(ValueError, match="image_format"):
        LangChainChatTarget(chat, image_format="TIFF")
    with pytest.raises(TypeError, match="LangChain chat model"):
        LangChainChatTarget(object())
    target = LangChainChatTarget(chat)
    with pytest.raises(ValueError, match="one question per image"):
        target.answer_batch(_pages(2), ["only one"])
    with pytest.raises(TypeError, match="PIL image"):
        target.answer_batch([b"bytes"], ["q"])  # type: ignore[list-item]


# -- a tiny random local VLM ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vlm_target():
    from tiny_models import tiny_idefics3

    from cares_integrations.training.targets import TransformersTarget

    return TransformersTarget(tiny_idefics3(), max_new_tokens=4, batch_size=2, device="cpu")


def test_transformers_target_answers_one_string_per_input(tiny_vlm_target):
    target = tiny_vlm_target
    assert isinstance(target, Target) and target.name.startswith("hf:")
    side = target.tokenizer.padding_side
    images = [Image.new("RGB", (120, 90), "white"), Image.new("L", (64, 200), 0), Image.new("RGB", (50, 50), "red")]
    questions = ["What is the total?", "Which year?", "a much longer question about the small print here"]
    answers = target.answer_batch(images, questions)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert target.tokenizer.padding_side == side  # restored after batching
    # greedy decoding is deterministic, and batching (left padding) does not change an answer
    assert target.answer(images[0], questions[0]) == answers[0]
    assert target.answer(images[1], questions[1]) == answers[1]


def test_transformers_target_prompt_is_the_chat_template_with_generation_prompt(tiny_vlm_target):
    [prompt] = tiny_vlm_target._prompts(["How much?"])
    assert prompt.startswith("<|im_start|>User:<image>How much?")
    assert prompt.endswith("Assistant:")


def test_transformers_target_needs_processor_with_a_loaded_model(tiny_vlm_target):
    from cares_integrations.training.targets import TransformersTarget

    with pytest.raises(ValueError, match="processor"):
        TransformersTarget(tiny_vlm_target.model)
    with pytest.raises(ValueError, match="max_new_tokens"):
        TransformersTarget(tiny_vlm_target.model, tiny_vlm_target.processor, max_new_tokens=0)
