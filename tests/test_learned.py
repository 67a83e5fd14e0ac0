"""The learned default router: shipped weights, determinism, batching, question sensitivity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import render_page

from cares_integrations import ResolutionPolicy, load_image
from cares_integrations.core.errors import CheckpointError
from cares_integrations.routers.learned import (
    DEFAULT_MODEL_DIR,
    LearnedDefaultRouter,
    encode_inputs,
    page_view,
    question_features,
)
from cares_integrations.training.learned_net import build_net, load_torch_net, save_learned
from cares_integrations.training.train import fit_classifier

QUESTIONS = [
    'What is the value of "Due date"?',
    'According to footnote 2, what is the "Audit code"?',
    'In the table, what is the value in row "Valves" and column "Q3"?',
]


# Every test here trains or runs a tiny torch model: one torch thread (see conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped():
    return LearnedDefaultRouter()


def test_shipped_weights_load_and_route(shipped, page_image):
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_size < 5 * 1024 * 1024
    d = shipped.route(page_image, QUESTIONS[0], target="openai:gpt-4o")
    assert d.router == "learned-default"
    assert d.bins == list(shipped.policy.bins) and len(d.probabilities) == len(d.bins)
    assert d.probabilities == pytest.approx(shipped.predict_proba([page_image], [QUESTIONS[0]])[0].tolist(), abs=1e-6)
    assert shipped.policy.mode == shipped.config.get("mode", "continuous")  # the config's operating mode
    if shipped.policy.mode == "continuous":
        assert d.raw_long_side == pytest.approx(sum(p * b for p, b in zip(d.probabilities, d.bins)), abs=1e-3)
    else:
        assert d.raw_long_side == d.bins[int(np.argmax(d.probabilities))]
    assert d.tokens_after <= d.tokens_before


def test_deterministic_and_batch_equals_single(shipped, page_png):
    small = render_page(600, 800, text_px=22)
    tiny = render_page(1700, 2200, text_px=9)
    images = [page_png, small, tiny, page_png]
    qs = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[2], QUESTIONS[1]]
    batch = shipped.route_batch(images, qs)
    again = shipped.route_batch(images, qs)
    singles = [shipped.route(img, q) for img, q in zip(images, qs)]
    for a, b, c in zip(batch, again, singles):
        assert a == b
        np.testing.assert_allclose(a.probabilities, c.probabilities, atol=1e-5)
        assert abs(a.long_side - c.long_side) <= 1


def test_inputs_are_well_formed(page_image):
    v = page_view(page_image, 64)
    assert v.shape == (64, 64) and v.dtype == np.float32
    assert 0 <= v.min() and v.max() <= 1
    assert v[:, 60:].sum() == 0  # portrait page: padding on the right stays empty
    dark = page_view(page_image.point(lambda p: 255 - p), 64)
    np.testing.assert_allclose(dark, v, atol=0.02)  # dark background flipped to ink-on-paper
    q1, q2 = question_features("What is the total?", 64), question_features("What is the footnote?", 64)
    assert q1.shape == (64,) and np.linalg.norm(q1) == pytest.approx(1.0)
    assert not np.allclose(q1, q2)
    np.testing.assert_array_equal(question_features("Total 12", 64), question_features("total 99", 64))


def train_question_sensitive(tmp_path):
    """A small gate trained here: the label is decided by the question alone."""
    config = {"bins": [384, 768, 1024], "view_size": 32, "question_dim": 64, "channels": [4, 8],
              "question_hidden": 16, "hidden": 16, "temperature": 1.0}
    rng = np.random.default_rng(0)
    pages = [render_page(300 + 10 * i, 400, text_px=8 + i % 5, lines=12) for i in range(6)]
    words = {0: "heading title", 1: "table cell", 2: "footnote fine print"}
    images, qs, y = [], [], []
    for i in range(150):
        cls = int(rng.integers(0, 3))
        images.append(pages[i % len(pages)])
        qs.append(f"What is the {words[cls]} value of item {int(rng.integers(0, 99))}?")
        y.append(cls)
    torch.manual_seed(0)
    net = build_net(config)
    result = fit_classifier(net, list(encode_inputs(images, qs, config)), y, n_classes=3, epochs=25, lr=1e-2,
                            seed=0)
    config["temperature"] = result.temperature
    return save_learned(tmp_path / "gate", config, net.eval()), result


def test_question_changes_the_decision(tmp_path, page_image):
    folder, result = train_question_sensitive(tmp_path)
    assert result.val_metrics["accuracy"] > 0.9
    router = LearnedDefaultRouter(folder)
    heading = router.route(page_image, "What is the heading title value of item 3?")
    footnote = router.route(page_image, "What is the footnote fine print value of item 3?")
    assert heading.probabilities != footnote.probabilities
    assert heading.long_side < footnote.long_side
    assert np.argmax(heading.probabilities) == 0 and np.argmax(footnote.probabilities) == 2
    # saved and reloaded: identical decisions
    assert LearnedDefaultRouter(folder).route(page_image, "footnote") == router.route(page_image, "footnote")


def test_config_mode_sets_the_policy(tmp_path, page_image):
    folder, _ = train_question_sensitive(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert LearnedDefaultRouter(folder).policy.mode == "continuous"  # no mode: continuous
    config["mode"] = "discrete"
    (folder / "config.json").write_text(json.dumps(config))
    router = LearnedDefaultRouter(folder)
    d = router.route(page_image, "What is the footnote fine print value of item 3?")
    assert router.policy.mode == "discrete" and d.raw_long_side == 1024.0


def test_policy_and_checkpoint_errors(tmp_path, shipped):
    with pytest.raises(ValueError, match="bins"):
        LearnedDefaultRouter(policy=ResolutionPolicy(bins=(100, 200)))
    discrete = LearnedDefaultRouter(policy=ResolutionPolicy(bins=shipped.policy.bins, mode="discrete"))
    d = discrete.route(render_page(), QUESTIONS[1])
    assert d.mode == "discrete" and d.raw_long_side in shipped.policy.bins
    with pytest.raises(CheckpointError, match="expected config.json"):
        LearnedDefaultRouter(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"format": "something-else"}))
    (bad / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a cares-learned-default"):
        LearnedDefaultRouter(bad)


def test_decoded_inputs_of_every_form_agree(shipped, page_png, page_b64, page_image):
    forms = [page_png, page_b64, page_image, load_image(page_png)]
    ds = shipped.route_batch(forms, QUESTIONS[2])
    assert len({d.long_side for d in ds}) == 1


def test_recipe_splits_by_page_and_judges_honestly():
    from cares_integrations.training.recipe import split_pages, verdict

    pages = [f"p{i}" for i in range(40)]
    assign = split_pages(pages * 3, seed=0)  # several questions per page: one assignment per page
    assert set(assign) == set(pages)
    assert sorted(assign.values()).count("test") == 10 and sorted(assign.values()).count("val") == 6
    assert split_pages(pages, seed=0) == assign and split_pages(pages, seed=1) != assign

    def table(learned, text):
        return {"learned-default": dict(zip(("retention", "tokens_saved"), learned)),
                "text-scale": dict(zip(("retention", "tokens_saved"), text))}

    assert verdict({"t": table((0.99, 0.30), (0.99, 0.20))})["learned_beats_text_scale"]
    assert not verdict({"t": table((0.98, 0.30), (0.99, 0.20))})["learned_beats_text_scale"]  # lower retention
    assert not verdict({"t": table((0.99, 0.30), (0.99, 0.20)),
                        "u": table((0.99, 0.10), (0.99, 0.20))})["learned_beats_text_scale"]  # every target


def test_numpy_inference_gives_the_torch_networks_decisions(shipped):
    """The router runs the shipped weights in numpy; the torch network training uses must agree."""
    _, net = load_torch_net(DEFAULT_MODEL_DIR)
    pages = [render_page(300 + 97 * i, 400 + 131 * i, text_px=6 + i) for i in range(10)]
    qs = [QUESTIONS[i % 3] for i in range(10)]
    views, q, stats = encode_inputs(pages, qs, shipped.config)
    with torch.inference_mode():
        logits = net(torch.from_numpy(views), torch.from_numpy(q), torch.from_numpy(stats))
    expected = torch.softmax(logits / shipped.temperature + torch.from_numpy(shipped.class_bias), dim=-1).numpy()
    got = shipped.predict_proba(pages, qs)
    assert np.abs(got - expected).max() < 1e-5
    policy = ResolutionPolicy(bins=shipped.policy.bins)
    for page, probs_np, probs_t in zip(pages, got, expected):
        image_long = max(page.size)
        assert policy.long_side(probs_np, image_long) == policy.long_side(probs_t, image_long)


def test_safetensors_reader_matches_the_safetensors_package(tmp_path):
    from safetensors.numpy import save_file

    from cares_integrations.routers.learned import read_safetensors

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], dtype=np.int64),
              "c": np.linspace(0, 1, 5).astype(np.float16)}
    save_file(arrays, str(tmp_path / "w.safetensors"), metadata={"note": "x"})
    got = read_safetensors(tmp_path / "w.safetensors")
    assert set(got) == set(arrays)
    for key, value in arrays.items():
        assert got[key].dtype == value.dtype and np.array_equal(got[key], value)
    (tmp_path / "bad.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_routing_with_the_default_and_learned_routers_imports_no_torch(tmp_path):
    """The default install has no torch: routing with either embedded router must not need it."""
    import subprocess
    import sys
    from pathlib import Path

    page = tmp_path / "page.png"
    render_page(850, 1100, text_px=11).save(page)
    code = (
        "import sys\n"
        "from cares_integrations import load_router\n"
        "for source in (None, 'learned-default'):\n"
        f"    d = load_router(source, target='openai:gpt-4o').route({str(page)!r}, 'What is the total?')\n"
        "    assert d.send_size and d.tokens_after <= d.tokens_before\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'transformers', 'safetensors'))))\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]", out.stdout
