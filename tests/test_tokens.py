"""Visual-token cost models: the documented worked examples, hand computations, and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cares_integrations.core import tokens
from cares_integrations.core.errors import UnknownTargetError
from cares_integrations.core.tokens import (
    CostModel,
    Idefics3CostModel,
    QwenVLCostModel,
    get_target,
    KnobFamily,
    list_targets,
    processed_size,
    register_target,
    smart_resize,
    visual_tokens,
)

from helpers import unique_models


MODELS = unique_models()


@pytest.fixture
def private_registry(monkeypatch):
    """A copy of the registry, so a test can register names without leaking them."""
    monkeypatch.setattr(tokens, "_REGISTRY", dict(tokens._REGISTRY))


# ---------------------------------------------------------------------------------------------
# OpenAI (platform.openai.com/docs/guides/images-vision, "Calculating costs")
# ---------------------------------------------------------------------------------------------
def test_openai_tile_documented_examples():
    # 1024x1024: no fit needed, short side to 768 -> 768x768 -> 4 tiles -> 85 + 4*170.
    assert visual_tokens("openai:gpt-4o", 1024, 1024) == 765
    assert processed_size("openai:gpt-4o", 1024, 1024) == (768, 768)
    # 2048x4096: fit to 1024x2048, short side to 768 -> 768x1536 -> 6 tiles -> 85 + 6*170.
    assert visual_tokens("openai:gpt-4o", 2048, 4096) == 1105
    assert processed_size("openai:gpt-4o", 2048, 4096) == (768, 1536)
    # low detail is a flat cost whatever the size.
    assert visual_tokens("openai:gpt-4o:low", 4096, 8192) == 85
    assert visual_tokens("openai:gpt-4o:low", 10, 10) == 85


def test_openai_tile_table_per_model():
    # The same 4-tile image under each model's documented (base, per tile).
    assert visual_tokens("openai:gpt-5", 1024, 1024) == 70 + 4 * 140
    assert visual_tokens("openai:o3", 1024, 1024) == 75 + 4 * 150
    assert visual_tokens("openai:gpt-4o-mini", 1024, 1024) == 2833 + 4 * 5667
    assert visual_tokens("openai:computer-use-preview", 1024, 1024) == 65 + 4 * 129
    assert visual_tokens("openai:gpt-5:low", 4000, 3000) == 70


def test_openai_tile_rounds_to_nearest_after_fitting():
    # Forum measurement on gpt-4.1: 2049x513 billed 4 more tiles than 2050x513. Fitting to 2048
    # gives heights 512.75 and 512.4995: only rounding to nearest splits them (513 -> 2 rows).
    assert visual_tokens("openai:gpt-4.1", 2049, 513) - visual_tokens("openai:gpt-4.1", 2050, 513) == 4 * 170


def test_openai_patch_documented_examples():
    model = get_target("openai:gpt-4.1-mini")
    # 1024x1024: 32 x 32 patches, under the 1536 budget.
    assert model.patches(1024, 1024) == 1024
    # 1800x2400: 57 x 75 = 4275 > 1536; r = 0.603 -> 1086 x 1448 px = 33.94 x 45.25 patches;
    # r *= 33/33.94 -> 1056 x 1408 px -> 33 x 44 = 1452 patches.
    assert model.patches(1800, 2400) == 1452
    assert model.processed_size(1800, 2400) == (1056, 1408)


def test_openai_patch_multipliers_round_up():
    assert visual_tokens("openai:gpt-4.1-mini", 1024, 1024) == math.ceil(1024 * 1.62)  # 1659
    assert visual_tokens("openai:gpt-4.1-nano", 1800, 2400) == math.ceil(1452 * 2.46)  # 3572
    assert visual_tokens("openai:o4-mini", 1800, 2400) == 2498  # 1452 * 1.72 = 2497.44
    # an exact product stays exact (no float 1104.0000000002 -> 1105)
    exact = tokens.OpenAIPatchCostModel("t", multiplier=1.2)
    assert exact.tokens(1280, 720) == 1104  # 40 * 23 = 920 patches * 1.2


# ---------------------------------------------------------------------------------------------
# Anthropic (platform.claude.com/docs/en/build-with-claude/vision, .../vision-coordinates)
# ---------------------------------------------------------------------------------------------
def test_claude_28px_rule():
    assert visual_tokens("anthropic:claude-sonnet-4", 1092, 1092) == 39 * 39  # 1521 (old rule ~1590)
    assert visual_tokens("anthropic:claude-sonnet-4", 1000, 1000) == 36 * 36  # 1296 (old ~1334)
    assert visual_tokens("anthropic:claude-sonnet-4", 200, 200) == 8 * 8  # 64 (old ~54)
    assert visual_tokens("anthropic:claude-haiku-4", 29, 28) == 2


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # The docs' table of the largest sizes that are not resized, per aspect ratio.
        ((2184, 2184), (1092, 1092)),  # 1:1, 39 x 39 = 1521 tokens; 40 x 40 = 1600 > 1568
        ((2000, 3000), (896, 1344)),  # 2:3, 32 x 48 = 1536
        ((900, 1600), (819, 1456)),  # 9:16, 30 x 52 = 1560
        ((1000, 2000), (784, 1568)),  # 1:2, 28 x 56 = 1568 (both limits at once)
    ],
)
def test_claude_downscales_to_documented_native_sizes(size, expected):
    assert processed_size("anthropic:claude-opus-4", *size) == expected
    assert processed_size("anthropic:claude-opus-4", *expected) == expected


def test_claude_table_sizes_are_within_the_standard_cap():
    model = get_target("anthropic:claude")
    for size in [(1092, 1092), (951, 1268), (896, 1344), (819, 1456), (784, 1568)]:
        assert model.processed_size(*size) == size
        assert model.tokens(*size) <= 1568


def test_claude_long_edge_cap_and_hires_tier():
    # 3136x200 is only 112 x 8 = 896 tokens, but its long edge is over 1568: halved to 1568x100.
    assert processed_size("anthropic:claude", 3136, 200) == (1568, 100)
    assert visual_tokens("anthropic:claude", 3136, 200) == 56 * 4
    # High-resolution tier: 2576 px / 4784 tokens; the largest square is 69 x 69 patches = 1932 px.
    assert processed_size("anthropic:claude-hires", 4000, 4000) == (1932, 1932)
    assert visual_tokens("anthropic:claude-hires", 4000, 4000) == 69 * 69


def test_claude_opus_4_7_caps_worked_examples():
    # Opus 4.7 and later: 2576 px on the long edge and 4,784 tokens (the vision page's per-model
    # limits). 2576x1456 is 92 x 52 patches = 4784: both caps met exactly, sent as is.
    assert processed_size("anthropic:claude-opus-4-7", 2576, 1456) == (2576, 1456)
    assert visual_tokens("anthropic:claude-opus-4-7", 2576, 1456) == 92 * 52 == 4784
    # The same image on a standard model is cut to 1568 px / 1,568 tokens: 1456x823 (52 x 30 = 1560).
    assert processed_size("anthropic:claude-sonnet-4-6", 2576, 1456) == (1456, 823)
    assert visual_tokens("anthropic:claude-sonnet-4-6", 2576, 1456) == 52 * 30
    # "up to ~3x more image tokens": the caps' ratio, 4784 / 1568.
    assert round(4784 / 1568, 1) == 3.1
    # 3:2 at 3000x2000 meets the 4784-token cap first: 2352x1568 (84 x 56 = 4704), under 2576 px.
    assert processed_size("anthropic:claude-opus-4-7", 3000, 2000) == (2352, 1568)
    assert visual_tokens("anthropic:claude-opus-4-7", 3000, 2000) == 84 * 56
    # A later Opus gets the same rule (the family's), a standard Sonnet the standard one.
    assert get_target("anthropic:claude-opus-4-7") is get_target("anthropic:claude-hires")
    assert get_target("anthropic:claude-sonnet-4-6") is get_target("anthropic:claude")


def test_claude_request_limits():
    limits = get_target("anthropic:claude-sonnet-4").limits
    # 8000 px per side; 2000x2000 once a request holds more than 20 images; 600 images per request.
    assert limits.max_side_for(20) == 8000 and limits.max_side_for(21) == 2000
    assert limits.max_images == 600 and limits.max_image_base64 == 5 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# OpenAI GPT-5.4 and later: patch budgets per detail level
# ---------------------------------------------------------------------------------------------
def test_gpt_5_4_high_patch_budget_worked_examples():
    # high: fit in 2048 px, then at most 2,500 32-px patches (one token each).
    high = get_target("openai:gpt-5.4:high")
    # The vision guide's 1024x1024 example: 32 x 32 = 1024 patches, within every budget.
    assert high.tokens(1024, 1024) == 1024 and high.processed_size(1024, 1024) == (1024, 1024)
    # Its 1800x2400 example under the high budget: fit 2048 -> 1536x2048 = 48 x 64 = 3072 > 2500;
    # r = sqrt(32*32*2500 / (1536*2048)) = 0.902, cut to 57/57.73 so the long side lands on whole
    # patches -> 43 x 57 = 2451 patches, processed at 1368x1824.
    assert high.tokens(1800, 2400) == 43 * 57 == 2451
    assert high.processed_size(1800, 2400) == (1368, 1824)
    # Any large square ends at the budget: 50 x 50 patches, 1600x1600.
    assert high.tokens(4096, 4096) == 2500 and high.processed_size(4096, 4096) == (1600, 1600)


def test_gpt_5_4_original_patch_budget_worked_examples():
    # original: fit in 6000 px, then at most 10,000 patches (the budget OpenAI's own codex client
    # caps its estimates at, openai/codex#19865).
    original = get_target("openai:gpt-5.4:original")
    # 1800x2400 = 57 x 75 = 4275 patches: within 10,000, kept at full size.
    assert original.tokens(1800, 2400) == 57 * 75 and original.processed_size(1800, 2400) == (1800, 2400)
    # 4096x4096 = 16,384 patches: shrunk to the budget, 100 x 100 patches at 3200x3200.
    assert original.tokens(4096, 4096) == 10000 and original.processed_size(4096, 4096) == (3200, 3200)


def test_gpt_5_x_auto_is_high_on_5_4_and_original_on_5_5_and_5_6():
    # auto = high for gpt-5.4, so the price without routing is the high budget's.
    assert get_target("openai:gpt-5.4").cap == "high" and get_target("openai:gpt-5.4:auto").cap == "high"
    assert visual_tokens("openai:gpt-5.4", 4096, 4096) == 2500
    # auto = original for gpt-5.5: leaving detail unset bills the original budget.
    assert get_target("openai:gpt-5.5").cap == "original" and get_target("openai:gpt-5.5:auto").cap == "original"
    assert visual_tokens("openai:gpt-5.5", 4096, 4096) == 10000
    assert visual_tokens("openai:gpt-5.5:high", 4096, 4096) == 2500  # naming :high caps it
    # Routing may pick any level up to the cap, cheapest first.
    assert [v.knobs["detail"] for v in get_target("openai:gpt-5.5").variants()] == ["high", "original"]
    assert [v.knobs["detail"] for v in get_target("openai:gpt-5.4").variants()] == ["high"]


def test_gpt_5_6_keeps_the_input_size_and_rejects_over_30000_patches():
    # original/auto keep the size sent: 4096x4096 is billed 128 x 128 = 16,384 patches.
    assert processed_size("openai:gpt-5.6", 4096, 4096) == (4096, 4096)
    assert visual_tokens("openai:gpt-5.6", 4096, 4096) == 128 * 128
    # 6000x6000 = 188 x 188 = 35,344 patches: the provider answers 400, so the limit is enforced
    # before the call (the payload guard shrinks the image under it).
    assert visual_tokens("openai:gpt-5.6", 6000, 6000) == 188 * 188 > 30000
    assert get_target("openai:gpt-5.6").limits.max_patches == 30000
    # high keeps gpt-5.4's budget.
    assert visual_tokens("openai:gpt-5.6:high", 6000, 6000) == 2500


# ---------------------------------------------------------------------------------------------
# Gemini
# ---------------------------------------------------------------------------------------------
def test_gemini_tiles():
    assert visual_tokens("gemini", 384, 384) == 258  # both sides <= 384: one flat tile
    assert visual_tokens("gemini", 1, 384) == 258
    # 385x100: unit = clamp(floor(100/1.5) = 66, 256, 768) = 256 -> 2 x 1 tiles.
    assert visual_tokens("gemini", 385, 100) == 2 * 258
    # 960x540: unit = 360 -> 3 x 2 tiles.
    assert visual_tokens("google:gemini-2.5-pro", 960, 540) == 6 * 258
    # 1700x2200: unit = min(1133, 768) = 768 -> 3 x 3 tiles.
    assert visual_tokens("gemini", 1700, 2200) == 9 * 258


def test_gemini_3_media_resolution_budgets():
    for level, budget in {"low": 280, "medium": 560, "high": 1120, "ultra_high": 2240}.items():
        assert visual_tokens(f"gemini-3:{level}", 100, 100) == budget
        assert visual_tokens(f"gemini-3:{level}", 5000, 3000) == budget
    # The request knob each level is asked for by, and the default (HIGH) as the price without routing.
    assert get_target("gemini-3:low").knobs == {"media_resolution": "MEDIA_RESOLUTION_LOW"}
    assert visual_tokens("gemini-3", 64, 64) == visual_tokens("gemini-3", 1024, 1024) == 1120
    assert [v.tokens(1, 1) for v in get_target("gemini-3").variants()] == [280, 560, 1120]


def test_gemini_3_level_sizes_are_an_estimate_of_the_area_kept():
    # Not documented by Google: each level is taken to keep 768*768/258 px per token (Gemini 2.x
    # tiles), so LOW (280 tokens) keeps about 800x800 of a square page and never upscales.
    assert processed_size("gemini-3:low", 2000, 2000) == (800, 800)
    assert processed_size("gemini-3:low", 500, 500) == (500, 500)


# ---------------------------------------------------------------------------------------------
# Qwen-VL (transformers smart_resize)
# ---------------------------------------------------------------------------------------------
def test_qwen_smart_resize_by_hand():
    # 1700x2200, checkpoint defaults (3136..12845056 px): round(60.71) = 61, round(78.57) = 79 ->
    # 1708 x 2212 = 3.78 Mpx, within budget -> 61 * 79 tokens.
    assert processed_size("qwen2.5-vl", 1700, 2200) == (1708, 2212)
    assert visual_tokens("qwen2.5-vl", 1700, 2200) == 61 * 79
    # 1024x1024: round(36.57) = 37 -> 1036 x 1036.
    assert visual_tokens("qwen2-vl", 1024, 1024) == 37 * 37
    # 30x20: 28 x 28 = 784 px < 3136 -> beta = sqrt(3136 / 600) = 2.286;
    # ceil(30 * 2.286 / 28) = 3 -> 84, ceil(20 * 2.286 / 28) = 2 -> 56.
    assert processed_size("qwen2.5-vl", 30, 20) == (84, 56)
    assert visual_tokens("qwen2.5-vl", 30, 20) == 6


def test_qwen_custom_pixel_budget():
    # The Qwen2VLImageProcessor class default max (28*28*1280): 1708 x 2212 is over it, so
    # beta = sqrt(1700 * 2200 / 1003520) = 1.9305; floor(2200 / 1.9305 / 28) = 40 -> 1120,
    # floor(1700 / 1.9305 / 28) = 31 -> 868.
    model = QwenVLCostModel("qwen-small", max_pixels=28 * 28 * 1280)
    assert model.processed_size(1700, 2200) == (868, 1120)
    assert model.tokens(1700, 2200) == 31 * 40
    with pytest.raises(ValueError):
        QwenVLCostModel("bad", min_pixels=100, max_pixels=10)


def test_qwen3_vl_worked_examples():
    # patch 16 merged 2x2: one token per 32x32 px; 65,536..16,777,216 px.
    assert visual_tokens("qwen3-vl", 1024, 1024) == 32 * 32
    # 100x100 is lifted to the 65,536-px floor: 256x256, 8 x 8 tokens.
    assert processed_size("qwen3-vl", 100, 100) == (256, 256) and visual_tokens("qwen3-vl", 100, 100) == 64
    # 5000x5000 = 25 Mpx is floored under the 16,777,216-px ceiling: 4096x4096, 128 x 128 tokens.
    assert processed_size("qwen3-vl", 5000, 5000) == (4096, 4096) and visual_tokens("qwen3-vl", 5000, 5000) == 16384


def test_qwen3_vl_factor_32():
    # round(1700/32 = 53.1) = 53 -> 1696, round(2200/32 = 68.75) = 69 -> 2208; 3.74 Mpx is within
    # Qwen3-VL's 65536..16777216.
    assert get_target("qwen3-vl").grid == 32
    assert processed_size("qwen3-vl", 1700, 2200) == (1696, 2208)
    assert visual_tokens("qwen3-vl", 1700, 2200) == 53 * 69


def test_qwen_rejects_extreme_aspect_ratio():
    with pytest.raises(ValueError, match="aspect ratio"):
        visual_tokens("qwen2.5-vl", 2010, 10)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010)
    assert visual_tokens("qwen2.5-vl", 2000, 10) > 0  # exactly 200 is allowed


# ---------------------------------------------------------------------------------------------
# InternVL
# ---------------------------------------------------------------------------------------------
def test_internvl_tiles_and_thumbnail():
    assert visual_tokens("internvl3", 448, 448) == 256  # one tile, no thumbnail
    assert visual_tokens("internvl2.5", 896, 448) == 3 * 256  # 2 x 1 tiles + thumbnail
    model = get_target("internvl3")
    # 1700x2200: aspect 0.773; closest grid aspect is 3/4 = 0.75 (2/3 and 1/1 are further; 4x5 is
    # over 12 tiles) -> 12 tiles + thumbnail.
    assert model.tile_grid(1700, 2200) == (3, 4)
    assert model.tokens(1700, 2200) == 13 * 256
    assert model.processed_size(1700, 2200) == (3 * 448, 4 * 448)


def test_internvl_tie_goes_to_the_larger_grid_only_for_a_large_enough_image():
    model = get_target("internvl3")
    # Square: 1x1, 2x2 and 3x3 tie on aspect; a later grid wins if area > half its pixel area.
    # 1000^2 = 1e6 > 0.5 * 448^2 * 9 = 903168 -> 3x3 (+ thumbnail).
    assert model.tile_grid(1000, 1000) == (3, 3)
    assert model.tokens(1000, 1000) == 10 * 256
    # 900^2 = 810000 < 903168 but > 0.5 * 448^2 * 4 = 401408 -> 2x2.
    assert model.tile_grid(900, 900) == (2, 2)
    # 600^2 = 360000 < 401408 -> stays 1x1.
    assert model.tokens(600, 600) == 256


# ---------------------------------------------------------------------------------------------
# Idefics3 / SmolVLM
# ---------------------------------------------------------------------------------------------
def test_smolvlm_upscales_then_splits():
    # The processor rescales the long edge to 2048 even for a small image: 512x512 becomes
    # 2048x2048 -> 4 x 4 tiles of 512 + 1 global tile = 17 tiles of 64 tokens.
    assert visual_tokens("smolvlm", 512, 512) == 17 * 64
    # 1700x2200: height 2048, width int(2048 * 1700 / 2200) = 1582 (even); then each side up to
    # a multiple of 512: 2048 x 2048 -> 17 tiles.
    assert processed_size("smolvlm", 1700, 2200) == (2048, 2048)
    assert visual_tokens("smolvlm", 1700, 2200) == 17 * 64
    # 1024x256: 2048 x 512 -> 4 x 1 tiles + global = 5 tiles.
    assert get_target("smolvlm").tile_grid(1024, 256) == (4, 1)
    assert visual_tokens("smolvlm", 1024, 256) == 5 * 64


def test_smolvlm_without_resize_small_image_is_one_tile():
    model = Idefics3CostModel("smolvlm-noresize", longest_edge=None)
    assert model.tokens(512, 512) == 64
    assert model.tile_grid(512, 512) == (0, 0)
    # 513x512: width up to 1024, then the height is recomputed from the aspect ratio,
    # int(1024 / (513 / 512)) = 1022, and rounded up to 1024: 2 x 2 tiles + global.
    assert model.tile_grid(513, 512) == (2, 2)
    assert model.tokens(513, 512) == 5 * 64


def test_idefics3_8b():
    # 1700x2200: height 1456, width int(1456 * 0.7727) = 1125 -> odd -> 1126; multiples of 364:
    # 1456 x 1456 -> 4 x 4 tiles + global = 17 tiles of 169 tokens.
    assert visual_tokens("idefics3", 1700, 2200) == 17 * 169
    assert get_target("idefics3").max_long_side == 4 * 364


# ---------------------------------------------------------------------------------------------
# LLaVA-OneVision
# ---------------------------------------------------------------------------------------------
def test_llava_onevision_by_hand():
    # 384x384: grid 1x1 -> 27 x 27 unpadded + 27 newlines + 729 base.
    assert visual_tokens("llava-onevision", 384, 384) == 729 + 729 + 27
    # 768x384: best resolution 384x768 (no waste) -> 27 x 54 + 27 newlines + 729.
    assert visual_tokens("llava-onevision", 768, 384) == 729 + 27 * 54 + 27
    # 2304x2304: 6x6 grid -> 162 x 162; ratio sqrt(162^2 / (9 * 27^2)) = 2.0 > 1.1 -> 81 x 81.
    assert visual_tokens("llava-onevision", 2304, 2304) == 729 + 81 * 81 + 81
    # 1700x2200: best resolution 2304 (h) x 1920 (w) (all pixels kept, least waste) -> 162 x 135;
    # unpad: int(1700 * 162 / 2200) = 125 -> pad 5 per side -> 162 x 125; ratio 1.757 ->
    # 92 x 71 features + 92 newlines.
    assert visual_tokens("llava-onevision", 1700, 2200) == 729 + 92 * 71 + 92
    assert processed_size("llava-onevision", 1700, 2200) == (1781, 2304)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
REQUIRED_NAMES = [
    "openai:gpt-4o", "openai:gpt-4o:low", "openai:gpt-4o-mini", "openai:gpt-4.1", "openai:gpt-4.5",
    "openai:gpt-5", "openai:o1", "openai:o3", "openai:computer-use-preview", "openai:gpt-4.1-mini",
    "openai:gpt-4.1-nano", "openai:gpt-5-mini", "openai:gpt-5-nano", "openai:o4-mini",
    "anthropic:claude-sonnet-4", "anthropic:claude-opus-4", "anthropic:claude-haiku-4",
    "anthropic:claude-hires", "gemini", "google:gemini-2.5-pro", "gemini-3:low", "gemini-3:medium",
    "gemini-3:high", "gemini-3:ultra_high", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "internvl2.5",
    "internvl3", "smolvlm", "idefics3", "llava-onevision",
]  # fmt: skip


def test_every_required_name_is_registered():
    names = list_targets()
    assert names == sorted(names)
    for name in REQUIRED_NAMES:
        assert name in names
        assert isinstance(get_target(name), CostModel)


def test_lookup_is_case_insensitive_and_aliases_share_the_model():
    assert get_target("OpenAI:GPT-4o") is get_target("openai:gpt-4o")
    assert get_target("  Qwen2.5-VL ") is get_target("qwen2.5-vl")
    assert get_target("anthropic:claude-opus-4") is get_target("anthropic:claude-sonnet-4")
    assert get_target("anthropic:claude-hires") is not get_target("anthropic:claude")
    model = get_target("gemini")
    assert get_target(model) is model  # a model passes through


def test_unknown_target_suggests_close_names_instead_of_listing_all():
    with pytest.raises(UnknownTargetError) as info:
        get_target("openai:gpt-4p")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "did you mean 'openai:gpt-4o'" in message
    assert len(message) < 300 and "anthropic:claude-3-haiku" not in message
    with pytest.raises(UnknownTargetError, match="list_targets"):
        visual_tokens("nope", 10, 10)


def test_bare_names_and_snapshots_resolve_without_warning(recwarn):
    assert get_target("gpt-4o") is get_target("openai:gpt-4o")
    assert get_target("claude-sonnet-4") is get_target("anthropic:claude-sonnet-4")
    assert get_target("claude-sonnet-4-20250514") is get_target("anthropic:claude")
    assert get_target("gpt-4o-2024-08-06") is get_target("openai:gpt-4o")
    assert get_target("gpt-4o:low") is get_target("openai:gpt-4o:low")
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize(
    "name,family",
    [
        ("claude-opus-4-9", "anthropic:claude-hires"),
        ("anthropic:claude-opus-5", "anthropic:claude-hires"),
        ("claude-sonnet-4-8", "anthropic:claude"),
        ("openai:gpt-5.9", "openai:gpt-5.6"),
        ("gpt-5.2", "openai:gpt-5"),
        ("gemini-3.7-flash", "gemini-3"),
        ("qwen3-vl-8b-instruct", "qwen3-vl"),
        ("internvl3-8b", "internvl3"),
    ],
)
def test_unknown_models_of_a_known_family_get_its_rule_and_a_warning(name, family):
    with pytest.warns(UserWarning, match="family"):
        model = get_target(name)
    assert model is get_target(family)


def test_register_custom_qwen(private_registry):
    custom = QwenVLCostModel("my-qwen", min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28)
    register_target("my-qwen", custom, aliases=["My-Qwen-Small"])
    assert get_target("my-qwen-small") is custom
    assert "my-qwen" in list_targets()
    # a tiny image is lifted to min_pixels: 256 tokens at least
    assert visual_tokens("my-qwen", 100, 100) >= 256
    with pytest.raises(ValueError, match="already registered"):
        register_target("MY-QWEN", custom)
    other = QwenVLCostModel("my-qwen-2")
    register_target("my-qwen", other, replace=True)
    assert get_target("my-qwen") is other
    with pytest.raises(TypeError):
        register_target("x", object())  # type: ignore[arg-type]


def test_unregistered_names_do_not_leak():
    assert "my-qwen" not in list_targets()


@pytest.mark.parametrize("bad", [0, -3, 1.5, "100", None, True])
def test_sizes_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
        visual_tokens("openai:gpt-4o", bad, 100)
    with pytest.raises(ValueError, match="height"):
        processed_size("anthropic:claude", 100, bad)
    for model in MODELS:
        with pytest.raises(ValueError):
            model.tokens(bad, 10)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------
sizes = st.integers(min_value=1, max_value=9000)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS), sizes, sizes)
def test_tokens_and_processed_size_are_well_formed(model, width, height):
    if max(width, height) / min(width, height) > 150:
        return  # Qwen refuses these; checked above
    n = model.tokens(width, height)
    assert isinstance(n, int) and n > 0
    pw, ph = model.processed_size(width, height)
    assert isinstance(pw, int) and isinstance(ph, int) and pw > 0 and ph > 0
    if model.max_long_side is not None and model.grid is not None:
        assert max(pw, ph) <= model.max_long_side


MONOTONE = [m for m in MODELS if m.monotone]
NOT_MONOTONE = [m for m in MODELS if not m.monotone]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(MONOTONE),
    st.integers(1, 60),
    st.integers(1, 60),
    st.integers(1, 150),
    st.integers(0, 150),
)
def test_monotone_models_never_charge_less_for_a_larger_image(model, p, q, k, extra):
    # Exact aspect ratio: (k*p, k*q) and ((k+extra)*p, (k+extra)*q).
    if max(p, q) / min(p, q) > 100:
        return
    small = model.tokens(k * p, k * q)
    large = model.tokens((k + extra) * p, (k + extra) * q)
    assert large >= small


# Pinned counterexamples (same aspect ratio, larger image, fewer tokens) prove that each model
# flagged non-monotone really is: the flag is a fact about the provider's rule, not a shortcut.
COUNTEREXAMPLES = {
    "openai:gpt-4.1-mini": ((362, 3982), (646, 7106)),  # raw 12 x 125 = 1500 patches vs scaled 1331
    "qwen2.5-vl": ((3945, 3945), (4335, 4335)),  # 128 x 128 rounded vs 127 x 127 floored
    "qwen3-vl": ((70, 980), (77, 1078)),  # lifted to min_pixels (3 x 30) vs just above it (2 x 34)
    "gemini": ((484, 5808), (582, 6984)),  # crop unit follows the short side
    "llava-onevision": ((1332, 864), (7733, 5016)),  # 1.1x grid downscale
}


@pytest.mark.parametrize("name", sorted(COUNTEREXAMPLES))
def test_non_monotone_flags_are_justified(name):
    (w1, h1), (w2, h2) = COUNTEREXAMPLES[name]
    model = get_target(name)
    assert not model.monotone
    assert w1 * h2 == w2 * h1 and w2 > w1  # same aspect ratio, larger
    assert model.tokens(w2, h2) < model.tokens(w1, h1)


def test_every_non_monotone_class_has_a_counterexample():
    def rule(m):  # a knob family counts by its cap's rule
        return m.level(m.cap) if isinstance(m, KnobFamily) else m

    covered = tuple({type(rule(get_target(name))) for name in COUNTEREXAMPLES})
    assert all(isinstance(rule(m), covered) for m in NOT_MONOTONE)


# ---------------------------------------------------------------------------------------------
# cross-check against the real transformers processors: always in CI (CI=true; about 25 s of CPU,
# most of it importing transformers), opt-in elsewhere
# ---------------------------------------------------------------------------------------------
crosscheck = pytest.mark.skipif(
    not (__import__("os").environ.get("CI") or __import__("os").environ.get("CARES_TRANSFORMERS_CROSSCHECK")),
    reason="runs in CI; set CARES_TRANSFORMERS_CROSSCHECK=1 to compare with the installed transformers here",
)


@crosscheck
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size", "tile"),
    [("smolvlm", 2048, 512), ("smolvlm-2.2b", 1536, 384), ("idefics3", 1456, 364)],
)
def test_idefics3_matches_transformers(name, size, tile):
    pil = pytest.importorskip("transformers.models.idefics3.image_processing_pil_idefics3")
    from PIL import Image

    processor = pil.Idefics3ImageProcessorPil(size={"longest_edge": size}, max_image_size={"longest_edge": tile})
    model = get_target(name)
    for width, height in [(10, 10), (512, 512), (513, 512), (1700, 2200), (3000, 200), (37, 1999), (2500, 2499)]:
        out = processor(Image.new("RGB", (width, height)), return_row_col_info=True, do_pad=False)
        assert len(out["pixel_values"][0]) * model.tokens_per_tile == model.tokens(width, height)
        assert (out["cols"][0][0], out["rows"][0][0]) == model.tile_grid(width, height)


@crosscheck
@pytest.mark.slow
def test_llava_onevision_matches_transformers():
    import types

    proc_mod = pytest.importorskip("transformers.models.llava_onevision.processing_llava_onevision")
    utils = pytest.importorskip("transformers.image_processing_utils")
    cls = proc_mod.LlavaOnevisionProcessor
    model = get_target("llava-onevision")
    fake = types.SimpleNamespace(
        image_processor=types.SimpleNamespace(image_grid_pinpoints=[list(p) for p in model.pinpoints]),
        num_image_tokens=729,
        vision_aspect_ratio="anyres_max_9",
    )
    fake._get_unpadded_features = types.MethodType(cls._get_unpadded_features, fake)
    for width, height in [(384, 384), (1700, 2200), (1332, 864), (7733, 5016), (100, 3000), (5000, 37)]:
        assert cls._get_number_of_features(fake, height, width, 384, 384) == model.tokens(width, height)
        best = utils.select_best_resolution((height, width), model.pinpoints)
        assert tuple(best) in model.pinpoints
