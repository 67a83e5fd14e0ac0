"""Processor kwargs from a decision make the real transformers image processors charge what it says."""

from __future__ import annotations

import pytest
from PIL import Image

from cares_integrations import FixedRouter
from cares_integrations.core.processors import transformers_processor_kwargs, vllm_mm_processor_kwargs

PAGE = Image.new("RGB", (1700, 2200), "white")


def test_kwargs_per_model_family():
    router = FixedRouter(384)
    d = router.route(PAGE, "q", target="internvl3")
    assert d.processor_kwargs == {"max_num": 1} and d.tokens_after == 256 < d.tokens_before
    assert transformers_processor_kwargs(d) == {"max_patches": 1}
    assert vllm_mm_processor_kwargs(d) == {"max_dynamic_patch": 1}
    d = router.route(PAGE, "q", target="smolvlm")
    assert vllm_mm_processor_kwargs(d) == {"size": {"longest_edge": 512}} and d.tokens_after == 64
    assert router.route(PAGE, "q", target="anthropic:claude").processor_kwargs == {}


def test_qwen_processor_keeps_the_decided_size():
    transformers = pytest.importorskip("transformers")
    d = FixedRouter(768).route(PAGE, "q", target="qwen2.5-vl")
    proc = transformers.Qwen2VLImageProcessor()
    img = PAGE.resize(d.send_size)
    out = proc(images=[img], return_tensors="np", **transformers_processor_kwargs(d))
    t, h, w = (int(v) for v in out["image_grid_thw"][0])
    assert (h // 2) * (w // 2) == d.tokens_after


def test_idefics3_processor_uses_the_decided_tiles():
    transformers = pytest.importorskip("transformers")
    d = FixedRouter(384).route(PAGE, "q", target="smolvlm")
    proc = transformers.Idefics3ImageProcessor(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512})
    img = PAGE.resize(d.send_size)
    out = proc(images=[[img]], return_tensors="np", **transformers_processor_kwargs(d))
    assert out["pixel_values"].shape[1] * 64 == d.tokens_after  # tiles x 64 tokens
