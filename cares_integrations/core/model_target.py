"""Which token-model target a chat model is: from its provider and model name.

Agent components size images for the model they sit in front of when the user names no target:
``ChatOpenAI(model="gpt-4o-2024-08-06")`` is ``"openai:gpt-4o"``, ``ChatAnthropic(model=
"claude-sonnet-4-5-20250929")`` is ``"anthropic:claude-sonnet-4-5"``, ``ChatGoogleGenerativeAI(
model="models/gemini-2.5-flash")`` is ``"google:gemini-2.5-flash"``.
"""

from __future__ import annotations

from .errors import UnknownTargetError
from .tokens import get_target, list_targets

PROVIDER_PREFIXES = {
    "openai": "openai",
    "azure": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "gemini": "google",
    "vertex": "google",
}
"""Provider words (as found in a client class or ``_llm_type``) and the target prefix they map to."""


def provider_of(label: str) -> str | None:
    """The target prefix for a client label such as ``"ChatOpenAI"`` or ``"anthropic-chat"``."""
    low = label.lower()
    return next((prefix for word, prefix in PROVIDER_PREFIXES.items() if word in low), None)


def target_for_model_name(provider: str | None, model_name: str | None) -> str | None:
    """The known target for ``provider``'s ``model_name``, dropping date/version suffixes one dash
    segment at a time (``gpt-4o-2024-08-06`` -> ``gpt-4o``); None when nothing matches."""
    if not provider or not model_name:
        return None
    name = model_name.strip().split("/")[-1].lower()
    parts = name.split("-")
    known = set(list_targets())
    for end in range(len(parts), 0, -1):
        candidate = f"{provider}:{'-'.join(parts[:end])}"
        if candidate in known:
            return candidate
    try:  # a newer model of a known family: its family's rule (get_target warns)
        get_target(f"{provider}:{name}")
    except UnknownTargetError:
        return None
    return f"{provider}:{name}"
