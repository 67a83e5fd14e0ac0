"""LlamaIndex integration: resize retrieved page images for each query before the VLM sees them.

- :class:`CaresImagePostprocessor`: a node postprocessor for multimodal query engines
  (``RetrieverQueryEngine.from_args(..., multimodal=True)``, ``SimpleMultiModalQueryEngine``,
  ``MultiModalVectorStoreIndex.as_query_engine``).
- :func:`resize_chat_messages` / :func:`aresize_chat_messages`: the same for ``ChatMessage`` lists
  that agents and workflows send to ``llm.chat`` directly.
- :class:`CaresLLM`: an LLM wrapper for agents (``FunctionAgent``, ``AgentWorkflow``) that resizes
  every chat request's images, with a decision cache; tool calling is the wrapped LLM's.
- :class:`CaresImageTransform`: an ingestion-pipeline transform for a fixed, known question.
- :class:`CaresResizeEvent`: the instrumentation event carrying every decision.

Needs ``llama-index-core``: ``pip install 'cares-integrations[llama-index]'``.
"""

from __future__ import annotations

from ..core.optional import require

require("llama_index.core", "llama-index", purpose="cares_integrations.llama_index")

from .chat import aresize_chat_messages, resize_chat_messages  # noqa: E402
from .events import CaresResizeEvent  # noqa: E402
from .llm import CaresLLM  # noqa: E402
from .postprocessor import CaresImagePostprocessor  # noqa: E402
from .transform import CaresImageTransform  # noqa: E402

__all__ = [
    "CaresLLM",
    "CaresImagePostprocessor",
    "CaresImageTransform",
    "CaresResizeEvent",
    "aresize_chat_messages",
    "resize_chat_messages",
]
