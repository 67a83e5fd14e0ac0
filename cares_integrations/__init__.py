"""cares-integrations: route each page image to the smallest resolution a VLM needs.

A router looks at a page and its question and picks the smallest long side that still answers
it (the CARES method); the page is resized before the model call, so the call spends fewer
visual tokens. Start with :func:`load_router`.
"""

from .core.apply import ImageResult, aroute_and_resize, route_and_resize
from .core.decision import RouteDecision
from .core.errors import (
    CaresError,
    CheckpointError,
    DecompressionBombError,
    ImageDecodeError,
    ImageSkipped,
    RouterError,
    TooManyImagesError,
    UnknownTargetError,
)
from .routers.registry import default_router, list_routers, load_router, register_folder_format, register_router
from .core.payload import DecodedImage, FetchPolicy, SourceKind, load_image
from .core.policy import ResolutionPolicy
from .core.resize import fit_long_side, resize, resize_image
from .core.router import ROUTER_TARGET, Prediction, Router
from .core.sources import LocalFilePolicy
from .routers.calibrated import CalibratedRouter
from .routers.fixed import FixedRouter
from .routers.textscale import TextScaleRouter

__version__ = "0.1.0"

__all__ = [
    "CalibratedRouter",
    "CaresError",
    "CheckpointError",
    "DecodedImage",
    "DecompressionBombError",
    "FetchPolicy",
    "FixedRouter",
    "ImageDecodeError",
    "ImageResult",
    "ImageSkipped",
    "LocalFilePolicy",
    "Prediction",
    "ROUTER_TARGET",
    "ResolutionPolicy",
    "RouteDecision",
    "RouterError",
    "Router",
    "SourceKind",
    "TextScaleRouter",
    "TooManyImagesError",
    "UnknownTargetError",
    "aroute_and_resize",
    "default_router",
    "fit_long_side",
    "load_image",
    "list_routers",
    "load_router",
    "register_folder_format",
    "register_router",
    "resize",
    "resize_image",
    "route_and_resize",
    "__version__",
    # imported lazily on first use (see __getattr__)
    "calibrate",
    "CaresGateRouter",
    "GateConfig",
    "GateHead",
    "LearnedDefaultRouter",
    "MicroBatcher",
    "ProxyBackbone",
    "load_gate",
    "save_gate",
    "list_targets",
    "processed_size",
    "send_size",
    "visual_tokens",
]


_GATE_EXPORTS = ("CaresGateRouter", "GateConfig", "GateHead", "ProxyBackbone", "load_gate", "save_gate")


def __getattr__(name: str):
    # Heavy or optional pieces are imported on first use: the gate pulls in torch and
    # transformers, which a user of the default router never needs to load.
    if name in _GATE_EXPORTS:
        from .routers import gate

        return getattr(gate, name)
    if name == "LearnedDefaultRouter":
        from .routers.learned import LearnedDefaultRouter

        return LearnedDefaultRouter
    if name == "calibrate":
        from .training.calibrate import calibrate

        return calibrate
    if name == "MicroBatcher":
        from .core.batching import MicroBatcher

        return MicroBatcher
    if name in ("visual_tokens", "processed_size", "list_targets"):
        from .core import tokens

        return getattr(tokens, name)
    if name == "send_size":
        from .core.sizing import send_size

        return send_size
    raise AttributeError(f"module 'cares_integrations' has no attribute {name!r}")
