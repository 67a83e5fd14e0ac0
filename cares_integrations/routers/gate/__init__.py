"""The CARES gate: a proxy VLM (SmolVLM / Idefics3, or another VLM exposing hidden states) plus a
small head that predicts class probabilities over the resolution bins.

``load_gate`` loads a saved gate (ours or the research code's state dict); the building blocks
(``GateConfig``, ``GateHead``, ``ProxyBackbone``, ``save_gate``, ``CaresGateRouter``) are what
training code uses. See ``docs/gate.md``.
"""

from ...core.optional import require

for _module in ("torch", "transformers", "safetensors", "huggingface_hub"):
    require(_module, "gate", purpose="the CARES gate")

from .backbone import ProxyBackbone, find_text_model, truncate_text_layers  # noqa: E402
from .cache import VisionCache, VisionEntry, image_key  # noqa: E402
from .checkpoint import load_gate, read_gate, read_research_head, save_gate  # noqa: E402
from .config import CONFIG_NAME, FORMAT_VERSION, HEAD_NAME, GateConfig  # noqa: E402
from .head import GateHead  # noqa: E402
from .router import CaresGateRouter  # noqa: E402

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
