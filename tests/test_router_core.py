"""The Router base, the resolution policy, and route_and_resize, with simple real routers."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from cares_integrations import (
    FixedRouter,
    ImageDecodeError,
    Prediction,
    ResolutionPolicy,
    RouteDecision,
    Router,
    aroute_and_resize,
    load_router,
    route_and_resize,
)


class ProbRouter(Router):
    """Returns fixed class probabilities and counts how often it is asked to predict."""

    name = "prob"

    def __init__(self, probs, **options):
        super().__init__(**options)
        self.probs = probs
        self.calls = 0
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def _predict(self, images, queries):
        with self._lock:
            self.calls += 1
            self.batch_sizes.append(len(images))
        return [Prediction(probabilities=self.probs) for _ in images]


# -- policy --------------------------------------------------------------------------------------


def test_continuous_is_the_expectation_and_discrete_the_argmax():
    probs = [0.2, 0.5, 0.3]
    cont = ResolutionPolicy()
    assert cont.raw_long_side(probs) == pytest.approx(0.2 * 384 + 0.5 * 768 + 0.3 * 1024)
    assert ResolutionPolicy(mode="discrete").raw_long_side(probs) == 768
    assert cont.long_side(probs, 5000) == 768  # 76.8 + 384 + 307.2 = 768.0, rounded up
    assert cont.long_side([0.25, 0.5, 0.25], 5000) == 736  # 96 + 384 + 256


@given(st.lists(st.floats(0, 1), min_size=3, max_size=3).filter(lambda p: sum(p) > 1e-6))
def test_continuous_lies_between_the_bins(probs):
    value = ResolutionPolicy().raw_long_side(probs)
    assert 384 - 1e-6 <= value <= 1024 + 1e-6


def test_clamps_and_image_cap():
    policy = ResolutionPolicy(min_long_side=500, max_long_side=900)
    assert policy.long_side([1, 0, 0], 5000) == 500
    assert policy.long_side([0, 0, 1], 5000) == 900
    assert policy.long_side([0, 0, 1], 600) == 600  # never above the image's own long side


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"bins": ()}, "at least one"),
        ({"bins": (768, 384)}, "strictly increasing"),
        ({"bins": (0, 384)}, "positive"),
        ({"min_long_side": 900, "max_long_side": 500}, "above max_long_side"),
        ({"mode": "median"}, "continuous"),
    ],
)
def test_policy_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResolutionPolicy(**kwargs)


def test_policy_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="3 bins"):
        ResolutionPolicy().raw_long_side([0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        ResolutionPolicy().raw_long_side([float("nan"), 0.5, 0.5])


# -- router base ---------------------------------------------------------------------------------


def test_route_decision_fields(page_png):
    router = ProbRouter([0, 1, 0])
    decision = router.route(page_png, "what is the total?")
    assert isinstance(decision, RouteDecision)
    assert decision.router == "prob" and decision.long_side == 768
    assert decision.original_size == (850, 1100)
    assert decision.send_size == (593, 768)
    assert decision.probabilities == [0, 1, 0] and decision.bins == [384, 768, 1024]
    assert decision.mode == "continuous" and decision.target is None and decision.tokens_before is None


def test_long_side_never_above_image(page_image):
    small = page_image.resize((200, 259))
    decision = ProbRouter([0, 0, 1]).route(small, "q")
    assert decision.long_side == 259 and decision.send_size == (200, 259) and not decision.resized


def test_route_batch_one_predict_call_and_matches_route(page_png, page_jpeg, page_image):
    router = ProbRouter([0.3, 0.3, 0.4])
    batch = router.route_batch([page_png, page_jpeg, page_image], ["a", "b", "c"])
    assert router.calls == 1 and router.batch_sizes == [3]
    singles = [router.route(x, q) for x, q in zip([page_png, page_jpeg, page_image], "abc")]
    assert batch == singles


def test_route_batch_argument_errors(page_png):
    router = FixedRouter(512)
    with pytest.raises(ValueError, match="2 images but 1 queries"):
        router.route_batch([page_png, page_png], ["only one"])
    with pytest.raises(TypeError, match="sequence of images"):
        router.route_batch(page_png, "q")
    with pytest.raises(TypeError, match="query 0 must be a string"):
        router.route_batch([page_png], [None])
    assert router.route_batch([], []) == []


def test_router_with_target_counts_tokens(page_png):
    pytest.importorskip("cares_integrations.core.tokens")
    from cares_integrations.core.tokens import visual_tokens

    router = FixedRouter(768, target="openai:gpt-4o")
    d = router.route(page_png, "q")
    assert d.target == "openai:gpt-4o"
    assert d.tokens_before == visual_tokens("openai:gpt-4o", 850, 1100)
    assert d.tokens_after == visual_tokens("openai:gpt-4o", *d.send_size)
    assert d.tokens_after <= d.tokens_before
    assert router.route(page_png, "q", target=None).tokens_before is None  # per-call override


def test_unknown_target_fails_early():
    pytest.importorskip("cares_integrations.core.tokens")
    from cares_integrations import UnknownTargetError

    with pytest.raises(UnknownTargetError, match="list_targets"):
        FixedRouter(768, target="no-such-model")
    with pytest.raises(UnknownTargetError, match="did you mean 'openai:gpt-4o'"):
        FixedRouter(768, target="openai:gpt4o")


def test_fixed_router_and_load_router_fixed(page_png):
    assert load_router("fixed:384").route(page_png, "q").long_side == 384
    with pytest.raises(ValueError, match="pixel size"):
        load_router("fixed:big")
    with pytest.raises(ValueError, match="positive"):
        FixedRouter(0)
    router = FixedRouter(300)
    assert load_router(router) is router


def test_same_input_same_decision(page_png):
    router = ProbRouter([0.1, 0.6, 0.3])
    assert router.route(page_png, "q") == router.route(page_png, "q")


async def test_aroute_does_not_block_the_event_loop(page_png):
    gate = threading.Event()

    class SlowRouter(FixedRouter):
        def _predict(self, images, queries):
            gate.wait(5)
            return super()._predict(images, queries)

    router = SlowRouter(384)
    task = asyncio.create_task(router.aroute(page_png, "q"))
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting in its thread, and this coroutine keeps running
    gate.set()
    decision = await task
    assert decision.long_side == 384


# -- route_and_resize ----------------------------------------------------------------------------


def test_route_and_resize_one_call_outputs_in_input_form(page_png, page_b64, page_data_url, page_image):
    router = ProbRouter([1, 0, 0])
    results = route_and_resize(router, [page_png, page_b64, page_data_url, page_image], "q")
    assert router.calls == 1
    assert [type(r.output) for r in results] == [bytes, str, str, Image.Image]
    assert Image.open(io.BytesIO(results[0].output)).size == (297, 384)
    assert results[2].output.startswith("data:image/png;base64,")
    assert all(r.changed and r.mime_type in ("image/png", None) for r in results)
    assert results[3].output.size == (297, 384)


def test_route_and_resize_passthrough_and_raise(page_png):
    bad = b"definitely not an image"
    router = FixedRouter(384)
    with pytest.raises(ImageDecodeError, match="not a recognisable image"):
        route_and_resize(router, [page_png, bad], "q")
    results = route_and_resize(router, [page_png, bad, "https://example.com/x.png"], "q", on_error="passthrough")
    assert results[0].changed
    assert results[1].output is bad and not results[1].changed and "not a recognisable" in results[1].error
    assert results[2].output == "https://example.com/x.png" and "remote fetching is off" in results[2].skipped_reason
    meta = results[1].as_metadata()
    assert meta["changed"] is False and "error" in meta
    with pytest.raises(ValueError, match="on_error"):
        route_and_resize(router, [page_png], "q", on_error="ignore")


def test_remote_url_passes_through_even_in_raise_mode():
    results = route_and_resize(FixedRouter(384), ["https://example.com/x.png"], "q", on_error="raise")
    assert results[0].output == "https://example.com/x.png" and results[0].skipped_reason


async def test_aroute_and_resize_matches_sync(page_png, page_jpeg):
    router = ProbRouter([0.2, 0.2, 0.6])
    sync = route_and_resize(router, [page_png, page_jpeg], ["a", "b"])
    async_ = await aroute_and_resize(router, [page_png, page_jpeg], ["a", "b"])
    assert [r.decision for r in sync] == [r.decision for r in async_]
    assert [r.output for r in sync] == [r.output for r in async_]


def test_load_router_names(page_png):
    from cares_integrations import LearnedDefaultRouter, TextScaleRouter

    assert isinstance(load_router(), TextScaleRouter)  # the default until a learned one beats it
    assert isinstance(load_router("text-scale"), TextScaleRouter)
    learned = load_router("learned-default", target="qwen2.5-vl")
    assert isinstance(learned, LearnedDefaultRouter)
    decision = learned.route(page_png, "What is the title?")
    assert decision.probabilities is not None and len(decision.probabilities) == len(decision.bins)
    assert decision.tokens_after <= decision.tokens_before


# -- public seams: the "no target given" sentinel, predict, with_policy, the async hook ----------


def test_router_target_sentinel_means_the_routers_own_target(page_png):
    import copy
    import pickle

    from cares_integrations import ROUTER_TARGET

    router = FixedRouter(384, target="openai:gpt-4o")
    assert router.route(page_png, "q", target=ROUTER_TARGET).target == "openai:gpt-4o"
    assert router.route(page_png, "q").target == "openai:gpt-4o"
    assert router.route(page_png, "q", target=None).target is None  # None: no provider sizing
    assert router.resolve_target(ROUTER_TARGET) == "openai:gpt-4o" and router.resolve_target("qwen2.5-vl") == "qwen2.5-vl"
    assert repr(ROUTER_TARGET) == "ROUTER_TARGET"
    assert pickle.loads(pickle.dumps(ROUTER_TARGET)) is ROUTER_TARGET and copy.deepcopy(ROUTER_TARGET) is ROUTER_TARGET


def test_predict_then_decide_per_target_equals_routing_per_target(page_png):
    from cares_integrations import load_image

    router = ProbRouter([0.2, 0.5, 0.3])
    decoded = load_image(page_png)
    [prediction] = router.predict([decoded], "q")
    assert router.calls == 1 and prediction.probabilities == [0.2, 0.5, 0.3]
    for target in ("openai:gpt-4o", "qwen2.5-vl", None):
        assert router.decide(decoded, prediction, target=target) == router.route(page_png, "q", target=target)
    assert router.predict([], []) == []


def test_with_policy_is_a_copy_sharing_the_model(page_png):
    router = ProbRouter([0.0, 0.0, 1.0], target="qwen2.5-vl")
    capped = router.with_policy(ResolutionPolicy(max_long_side=500))
    assert capped is not router and router.policy.max_long_side is None
    assert capped.probs is router.probs and capped.target == "qwen2.5-vl"
    assert capped.route(page_png, "q").long_side == 500 and router.route(page_png, "q").long_side == 1024
    assert router.with_policy(None) is router and router.with_policy(router.policy) is router
    with pytest.raises(TypeError, match="ResolutionPolicy"):
        router.with_policy({"max_long_side": 5})


def test_with_policy_refuses_bins_a_learned_router_cannot_predict():
    learned = load_router("learned-default")
    with pytest.raises(ValueError, match="bins"):
        learned.with_policy(ResolutionPolicy(bins=(256, 512)))
    other = "continuous" if learned.policy.mode == "discrete" else "discrete"
    switched = learned.with_policy(ResolutionPolicy(bins=learned.policy.bins, mode=other))
    assert switched.policy.mode == other and learned.policy.mode != other


async def test_the_async_batch_path_goes_through_the_apredict_hook(page_png, page_jpeg):
    class Gathering(ProbRouter):
        async_batches: list[int] = []

        async def _apredict(self, images, queries):
            self.async_batches.append(len(images))
            return self._predict(images, queries)

    router = Gathering([0.0, 1.0, 0.0])
    got = await aroute_and_resize(router, [page_png, page_jpeg, b"junk"], "q", on_error="passthrough")
    assert router.async_batches == [2]  # one hook call for the two readable pages
    assert [r.decision.long_side for r in got[:2]] == [768, 768] and got[2].error
    assert await router.aroute_batch([], []) == []


# -- logging ---------------------------------------------------------------------------------------


def test_decisions_log_at_debug_and_passthroughs_at_warning(page_png, caplog):
    import logging

    with caplog.at_level(logging.DEBUG, logger="cares_integrations"):
        results = route_and_resize(FixedRouter(384), [page_png, b"not an image", "https://example.com/p.png"], "q",
                                   on_error="passthrough")
    assert results[0].changed
    by_level = {(r.levelname, r.name) for r in caplog.records}
    assert ("DEBUG", "cares_integrations.core.router") in by_level
    assert any("fixed-384" in r.getMessage() and "297x384" in r.getMessage() for r in caplog.records if r.levelname == "DEBUG")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("passed through unchanged" in m and "ImageDecodeError" in m for m in warnings)
    assert any("left as is" in m and "remote fetching is off" in m for m in warnings)


def test_the_logger_is_silent_by_default(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    code = ("from cares_integrations import FixedRouter, route_and_resize\n"
            "r = route_and_resize(FixedRouter(64), [b'junk'], 'q', on_error='passthrough')\n"
            "assert r[0].error\n")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stderr == "" and out.stdout == ""
