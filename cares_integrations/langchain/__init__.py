"""LangChain integration: resize page images for their question inside LCEL chains and agents.

- :class:`CaresImageResizer`: a Runnable for ``prompt | resizer | llm``; the chat model's run
  receives the routing summary with its input (:func:`routing_summary` reads it).
- :class:`CaresDocumentTransformer`: resize page images carried by retrieved ``Document`` s.
- :class:`CaresMiddleware` (``langchain`` 1.x agents) and :class:`CaresChatModel` (any chat
  model): resize every image an agent sends on every turn, with a decision cache.
- :func:`wrap_tool` and :class:`CaresPageImageTool`: agent tools that pass or fetch page images
  at the size the question needs.

Needs ``langchain-core``: ``pip install 'cares-integrations[langchain]'``.
"""

from ..core.optional import require

require("langchain_core", "langchain", purpose="the LangChain integration")

from .chat_model import CaresChatModel  # noqa: E402
from .documents import CaresDocumentTransformer  # noqa: E402
from .resizer import EVENT_NAME, CaresImageResizer, routing_summary  # noqa: E402
from .savings import CaresSavingsHandler, cares_savings  # noqa: E402
from .tools import CaresPageImageTool, PageImageInput, make_page_image_tool, wrap_tool  # noqa: E402



def __getattr__(name: str):
    """``CaresMiddleware`` is imported on first use: it needs the ``langchain`` package (``agents`` extra)."""
    if name == "CaresMiddleware":
        from .middleware import CaresMiddleware

        return CaresMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EVENT_NAME",
    "CaresChatModel",
    "CaresMiddleware",
    "CaresDocumentTransformer",
    "CaresImageResizer",
    "CaresPageImageTool",
    "CaresSavingsHandler",
    "PageImageInput",
    "cares_savings",
    "make_page_image_tool",
    "routing_summary",
    "wrap_tool",
]
