"""The CARES gate router on a tiny random Idefics3 built offline (see tests/tiny_models.py)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
from pathlib import Path

import pytest
import torch
from helpers import render_page
from tiny_models import tiny_idefics3
from transformers import AutoModelForImageTextToText, AutoProcessor

from cares_integrations import load_image
from cares_integrations.routers.gate.device import pick_device, pick_dtype
from cares_integrations.core.errors import CheckpointError, ImageDecodeError
from cares_integrations.routers.gate import (
    CONFIG_NAME,
    CaresGateRouter,
    GateConfig,
    GateHead,
    ProxyBackbone,
    load_gate,
    save_gate,
)
from cares_integrations.routers.registry import load_router
from cares_integrations.core.policy import ResolutionPolicy
from cares_integrations.core.view import view_image

QUESTIONS = ["What is the total revenue?", "Title?", "Which line mentions item 24 and what is its value in EUR?"]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny Idefics3 folder (built once per session)."""
    return tiny_idefics3()


@pytest.fixture(scope="session")
def pages():
    """Three pages of different sizes and text sizes."""
    return [render_page(), render_page(600, 400, text_px=20), render_page(300, 900, text_px=10)]


def _random_head(in_dim: int, seed: int = 0, hidden: int = 16) -> GateHead:
    torch.manual_seed(seed)
    head = GateHead(in_dim, hidden, 3)
    with torch.no_grad():  # spread the logits so decisions differ between inputs
        head[3].weight.mul_(20)
    return head.eval()


@pytest.fixture(scope="session")
def gate_dir(tiny_model, tmp_path_factory) -> Path:
    """A gate in our format over the tiny model: middle layer, mean pooling, tile preprocessing."""
    backbone = ProxyBackbone.from_pretrained(str(tiny_model), device="cpu")
    config = backbone.gate_config(hidden_dim=16, temperature=1.5)
    folder = tmp_path_factory.mktemp("gate")
    save_gate(folder, config, _random_head(config.in_dim))
    return folder


@pytest.fixture(scope="session")
def router(gate_dir) -> CaresGateRouter:
    """The saved gate, loaded through the public ``load_router``."""
    return load_router(str(gate_dir), device="cpu")


@pytest.fixture(scope="session")
def full_model(tiny_model):
    """The untruncated tiny model and its processor, for reference outputs."""
    return AutoModelForImageTextToText.from_pretrained(tiny_model).eval(), AutoProcessor.from_pretrained(tiny_model)


# -- loading and routing ------------------------------------------------------------------------------
def test_load_router_dispatches_to_gate(router, gate_dir, page_png):
    assert isinstance(router, CaresGateRouter)
    saved = json.loads((gate_dir / CONFIG_NAME).read_text())
    assert saved["feature_layers"] == [2] and saved["pooling"] == "mean" and saved["preprocessing"] == "tile"
    decision = router.route(page_png, "What is the total?", target=None)
    assert decision.router == "cares-gate"
    assert decision.bins == [384, 768, 1024]
    logits = router.logits([load_image(page_png)], ["What is the total?"])[0]
    expected = torch.softmax(logits / router.config.temperature, dim=-1).tolist()
    assert decision.probabilities == pytest.approx(expected, abs=1e-6)  # calibrated with the saved T
    assert decision.mode == "continuous"
    assert decision.raw_long_side == pytest.approx(sum(p * b for p, b in zip(expected, decision.bins)), abs=1e-3)


def test_route_and_route_batch_agree(router, pages):
    batch = router.route_batch(pages, QUESTIONS)
    single = [router.route(p, q) for p, q in zip(pages, QUESTIONS)]
    for b, s in zip(batch, single):
        assert b.long_side == s.long_side
        assert b.probabilities == pytest.approx(s.probabilities, abs=1e-5)
    # the inputs really lead to different outputs (the test would be vacuous otherwise)
    assert len({round(b.probabilities[0], 4) for b in batch}) > 1


def test_same_input_same_decision(router, page_image):
    first = router.route(page_image, "How many lines?")
    router.backbone.cache.clear()
    assert router.route(page_image, "How many lines?") == first
    assert router.route(page_image, "How many lines?") == first


def test_round_trip_gives_identical_decisions(router, tmp_path, pages):
    router.save_pretrained(tmp_path / "copy")
    again = load_gate(tmp_path / "copy", device="cpu")
    assert again.config == router.config
    assert again.route_batch(pages, QUESTIONS) == router.route_batch(pages, QUESTIONS)


