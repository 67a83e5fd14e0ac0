"""Target models for labeling: (page images, questions) in, answers out, in batches.

A *target* is the model whose answers define the labels: the model the user will call in
production (a local VLM, a paid API, an OCR reader). Every target implements one batched method,
:meth:`Target.answer_batch`, so labeling can drive any of them the same way:

- :class:`TransformersTarget`: a local transformers VLM (``AutoModelForImageTextToText``),
  greedy decoding, batched with left padding.
- :class:`LangChainChatTarget`: any LangChain chat model (OpenAI, Anthropic, Gemini, Ollama, ...),
  called with ``chat_model.batch`` under a concurrency limit, retrying transient errors.
- ``cares_integrations.training.ocr.OcrReader``: a Tesseract reader (a Target by duck typing).

The images given to a target are already resized by the caller (see :mod:`.labeling`); a target
sends them as they are.
"""

from __future__ import annotations

import io
import logging
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

from PIL import Image

from ..core.codec import encode_base64, make_data_url

__all__ = [
    "DEFAULT_PROMPT",
    "Target",
    "TransformersTarget",
    "LangChainChatTarget",
    "is_transient_error",
]

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "{question}\nAnswer the question using a single word or phrase."
"""The prompt sent with each image; short answers suit ANLS scoring (the LLaVA/DocVQA prompt)."""


def _check_prompt_template(template: str | None) -> str:
    template = DEFAULT_PROMPT if template is None else template
    if not isinstance(template, str) or "{question}" not in template:
        raise ValueError(f"prompt_template must be a string containing '{{question}}', got {template!r}")
    return template


def _check_batch(images: Sequence[Image.Image], questions: Sequence[str]) -> None:
    if len(images) != len(questions):
        raise ValueError(f"got {len(images)} images but {len(questions)} questions; pass one question per image")
    for i, img in enumerate(images):
        if not isinstance(img, Image.Image):
            raise TypeError(f"image {i} must be a PIL image, got {type(img).__name__}")
    for i, q in enumerate(questions):
        if not isinstance(q, str):
            raise TypeError(f"question {i} must be a string, got {type(q).__name__}")


