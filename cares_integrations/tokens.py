"""Visual-token cost models, by target (``openai:gpt-4o``, ``claude``, ``gemini-3:...``, ...).

The models live in :mod:`cares_integrations.core.tokens`; this module is where users import them.
"""

from .core.tokens import *  # noqa: F401,F403
from .core.tokens import __all__  # noqa: F401