def test_temperature_calibration(router, pages):
    logits = router.logits(pages, QUESTIONS)
    expected = torch.softmax(logits / router.config.temperature, dim=-1)
    probs = torch.tensor([d.probabilities for d in router.route_batch(pages, QUESTIONS)], dtype=expected.dtype)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert not torch.allclose(probs, torch.softmax(logits, dim=-1), atol=1e-4)  # T really applied


def test_continuous_and_discrete_policies(gate_dir, pages):
    cont = load_gate(gate_dir, device="cpu", cache_size=0)
    disc = load_gate(gate_dir, device="cpu", cache_size=0, policy=ResolutionPolicy(mode="discrete"))
    for page, q in zip(pages, QUESTIONS):
        c, d = cont.route(page, q), disc.route(page, q)
        assert c.probabilities == pytest.approx(d.probabilities)
        p = c.probabilities
        assert c.raw_long_side == pytest.approx(sum(pi * r for pi, r in zip(p, c.bins)))
        assert d.raw_long_side == c.bins[max(range(3), key=p.__getitem__)]
        assert d.long_side == min(int(d.raw_long_side), max(page.size))  # never upscales


def test_policy_bins_must_match_classes(gate_dir):
    with pytest.raises(ValueError, match="bins"):
        load_gate(gate_dir, device="cpu", policy=ResolutionPolicy(bins=(384, 1024)))


# -- features ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("preprocessing", ["tile", "upstream"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_features_match_the_untruncated_model(tiny_model, full_model, pages, preprocessing, pooling):
    """Spliced cached features + truncated text model == the full model run on processor outputs."""
    model, processor = full_model
    backbone = ProxyBackbone.from_pretrained(
        str(tiny_model), feature_layers=[1, 2], pooling=pooling, preprocessing=preprocessing, device="cpu"
    )
    got = backbone.extract(pages, QUESTIONS)
    for i, (page, q) in enumerate(zip(pages, QUESTIONS)):  # unpadded reference, one input at a time
        page = view_image(page, backbone.view_spec)  # the backbone reads its view (one tile) of a page
        enc = processor(text=[backbone.prompt(q)], images=[[page]], return_tensors="pt", **backbone.image_kwargs())
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        ids = enc["input_ids"][0]
        n_tiles = int((ids == processor.fake_image_token_id).sum()) - 1
        assert n_tiles == (1 if preprocessing == "tile" else n_tiles) and n_tiles >= 1
        for layer in (1, 2):
            h = hidden[layer][0]
            ref = h[-1] if pooling == "last" else h[ids != model.config.image_token_id].mean(0)
            assert torch.allclose(got[layer][i], ref, atol=1e-5), (layer, i)
    if preprocessing == "upstream":  # the research pipeline splits an 850x1100 page into tiles
        assert (processor(text=[backbone.prompt("q")], images=[[pages[0]]])["input_ids"][0].count(
            processor.fake_image_token_id) > 2)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_generic_path_matches_the_spliced_one(tiny_model, pages, pooling):
    """Architectures without the splice path run processor + model; same features for Idefics3."""
    backbone = ProxyBackbone.from_pretrained(str(tiny_model), pooling=pooling, device="cpu")
    spliced = backbone.features(pages, QUESTIONS)
    backbone.splice = False
    generic = backbone.features(pages, QUESTIONS)
    assert torch.allclose(spliced, generic, atol=1e-5)


def test_truncation_removes_layers(tiny_model, full_model):
    model, _ = full_model
    backbone = ProxyBackbone.from_pretrained(str(tiny_model), device="cpu")
    assert backbone.num_base_layers == 4 and backbone.feature_layers == (2,)
    assert len(backbone.text_model.layers) == 2 and backbone.text_model.config.num_hidden_layers == 2
    names = {n for n, _ in backbone.model.named_parameters()}
    assert not any(n.startswith(("text_model.layers.2.", "text_model.layers.3.", "text_model.norm")) for n in names)
    assert not hasattr(backbone.model, "lm_head")
    n_full = sum(p.numel() for p in model.model.parameters())
    n_kept = sum(p.numel() for p in backbone.model.parameters())
    per_layer = sum(p.numel() for p in model.model.text_model.layers[3].parameters())
    assert n_full - n_kept >= 2 * per_layer
    full = ProxyBackbone.from_pretrained(str(tiny_model), device="cpu", truncate=False, feature_layers=[2])
    assert len(full.text_model.layers) == 4
    page = render_page(400, 500)
    assert torch.allclose(backbone.features([page], ["q"]), full.features([page], ["q"]), atol=1e-5)
    with pytest.raises(ValueError, match="truncate=False"):
        backbone.extract([page], ["q"], layers=[3])
    sweep = full.extract([page], ["q"], layers=[0, 2, 4])  # one forward pass, several layers
    assert set(sweep) == {0, 2, 4} and all(v.shape == (1, 32) for v in sweep.values())


