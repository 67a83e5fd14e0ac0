"""What the agent components read from a LangChain chat model: its target and its tool-result rules."""

from __future__ import annotations

from typing import Any, Literal

from ..core.model_target import provider_of, target_for_model_name

ToolImages = Literal["auto", "user_message", "keep"]
"""Where images returned by tools go: ``"keep"`` leaves them in the tool message,
``"user_message"`` moves them into a user message right after the tool results, ``"auto"`` moves
them only for APIs that take no images in tool results (OpenAI chat completions)."""


def _unwrap(model: Any) -> Any:
    """The chat model under a wrapper (``CaresChatModel.model``) or a ``RunnableBinding``."""
    for _ in range(8):  # bounded: wrappers of wrappers
        inner = getattr(model, "model", None) if hasattr(model, "router") else getattr(model, "bound", None)
        if inner is None or isinstance(inner, str):
            return model
        model = inner
    return model


def model_name_of(model: Any) -> str | None:
    """The model name a LangChain chat model sends (``model_name`` or ``model``), if any."""
    model = _unwrap(model)
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def target_for_chat_model(model: Any) -> str | None:
    """The token-model target for a chat model (``ChatOpenAI(model="gpt-4o")`` -> ``"openai:gpt-4o"``);
    None when its provider or model name is not known."""
    model = _unwrap(model)
    label = type(model).__name__
    try:
        label += " " + str(model._llm_type)
    except Exception:  # noqa: BLE001 - _llm_type is a property some test doubles leave out
        pass
    return target_for_model_name(provider_of(label), model_name_of(model))


def accepts_tool_images(model: Any) -> bool:
    """Whether the API ``model`` talks to accepts images inside tool results.

    Observed on the wire (docs/agents.md): langchain-openai sends an ``image_url`` part in a
    ``role: "tool"`` message for chat completions, which that API does not accept; the Responses
    API takes ``input_image`` in ``function_call_output`` and Anthropic takes images in
    ``tool_result``, so those keep them.
    """
    model = _unwrap(model)
    if provider_of(type(model).__name__) != "openai":
        return True
    return bool(getattr(model, "use_responses_api", None)) or getattr(model, "output_version", None) == "responses/v1"


def should_move_tool_images(mode: ToolImages, model: Any) -> bool:
    """Whether ``mode`` moves tool images out of tool messages for ``model``."""
    if mode not in ("auto", "user_message", "keep"):
        raise ValueError(f"tool_images must be 'auto', 'user_message' or 'keep', got {mode!r}")
    return mode == "user_message" or (mode == "auto" and not accepts_tool_images(model))
