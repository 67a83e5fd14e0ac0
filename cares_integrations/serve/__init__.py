"""The router as a shared service: a Ray Serve deployment (:mod:`.app`, extra ``serve``) and the
client :class:`RemoteRouter` every component can use (``load_router("http://host:port")``).

See docs/serving.md. Importing this package does not import Ray; :func:`build_app` does.
"""

from .client import RemoteRouter, ServiceUnavailable
from .service import ParsedItem, RouterService

__all__ = ["ParsedItem", "RemoteRouter", "RouterService", "ServiceUnavailable", "app_builder", "build_app"]


def __getattr__(name: str):
    if name in ("build_app", "app_builder", "CaresRouterDeployment"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'cares_integrations.serve' has no attribute {name!r}")