def test_cache_hit_skips_the_vision_tower(gate_dir, pages):
    router = load_gate(gate_dir, device="cpu")
    calls = []
    router.backbone.model.vision_model.register_forward_hook(lambda *a: calls.append(1))
    miss = router.route(pages[0], "first question")
    assert len(calls) == 1
    hit = router.route(pages[0].copy(), "a new question about the same page")
    assert len(calls) == 1, "cache hit must not run the vision tower"
    assert router.backbone.cache.hits >= 1
    router.backbone.cache.clear()
    cold = router.route(pages[0], "a new question about the same page")
    assert len(calls) == 2
    assert hit.probabilities == pytest.approx(cold.probabilities, abs=1e-6)
    assert miss.probabilities != hit.probabilities
    # a batch with one cached page and two new ones runs the tower once, for the new ones only
    router.route_batch(pages, QUESTIONS)
    assert len(calls) == 3 and len(router.backbone.cache) == 3


def test_cache_is_bounded(gate_dir):
    router = load_gate(gate_dir, device="cpu", cache_size=2)
    for i in range(4):
        router.route(render_page(200 + 10 * i, 300), "q")
    assert len(router.backbone.cache) == 2


def test_query_with_image_token_text_is_safe(router, page_image):
    tricky = "what does <image> and <fake_token_around_image> mean?"
    decision = router.route(page_image, tricky)
    # the question's look-alike tokens are text, not extra image slots: the forward pass works and
    # gives the same (finite) probabilities as the batch path
    assert all(math.isfinite(p) and p > 0 for p in decision.probabilities)
    assert decision.probabilities == pytest.approx(router.route_batch([page_image, page_image], [tricky, "q"])[0].probabilities, abs=1e-5)


def test_rgba_and_grayscale_pages_route(router, page_image):
    assert router.route(page_image.convert("RGBA"), "q").probabilities
    assert router.route(page_image.convert("L"), "q").probabilities


# -- research checkpoints ------------------------------------------------------------------------------
def _research_state(in_dim: int) -> dict[str, torch.Tensor]:
    head = _random_head(in_dim, seed=3, hidden=8)
    state = {f"head.{k}": v for k, v in head.state_dict().items()}
    state["backbone.model.text_model.embed_tokens.weight"] = torch.zeros(4, in_dim)  # ignored
    return state


def test_research_state_dict_loads(tiny_model, tmp_path, pages):
    state = _research_state(32)
    torch.save(state, tmp_path / "gate.pt")
    router = load_router(str(tmp_path / "gate.pt"), base_model=str(tiny_model), device="cpu")
    cfg = router.config
    assert (cfg.feature_layers, cfg.pooling, cfg.preprocessing) == ((2,), "mean", "upstream")
    assert (cfg.in_dim, cfg.hidden_dim, cfg.n_classes) == (32, 8, 3)
    head = GateHead.from_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    expected = torch.softmax(head(router.backbone.features(pages, QUESTIONS)), -1)
    got = torch.tensor([d.probabilities for d in router.route_batch(pages, QUESTIONS)])
    assert torch.allclose(got, expected, atol=1e-6)
    # the same weights as .safetensors, in a folder, and re-saved in our format
    from safetensors.torch import save_file

    (tmp_path / "folder").mkdir()
    save_file(state, str(tmp_path / "folder" / "model.safetensors"))
    again = load_gate(tmp_path / "folder", base_model=str(tiny_model), device="cpu", pooling="last")
    assert again.config.pooling == "last"
    router.save_pretrained(tmp_path / "ours")
    assert load_gate(tmp_path / "ours", device="cpu").route_batch(pages, QUESTIONS) == router.route_batch(pages, QUESTIONS)


def test_research_state_dict_needs_base_model(tmp_path):
    torch.save(_research_state(32), tmp_path / "gate.pt")
    with pytest.raises(CheckpointError, match="base_model"):
        load_gate(tmp_path / "gate.pt")