class Target(ABC):
    """A model that answers questions about page images, in batches.

    Subclasses set ``name`` (recorded in every label, e.g. ``"hf:HuggingFaceTB/SmolVLM-256M"``)
    and implement :meth:`answer_batch`.
    """

    name: str = "target"

    @abstractmethod
    def answer_batch(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """Answer each question about its image; returns one string per input, in order."""

    def answer(self, image: Image.Image, question: str) -> str:
        """Answer one question about one image."""
        return self.answer_batch([image], [question])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# -- local transformers VLMs -------------------------------------------------------------------


class TransformersTarget(Target):
    """A local transformers VLM as the target: chat template [image, question], greedy decoding.

    ``model`` is a hub id or local path (loaded with ``AutoModelForImageTextToText`` and
    ``AutoProcessor``), or an already loaded model given together with its ``processor``.
    Inputs are processed ``batch_size`` at a time with left padding, so one ``generate`` call
    answers a whole batch. ``model_kwargs`` / ``processor_kwargs`` pass through to
    ``from_pretrained`` (e.g. ``{"attn_implementation": "sdpa"}``).
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        max_new_tokens: int = 32,
        batch_size: int = 8,
        device: str | None = None,
        dtype: Any = None,
        prompt_template: str | None = None,
        name: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from ..routers.gate.device import pick_device, pick_dtype

        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.prompt_template = _check_prompt_template(prompt_template)
        self.device = pick_device(device)
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            source = str(model)
            kwargs = dict(model_kwargs or {})
            kwargs.setdefault("dtype", pick_dtype(self.device, dtype))
            self.model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
            self.processor = processor or AutoProcessor.from_pretrained(source, **(processor_kwargs or {}))
            self.name = name or f"hf:{source}"
        else:
            if processor is None:
                raise ValueError("pass the model's processor together with a loaded model")
            self.model, self.processor = model, processor
            if dtype is not None:
                self.model = self.model.to(dtype=pick_dtype(self.device, dtype))
            self.name = name or f"hf:{getattr(model.config, '_name_or_path', '') or type(model).__name__}"
        self.model = self.model.to(self.device).eval()
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None:
            raise ValueError(f"{type(self.processor).__name__} has no tokenizer; a VLM processor is needed")

    def _prompts(self, questions: Sequence[str]) -> list[str]:
        prompts = []
        for q in questions:
            conversation = [{"role": "user", "content": [
                {"type": "image"}, {"type": "text", "text": self.prompt_template.format(question=q)}]}]
            prompts.append(self.processor.apply_chat_template(conversation, add_generation_prompt=True))
        return prompts

    def answer_batch(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """Answer each question about its image with greedy decoding, ``batch_size`` at a time."""
        import torch

        _check_batch(images, questions)
        answers: list[str] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [img.convert("RGB") for img in images[start:start + self.batch_size]]
            prompts = self._prompts(questions[start:start + self.batch_size])
            saved_side = self.tokenizer.padding_side
            self.tokenizer.padding_side = "left"  # generation appends on the right
            try:
                inputs = self.processor(text=prompts, images=[[img] for img in chunk],
                                        return_tensors="pt", padding=True)
            finally:
                self.tokenizer.padding_side = saved_side
            inputs = inputs.to(self.device)
            if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            pad_id = self.tokenizer.pad_token_id
            if pad_id is None:
                pad_id = self.tokenizer.eos_token_id
            with torch.inference_mode():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=pad_id)
            new_tokens = out[:, inputs["input_ids"].shape[1]:]
            answers.extend(t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return answers


# -- LangChain chat models ---------------------------------------------------------------------

_TRANSIENT_STATUS = {408, 409, 425, 429}
_TRANSIENT_NAMES = ("timeout", "ratelimit", "serviceunavailable", "internalserver", "apiconnection",
                    "overloaded", "toomanyrequests", "resourceexhausted", "deadlineexceeded",
                    "unavailable", "connectionerror", "temporarilyunavailable", "throttl")
_PERMANENT_NAMES = ("badrequest", "authentication", "permissiondenied", "notfound", "invalidargument",
                    "unprocessable", "validationerror", "contentpolicy", "contextwindow")


def _status_code(exc: BaseException) -> int | None:
    for holder in (exc, getattr(exc, "response", None)):
        if holder is None:
            continue
        for attr in ("status_code", "status", "http_status", "code"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def is_transient_error(exc: BaseException) -> bool:
    """Whether an error from a model provider is worth retrying.

    Retried: timeouts, connection errors, rate limits (429), conflicts/too-early (409, 425),
    request timeouts (408) and server errors (5xx, incl. Anthropic's 529 "overloaded"). Not
    retried: other 4xx (bad request, auth, not found, too long). The HTTP status wins when the
    error carries one; otherwise the exception's class names decide.
    """
    status = _status_code(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    names = [cls.__name__.lower().replace("_", "") for cls in type(exc).__mro__]
    if any(p in n for n in names for p in _PERMANENT_NAMES):
        return False
    return any(t in n for n in names for t in _TRANSIENT_NAMES)


ImageBlock = Callable[[bytes, str], dict]
"""Builds a message content block from (encoded image bytes, MIME type)."""


def openai_image_block(data: bytes, mime: str) -> dict:
    """OpenAI chat-completions form, ``{"type": "image_url", "image_url": {"url": data_url}}``:
    accepted by langchain-openai and converted by most other LangChain chat models."""
    return {"type": "image_url", "image_url": {"url": make_data_url(data, mime)}}


def standard_image_block(data: bytes, mime: str) -> dict:
    """LangChain v1 standard block, ``{"type": "image", "base64": ..., "mime_type": ...}``."""
    return {"type": "image", "base64": encode_base64(data), "mime_type": mime}


_IMAGE_BLOCKS: dict[str, ImageBlock] = {"openai": openai_image_block, "standard": standard_image_block}


def _chat_model_name(chat_model: Any) -> str:
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(chat_model, attr, None)
        if isinstance(value, str) and value:
            return value
    llm_type = getattr(chat_model, "_llm_type", None)
    return llm_type if isinstance(llm_type, str) else type(chat_model).__name__


class LangChainChatTarget(Target):
    """Any LangChain chat model as the target (OpenAI, Anthropic, Gemini, Ollama, vLLM, ...).

    Each (image, question) becomes one ``HumanMessage`` holding an image block and the prompt;
    the batch is sent with ``chat_model.batch(..., config={"max_concurrency": n})``. Items that
    fail with a transient error (see :func:`is_transient_error`) are re-sent, with exponential
    backoff (``backoff * 2**attempt`` seconds, capped at ``max_backoff``), up to ``max_retries``
    times; any other error is raised at once.

    ``image_block`` picks the content-block form: ``"openai"`` (default: an ``image_url`` data
    URL), ``"standard"`` (LangChain's ``{"type": "image", "base64": ...}``), or a callable
    ``(bytes, mime) -> dict``. ``image_format`` is how pages are encoded (PNG, JPEG, WEBP).
    """

    def __init__(
        self,
        chat_model: Any,
        *,
        max_concurrency: int = 4,
        max_retries: int = 3,
        prompt_template: str | None = None,
        image_format: str = "PNG",
        image_block: str | ImageBlock = "openai",
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from ..core.optional import require

        require("langchain_core", "langchain", purpose="LangChain chat-model targets")
        from langchain_core.runnables import Runnable

        if not isinstance(chat_model, Runnable):
            raise TypeError(f"chat_model must be a LangChain chat model (a Runnable), got {type(chat_model).__name__}")
        if max_concurrency <= 0:
            raise ValueError(f"max_concurrency must be positive, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        from ..core.payload import mime_for_format

        fmt = image_format.upper().replace("JPG", "JPEG")
        if fmt not in ("PNG", "JPEG", "WEBP"):
            raise ValueError(f"image_format must be PNG, JPEG or WEBP, got {image_format!r}")
        if isinstance(image_block, str):
            if image_block not in _IMAGE_BLOCKS:
                raise ValueError(f"image_block must be one of {sorted(_IMAGE_BLOCKS)} or a callable, got {image_block!r}")
            image_block = _IMAGE_BLOCKS[image_block]
        self.chat_model = chat_model
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.prompt_template = _check_prompt_template(prompt_template)
        self.image_format = fmt
        self.mime_type = mime_for_format(fmt)
        self.image_block = image_block
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._sleep = sleep
        self.name = name or f"langchain:{_chat_model_name(chat_model)}"

    def _encode(self, image: Image.Image) -> bytes:
        if self.image_format == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        buf = io.BytesIO()
        image.save(buf, format=self.image_format, **({"quality": 90} if self.image_format != "PNG" else {}))
        return buf.getvalue()

    def messages_for(self, image: Image.Image, question: str) -> list:
        """The chat messages sent for one (image, question): one HumanMessage [image, prompt]."""
        from langchain_core.messages import HumanMessage

        block = self.image_block(self._encode(image), self.mime_type)
        text = {"type": "text", "text": self.prompt_template.format(question=question)}
        return [HumanMessage(content=[block, text])]

    @staticmethod
    def _text(output: Any) -> str:
        if isinstance(output, str):
            return output.strip()
        text = getattr(output, "text", None)
        if text is None:
            raise TypeError(f"chat model returned {type(output).__name__}, expected a message or a string")
        return str(text).strip()

    def answer_batch(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """Answer every (image, question) with one concurrent batch, retrying transient failures."""
        _check_batch(images, questions)
        inputs = [self.messages_for(img, q) for img, q in zip(images, questions)]
        answers: list[str | None] = [None] * len(inputs)
        pending = list(range(len(inputs)))
        attempt = 0
        while pending:
            outputs = self.chat_model.batch([inputs[i] for i in pending],
                                            config={"max_concurrency": self.max_concurrency},
                                            return_exceptions=True)
            failed: list[tuple[int, BaseException]] = []
            for i, out in zip(pending, outputs):
                if isinstance(out, BaseException):
                    if not is_transient_error(out):
                        _note(out, f"{self.name}: question {i} ({questions[i]!r}) failed with a non-retryable error")
                        raise out
                    failed.append((i, out))
                else:
                    answers[i] = self._text(out)
            if not failed:
                break
            if attempt >= self.max_retries:
                i, exc = failed[0]
                _note(exc, f"{self.name}: {len(failed)} request(s) still failing after {self.max_retries} retries")
                raise exc
            delay = min(self.max_backoff, self.backoff * (2 ** attempt))
            logger.warning("%s: %d transient failure(s) (%s); retry %d/%d in %.1fs", self.name, len(failed),
                           type(failed[0][1]).__name__, attempt + 1, self.max_retries, delay)
            self._sleep(delay)
            attempt += 1
            pending = [i for i, _ in failed]
        return [a if a is not None else "" for a in answers]


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(text)
