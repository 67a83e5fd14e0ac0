"""The core's cached routing of a conversation's images (core/conversation.py)."""

from __future__ import annotations

import pytest

from cares_integrations import FixedRouter
from cares_integrations.core.conversation import DecisionCache, aroute_images, route_images, summarize
from cares_integrations.core.model_target import target_for_model_name
from cares_integrations.core.policy import ResolutionPolicy
from langchain_helpers import PAGE_B64, PAGE_URL, CountingRouter


def test_repeats_are_answered_from_the_cache_and_misses_batched():
    router, cache = CountingRouter(free_detail=False), DecisionCache(8)
    first = route_images(router, [PAGE_URL, PAGE_B64], "total?", target="openai:gpt-4o", cache=cache)
    assert router.calls == 1 and [r.cached for r in first] == [False, False]
    again = route_images(router, [PAGE_URL, PAGE_B64, PAGE_URL], ["total?", "total?", "signer?"],
                         target="openai:gpt-4o", cache=cache)
    assert router.calls == 2 and router.queries[-1] == ["signer?"]  # only the new question is routed
    assert [r.cached for r in again] == [True, True, False]
    assert again[0].output == first[0].output and again[0].decision == first[0].decision
    assert summarize(again)["cache_hits"] == 2
    # Another target or policy is another key.
    route_images(router, [PAGE_URL], "total?", target="anthropic:claude-sonnet-4-5", cache=cache)
    assert router.calls == 3
    capped = router.with_policy(ResolutionPolicy(max_long_side=64))  # a copy: its own counter, from 3
    route_images(capped, [PAGE_URL], "total?", target="openai:gpt-4o", cache=cache)
    assert capped.calls == 4


async def test_async_uses_the_same_cache():
    router, cache = CountingRouter(free_detail=False), DecisionCache(8)
    a = await aroute_images(router, [PAGE_URL], "q", cache=cache)
    b = route_images(router, [PAGE_URL], "q", cache=cache)
    assert router.calls == 1 and b[0].cached and b[0].output == a[0].output


def test_bounded_and_paths_never_cached(tmp_path):
    cache = DecisionCache(1)
    router = FixedRouter(120)
    route_images(router, [PAGE_URL], "a", cache=cache)
    route_images(router, [PAGE_URL], "b", cache=cache)
    assert len(cache) == 1
    path = tmp_path / "p.png"
    assert DecisionCache.key(router, str(path), "a", None, None, 90) is None
    assert DecisionCache.key(router, "file://" + "x" * 300, "a", None, None, 90) is None
    with pytest.raises(ValueError):
        DecisionCache(0)


@pytest.mark.parametrize("provider,name,target", [
    ("openai", "gpt-4o-2024-08-06", "openai:gpt-4o"),
    ("anthropic", "claude-sonnet-4-5-20250929", "anthropic:claude-sonnet-4-5"),
    ("google", "models/gemini-2.5-flash", "google:gemini-2.5-flash"),
    ("openai", "not-a-model", None),
    (None, "gpt-4o", None),
])
def test_target_from_model_name(provider, name, target):
    assert target_for_model_name(provider, name) == target


def test_partial_results_merge_early_and_routed_in_order():
    """The one "record early failures, merge later" helper (glue plans, the cache, decoding)."""
    from cares_integrations.core.partial import PartialResults

    results = PartialResults(5, {1: "cached"})
    results.settle(3, "failed")
    assert results.todo == [0, 2, 4]
    assert results.merge(["a", "b", "c"]) == ["a", "cached", "b", "failed", "c"]
    with pytest.raises(ValueError, match="expected 3 routed results, got 2"):
        results.merge(["a", "b"])


def test_a_long_path_is_not_keyed_as_content(tmp_path):
    """A string of 256+ characters used to be taken as base64 for the cache key: a long path
    whose file changed between turns was answered with the old file's decision and bytes."""
    from PIL import Image

    from helpers import encode

    folder = tmp_path.joinpath(*["d" * 60] * 4)
    folder.mkdir(parents=True)
    path = folder / "page.png"
    assert len(str(path)) >= 256
    router, cache = CountingRouter(long_side=100, free_detail=False), DecisionCache(8)
    path.write_bytes(encode(Image.new("RGB", (400, 300), "white")))
    first = route_images(router, [str(path)], "q", cache=cache)[0]
    path.write_bytes(encode(Image.new("RGB", (300, 600), "white")))  # another page, same path
    second = route_images(router, [str(path)], "q", cache=cache)[0]
    assert router.calls == 2 and not second.cached
    assert (first.decision.original_size, second.decision.original_size) == ((400, 300), (300, 600))
    # Long text is not an image either; base64 of an image is keyed whatever its length.
    assert DecisionCache.key(router, "What is the total? " * 20, "q", None, None, 90) is None
    assert DecisionCache.key(router, PAGE_B64, "q", None, None, 90) is not None


def test_the_one_lru_evicts_the_least_recently_used():
    """The decision cache, the gate's vision cache and the OCR page caches share core.lru."""
    from PIL import Image

    from cares_integrations.core.lru import LRUCache, pixel_digest

    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, 1, 3)
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)
    off = LRUCache(0)
    off.put("a", 1)
    assert off.get("a") is None and len(off) == 0
    white, black = Image.new("L", (4, 4), 255), Image.new("L", (4, 4), 0)
    assert pixel_digest(white) == pixel_digest(white.copy()) != pixel_digest(black)
    assert pixel_digest(Image.new("L", (2, 8), 255)) != pixel_digest(white)  # same bytes, other size


def test_a_decision_for_a_small_request_is_not_reused_where_the_side_limit_is_tighter():
    import base64

    from helpers import encode, render_page

    wide = base64.b64encode(encode(render_page(2400, 1200, text_px=20, lines=10), "PNG")).decode()
    cache = DecisionCache(8)
    router = FixedRouter(2576)
    alone = route_images(router, [wide], "q", target="anthropic:claude-opus-4-7", cache=cache)[0]
    many = route_images(router, [wide], "q", target="anthropic:claude-opus-4-7", cache=cache, images_per_request=21)[0]
    again = route_images(router, [wide], "q", target="anthropic:claude-opus-4-7", cache=cache, images_per_request=21)[0]
    assert tuple(alone.decision.send_size) == (2400, 1200) and not many.cached
    assert tuple(many.decision.send_size) == (2000, 1000) and "more than 20 images" in many.decision.payload
    assert again.cached and tuple(again.decision.send_size) == (2000, 1000)
