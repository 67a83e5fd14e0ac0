"""``CaresImageResizer``: the Runnable that sits between a prompt and a chat model.

``prompt | CaresImageResizer(target="openai:gpt-4o") | llm`` resizes every page image in the
conversation for the question being asked, right before the model call; nothing else in the
conversation is touched. All images of one input, and all inputs of a ``batch``/``abatch``, are
routed in one batched router call (:func:`cares_integrations.apply.route_and_resize`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from langchain_core.callbacks import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.tracers.base import BaseTracer
from pydantic import ConfigDict

from ..core import errors
from ..core.apply import ImageResult
from ..core.budget import check_image_count
from ..core.conversation import DecisionCache, aroute_images, route_images, summarize
from ..core.tokens import get_target
from ._component import CaresOptions
from .blocks import block_detail, needs_write
from .messages import LocatedImage, QuestionGetter, default_question, find_images, rewrite, role_and_content

EVENT_NAME = "cares_route"
"""Name of the custom callback event dispatched once per input with the routing decisions."""

METADATA_KEY = "cares"
"""Key of the routing summary in the resizer run's tracer metadata (LangSmith) and in the
``response_metadata`` of the last message the chat model is sent."""


def routing_summary(messages: Sequence[Any]) -> dict[str, Any] | None:
    """The routing summary a :class:`CaresImageResizer` left on the last of ``messages``
    (``response_metadata["cares"]``), or None: what a callback handler's
    ``on_chat_model_start(serialized, messages)`` reads for ``messages[0]``."""
    last = messages[-1] if messages else None
    return last.response_metadata.get(METADATA_KEY) if isinstance(last, BaseMessage) else None


def add_run_metadata(run_manager: Any, metadata: dict[str, Any]) -> None:
    """Add ``metadata`` to the run of ``run_manager`` in every tracer (LangSmith included)."""
    if run_manager is None:
        return
    for handler in getattr(run_manager, "handlers", ()):
        if isinstance(handler, BaseTracer):
            run = handler.run_map.get(str(run_manager.run_id))
            if run is not None:
                run.add_metadata(metadata)


@dataclass
class _Job:
    """One input: where its messages came from, its images, their questions, and its results."""

    value: Any
    messages: list[Any] | None
    located: list[LocatedImage] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    results: list[ImageResult | None] = field(default_factory=list)
    error: Exception | None = None


class CaresImageResizer(CaresOptions, RunnableSerializable[LanguageModelInput, LanguageModelInput]):
    """Resize every page image in a chat model's input for its question, before the model call.

    Accepts what flows between a prompt and a chat model (a ``ChatPromptValue``, a
    ``StringPromptValue``, a list of messages or message-likes, one message, a string) and returns
    the same kind, with each image block rewritten in its own form at the size the router chose.
    Messages without a changed image are passed on as the same objects, except the last message of
    an input holding images: a copy of it carries the routing summary in
    ``response_metadata["cares"]``, so the chat model's run receives it with its input (in
    ``on_chat_model_start`` and in tracers such as LangSmith; provider clients do not send
    ``response_metadata``). The caller's objects are never mutated. Routing options (``router``,
    ``target``, ``policy``, ``on_error``, ``image_format``, ``quality``, ``local_files``) are
    :class:`CaresOptions`'s.

    Each input dispatches a ``"cares_route"`` custom event (see :data:`EVENT_NAME`) with the
    decisions and visual tokens before/after for the target, visible in
    ``astream_events(version="v2")`` and to callback handlers' ``on_custom_event``; the same
    summary is added to the run's tracer metadata under ``"cares"``. An input holding more images
    than the target's provider accepts per request raises
    :class:`~cares_integrations.TooManyImagesError` before anything is routed; with more than 20
    images for Anthropic, each image is fitted to 2000x2000 px (the decision's ``payload`` says so).

    Example:
        .. code-block:: python

            from cares_integrations.langchain import CaresImageResizer

            chain = prompt | CaresImageResizer(target="openai:gpt-4o") | llm
            chain.invoke({"question": "What is the total?", "page": data_url})
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    question_getter: QuestionGetter | None = None
    """``(messages, message_index) -> question`` for the images in ``messages[message_index]``.

    Default: the latest human text in the conversation (see
    :func:`cares_integrations.langchain.messages.default_question`)."""

    respect_detail: bool = True
    """A block's own OpenAI ``detail`` caps the router (``"low"`` is priced and sized as low
    detail); False routes every block with the target's full range of steps."""

    cache: DecisionCache | None = None
    """Decisions to reuse: an image already routed for the same question, target and policy is
    answered from it (agents resend every image on every turn). None routes every image."""

    # -- reading inputs and writing outputs ---------------------------------------------------
    def _job(self, value: Any) -> _Job:
        if isinstance(value, ChatPromptValue):
            messages: list[Any] | None = list(value.messages)
        elif isinstance(value, (PromptValue, str)):
            messages = None  # a string prompt (or an image-only prompt value) has no conversation
        elif isinstance(value, BaseMessage):
            messages = [value]
        elif isinstance(value, Sequence):
            messages = list(value)
        else:
            raise TypeError(
                f"CaresImageResizer takes a prompt value, a message, a list of messages or a string; "
                f"got {type(value).__name__}"
            )
        job = _Job(value=value, messages=messages)
        if messages is None:
            return job
        job.located = find_images(messages)
        if job.located:  # one input is one provider request: its image count has a limit
            check_image_count(self._target_name(), len(job.located))
        getter = self.question_getter or default_question
        cache: dict[int, str] = {}
        for loc in job.located:
            if loc.message_index not in cache:
                question = getter(messages, loc.message_index)
                if not isinstance(question, str):
                    raise TypeError(f"question_getter must return a string, got {type(question).__name__}")
                cache[loc.message_index] = question
            job.questions.append(cache[loc.message_index])
        return job

    def _plan(self, inputs: Sequence[Any]) -> tuple[list[_Job], list[str], list[str], Any, list[int]]:
        jobs: list[_Job] = []
        for value in inputs:
            try:
                jobs.append(self._job(value))
            except (TypeError, ValueError) as exc:  # a bad input fails alone, not its whole batch
                jobs.append(_Job(value=value, messages=None, error=exc))
        sources: list[str] = []
        queries: list[str] = []
        targets: list[Any] = []
        counts: list[int] = []
        for job in jobs:
            for loc, question in zip(job.located, job.questions):
                if loc.ref.source is not None:
                    sources.append(loc.ref.source)
                    queries.append(question)
                    targets.append(self._capped_target(job.messages, loc))
                    counts.append(len(job.located))
        if all(t is targets[0] for t in targets[1:]) and targets:
            return jobs, sources, queries, targets[0], counts
        return jobs, sources, queries, targets, counts

    def _capped_target(self, messages: list[Any] | None, loc: LocatedImage) -> Any:
        """The target for one image: the block's own ``detail`` caps it (``openai:gpt-4o:low``)."""
        default = self._target()
        if not self.respect_detail or messages is None:
            return default
        name = self._target_name()
        if not isinstance(name, str):
            return default
        block = role_and_content(messages[loc.message_index])[1][loc.block_index]
        detail = block_detail(block)
        model = get_target(name)
        if detail in getattr(model, "level_names", ()) and "detail" in model.knobs:
            return f"{name}:{detail}"
        return default

    def _finish(self, jobs: list[_Job],
                results: list[ImageResult]) -> list[tuple[Any, dict[str, Any], dict[str, Any]] | Exception]:
        """Per input: (output, report, run metadata), or the input's exception."""
        it = iter(results)
        outputs: list[tuple[Any, dict[str, Any], dict[str, Any]] | Exception] = []
        for job in jobs:
            job.results = [next(it) if loc.ref.source is not None else None for loc in job.located]
            failure = job.error or self._failure(job)
            if failure is not None:
                outputs.append(failure)
                continue
            report = self._report(job)
            meta = self._run_metadata(report)  # once: on the last message and on this run
            outputs.append((self._output(job, meta), report, meta))
        return outputs

    def _failure(self, job: _Job) -> Exception | None:
        if self.on_error != "raise":
            return None
        for loc, result in zip(job.located, job.results):
            if result is not None and result.error:
                exc = result.exception
                cls = type(exc) if isinstance(exc, errors.ImageDecodeError) else errors.ImageDecodeError
                error = cls(
                    f"image in message {loc.message_index}, content block {loc.block_index} "
                    f"({loc.ref.form} block): {exc if exc is not None else result.error}"
                )
                error.__cause__ = exc
                return error
        return None

    def _output(self, job: _Job, meta: dict[str, Any]) -> Any:
        value = job.value
        if job.messages is None or not job.located:
            return value
        new = rewrite(job.messages, job.located, job.results)
        last = new[-1]
        if isinstance(last, BaseMessage):  # the chat model's run receives the summary with its input
            new[-1] = last.model_copy(update={"response_metadata": {**last.response_metadata, **meta}})
        elif not any(needs_write(r) for r in job.results):
            return value
        if isinstance(value, ChatPromptValue):
            return value.model_copy(update={"messages": new})
        if isinstance(value, BaseMessage):
            return new[0]
        return type(value)(new) if isinstance(value, tuple) else new

    def _report(self, job: _Job) -> dict[str, Any]:
        images: list[dict[str, Any]] = []
        for loc, question, result in zip(job.located, job.questions, job.results):
            entry: dict[str, Any] = {
                "message_index": loc.message_index,
                "block_index": loc.block_index,
                "form": loc.ref.form,
                "question": question,
            }
            if result is None:
                entry.update(changed=False, skipped_reason=loc.ref.skip_reason)
            else:
                entry.update(result.as_metadata())
            images.append(entry)
        return {
            "target": self._target_name(),
            "router": self.router.name,
            **summarize(job.results),
            "images": images,
        }

    # -- routing ------------------------------------------------------------------------------
    def _route(self, inputs: Sequence[Any]) -> list[tuple[Any, dict[str, Any], dict[str, Any]] | Exception]:
        jobs, sources, queries, targets, counts = self._plan(inputs)
        results = (
            route_images(self._router(), sources, queries, cache=self.cache,
                         **self._route_kwargs(target=targets, on_error="passthrough", images_per_request=counts))
            if sources
            else []
        )
        return self._finish(jobs, results)

    async def _aroute(self, inputs: Sequence[Any]) -> list[tuple[Any, dict[str, Any], dict[str, Any]] | Exception]:
        jobs, sources, queries, targets, counts = self._plan(inputs)
        results = (
            await aroute_images(self._router(), sources, queries, cache=self.cache,
                                **self._route_kwargs(target=targets, on_error="passthrough",
                                                     images_per_request=counts))
            if sources
            else []
        )
        return self._finish(jobs, results)

    # -- observability ------------------------------------------------------------------------
    @staticmethod
    def _run_metadata(report: dict[str, Any]) -> dict[str, Any]:
        return {
            METADATA_KEY: {
                "target": report["target"],
                "router": report["router"],
                "n_images": report["n_images"],
                "n_resized": report["n_resized"],
                "cache_hits": report["cache_hits"],
                "tokens_before": report["tokens_before"],
                "tokens_after": report["tokens_after"],
                "sizes": [
                    {"from": img.get("original_size"), "to": img.get("send_size")}
                    for img in report["images"]
                    if img.get("send_size") is not None
                ],
                "steps": [img["step"] for img in report["images"] if img.get("step")],
                "bytes_before": sum(img.get("bytes_before") or 0 for img in report["images"]),
                "bytes_after": sum(img.get("bytes_after") or img.get("bytes_before") or 0
                                   for img in report["images"]),
                # why nothing was saved, and what a provider limit made of an image
                "notes": [note for img in report["images"]
                          for note in (img.get("cannot_save"), img.get("payload"))
                          if note and note not in ("resized", "original")],
            }
        }

    def _emit(self, out: tuple[Any, dict[str, Any], dict[str, Any]], run_manager: Any, config: RunnableConfig) -> None:
        add_run_metadata(run_manager, out[2])
        dispatch_custom_event(EVENT_NAME, out[1], config=config)

    async def _aemit(self, out: tuple[Any, dict[str, Any], dict[str, Any]], run_manager: Any,
                     config: RunnableConfig) -> None:
        add_run_metadata(run_manager, out[2])
        await adispatch_custom_event(EVENT_NAME, out[1], config=config)

    # -- Runnable API -------------------------------------------------------------------------
    def _invoke(self, value: Any, run_manager: Any, config: RunnableConfig) -> Any:
        out = self._route([value])[0]
        if isinstance(out, Exception):
            raise out
        self._emit(out, run_manager, config)
        return out[0]

    async def _ainvoke(self, value: Any, run_manager: Any, config: RunnableConfig) -> Any:
        out = (await self._aroute([value]))[0]
        if isinstance(out, Exception):
            raise out
        await self._aemit(out, run_manager, config)
        return out[0]

    def _batch(self, values: list[Any], run_manager: list[Any], config: list[RunnableConfig]) -> list[Any]:
        outs = self._route(values)
        for out, manager, cfg in zip(outs, run_manager, config):
            if not isinstance(out, Exception):
                self._emit(out, manager, cfg)
        return [out if isinstance(out, Exception) else out[0] for out in outs]

    async def _abatch(self, values: list[Any], run_manager: list[Any], config: list[RunnableConfig]) -> list[Any]:
        outs = await self._aroute(values)
        for out, manager, cfg in zip(outs, run_manager, config):
            if not isinstance(out, Exception):
                await self._aemit(out, manager, cfg)
        return [out if isinstance(out, Exception) else out[0] for out in outs]

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> LanguageModelInput:  # noqa: A002
        """Resize the images of one input; returns the same kind of object it was given."""
        return self._call_with_config(self._invoke, input, config)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any  # noqa: A002
    ) -> LanguageModelInput:
        """Async :meth:`invoke`: decoding, routing and resizing run off the event loop."""
        return await self._acall_with_config(self._ainvoke, input, config)

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[LanguageModelInput]:
        """Resize the images of many inputs with ONE batched router call for all of them."""
        return self._batch_with_config(self._batch, inputs, config, return_exceptions=return_exceptions)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[LanguageModelInput]:
        """Async :meth:`batch`: one batched router call, off the event loop."""
        return await self._abatch_with_config(
            self._abatch, inputs, config, return_exceptions=return_exceptions
        )
