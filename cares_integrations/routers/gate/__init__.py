"""The CARES gate: a proxy VLM (SmolVLM / Idefics3, or another VLM exposing hidden states) plus a
small head that predicts class probabilities over the resolution bins.

``load_gate`` loads a saved gate (ours or the research code's state dict); the building blocks
(``GateConfig``, ``GateHead``, ``ProxyBackbone``, ``save_gate``, ``CaresGateRouter``) are what
training code uses. See ``docs/gate.md``.
"""

from .backbone import ProxyBackbone, find_text_model, truncate_text_layers
from .cache import VisionCache, VisionEntry, image_key
from .checkpoint import load_gate, read_gate, read_research_head, save_gate
from .config import CONFIG_NAME, FORMAT_VERSION, HEAD_NAME, GateConfig
from .head import GateHead
from .router import CaresGateRouter

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "HEAD_NAME",
    "CaresGateRouter",
    "GateConfig",
    "GateHead",
    "ProxyBackbone",
    "VisionCache",
    "VisionEntry",
    "find_text_model",
    "image_key",
    "load_gate",
    "read_gate",
    "read_research_head",
    "save_gate",
    "truncate_text_layers",
]