def test_bad_checkpoints_give_clear_errors(tiny_model, gate_dir, tmp_path):
    with pytest.raises(CheckpointError, match="no gate"):
        load_gate(str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="neither"):
        load_gate(tmp_path)
    with pytest.raises(TypeError, match="pooling"):
        load_gate(gate_dir, pooling="last")
    torch.save(_research_state(48), tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="hidden size"):
        load_gate(tmp_path / "wrong.pt", base_model=str(tiny_model), device="cpu")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / CONFIG_NAME).write_text('{"base_model": "x"}')
    with pytest.raises(CheckpointError, match="valid gate config"):
        load_gate(tmp_path / "broken")
    with pytest.raises(ValueError, match="n_classes"):
        GateConfig(base_model="x", feature_layers=2, in_dim=8, n_classes=2)
    with pytest.raises(ValueError, match="version"):
        GateConfig(base_model="x", feature_layers=2, in_dim=8, format_version=99)


def test_hub_ids_download_through_hf_hub(gate_dir, monkeypatch, pages):
    """The hub code path, with hf_hub_download answered from a local folder (no network here)."""
    import huggingface_hub

    asked = []

    def fake_download(repo_id, filename, revision=None, **kwargs):
        asked.append((repo_id, filename, revision))
        return str(gate_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr("cares_integrations.routers.gate.hub.hub_reachable", lambda timeout=3.0: True)
    router = load_gate("someone/cares-gate", revision="v1", device="cpu")
    assert asked == [("someone/cares-gate", CONFIG_NAME, "v1"), ("someone/cares-gate", "head.safetensors", "v1")]
    assert router.config.feature_layers == (2,)


def test_head_matches_research_layout():
    head = GateHead(10, 7, 3)
    assert sorted(head.state_dict()) == ["0.bias", "0.weight", "1.bias", "1.weight", "3.bias", "3.weight"]
    assert isinstance(head[2], torch.nn.GELU)
    assert head(torch.randn(5, 10)).shape == (5, 3)


# -- concurrency ------------------------------------------------------------------------------------
async def test_concurrent_aroutes_share_batches(gate_dir):
    router = load_gate(gate_dir, device="cpu", max_batch_size=8, max_wait_ms=20)
    calls = []
    original = router._predict
    router._predict = lambda images, queries: calls.append(len(images)) or original(images, queries)
    items = [(render_page(300 + 7 * (i % 5), 400, text_px=12 + i % 3), f"question {i}") for i in range(20)]
    got = await asyncio.gather(*(router.aroute(img, q) for img, q in items))
    assert len(calls) < 20 and max(calls) <= 8 and sum(calls) == 20
    expected = [router.route(img, q) for img, q in items]
    for g, e in zip(got, expected):
        assert g.long_side == e.long_side
        assert g.probabilities == pytest.approx(e.probabilities, abs=1e-5)


async def test_bad_image_fails_only_its_own_call(router, page_png):
    good, bad = await asyncio.gather(
        router.aroute(page_png, "q"), router.aroute(b"not an image", "q"), return_exceptions=True
    )
    assert good.probabilities and isinstance(bad, ImageDecodeError)
    assert await router.aroute_batch([], []) == []


def test_threads_share_one_router(router, pages):
    expected = router.route_batch(pages, QUESTIONS)
    results, errors = [], []

    def work():
        try:
            results.append(router.route_batch(pages, QUESTIONS))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        assert [d.long_side for d in r] == [d.long_side for d in expected]


# -- device and dtype -------------------------------------------------------------------------------
def test_device_and_dtype_picking(gate_dir):
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert pick_device() == torch.device("cpu")
        with pytest.raises(RuntimeError, match="CUDA"):
            pick_device("cuda")
    assert pick_dtype("cpu") == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16 and pick_dtype("cpu", torch.float16) == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        pick_dtype("cpu", "int8")
    with pytest.raises(ValueError, match="device"):
        pick_device("tpu-ish")
    router = load_gate(gate_dir, device="cpu", dtype="bf16")
    assert router.backbone.dtype == torch.bfloat16 and router.backbone.device.type == "cpu"
    assert next(router.head.parameters()).dtype == torch.float32
    page = render_page(300, 400)
    fp32 = load_gate(gate_dir, device="cpu").route(page, "q").probabilities
    assert router.route(page, "q").probabilities == pytest.approx(fp32, abs=0.05)  # bf16 features, fp32 head


def test_the_gate_without_its_extra_names_the_extra(tmp_path):
    """Without torch (the core install), loading a gate says which extra to install."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if torch were not installed\n"
        "from cares_integrations import load_router\n"
        "try:\n"
        f"    load_router({str(tmp_path)!r})\n"
        "except ImportError as exc:\n"
        "    print('ERR', exc)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True).stdout
    assert "ERR" in out and "cares-integrations[gate]" in out
