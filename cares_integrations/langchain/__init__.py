"""LangChain integration: resize page images for their question inside LCEL chains and agents.

- :class:`CaresImageResizer`: a Runnable for ``prompt | resizer | llm``.
- :class:`CaresDocumentTransformer`: resize page images carried by retrieved ``Document`` s.
- :func:`wrap_tool` and :class:`CaresPageImageTool`: agent tools that pass or fetch page images
  at the size the question needs.

Needs ``langchain-core``: ``pip install 'cares-integrations[langchain]'``.
"""

from ..core.optional import require

require("langchain_core", "langchain", purpose="the LangChain integration")

from .documents import CaresDocumentTransformer  # noqa: E402
from .resizer import EVENT_NAME, CaresImageResizer  # noqa: E402
from .tools import CaresPageImageTool, PageImageInput, make_page_image_tool, wrap_tool  # noqa: E402

__all__ = [
    "EVENT_NAME",
    "CaresDocumentTransformer",
    "CaresImageResizer",
    "CaresPageImageTool",
    "PageImageInput",
    "make_page_image_tool",
    "wrap_tool",
]
