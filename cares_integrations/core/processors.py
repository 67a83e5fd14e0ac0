"""Processor arguments that realise a decision on a local model (transformers, vLLM).

InternVL, Idefics3/SmolVLM and Qwen-VL charge by their processor's settings, not only by the
image's size: a decision for them carries ``processor_kwargs`` (``max_num``, ``longest_edge``,
``min_pixels``/``max_pixels``). These helpers translate them into what each runtime takes.
"""

from __future__ import annotations

from typing import Any

from .decision import RouteDecision

__all__ = ["transformers_processor_kwargs", "vllm_mm_processor_kwargs"]


def transformers_processor_kwargs(decision: RouteDecision) -> dict[str, Any]:
    """Keyword arguments for a transformers image processor call (``processor(images=..., **kw)``).

    Idefics3/SmolVLM: ``size={"longest_edge": N}``; InternVL (``GotOcr2ImageProcessor``):
    ``max_patches=N`` (the model card's ``max_num``); Qwen2/2.5/3-VL: ``size={"shortest_edge": min_pixels, "longest_edge": max_pixels}``.
    Empty when the decision needs none.
    """
    knobs = decision.processor_kwargs
    if "longest_edge" in knobs:
        return {"size": {"longest_edge": int(knobs["longest_edge"])}}
    if "max_num" in knobs:
        return {"max_patches": int(knobs["max_num"])}
    if "max_pixels" in knobs:  # transformers 5 takes pixel bounds as size (min/max_pixels are deprecated)
        return {"size": {"shortest_edge": int(knobs["min_pixels"]), "longest_edge": int(knobs["max_pixels"])}}
    return {}


def vllm_mm_processor_kwargs(decision: RouteDecision) -> dict[str, Any]:
    """The per-request ``mm_processor_kwargs`` vLLM accepts for the same decision.

    Idefics3/SmolVLM ``{"size": {"longest_edge": N}}``; InternVL ``{"max_dynamic_patch": N}``;
    Qwen-VL ``{"min_pixels": ..., "max_pixels": ...}``.
    """
    knobs = decision.processor_kwargs
    if "max_num" in knobs:
        return {"max_dynamic_patch": int(knobs["max_num"])}
    if "max_pixels" in knobs:
        return {"min_pixels": int(knobs["min_pixels"]), "max_pixels": int(knobs["max_pixels"])}
    return transformers_processor_kwargs(decision)
