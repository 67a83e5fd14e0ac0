"""Feature extraction: one backbone pass per sample, cached by backbone fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cares_integrations.training.features import backbone_fingerprint, extract_features, sample_key


class CountingBackbone:
    """A real (tiny) torch backbone with the ProxyBackbone ``extract`` interface: per layer, a
    different linear map of the image's mean colour and the question length. Counts samples."""

    def __init__(self, seed: int = 0, pooling: str = "mean") -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.ModuleList([torch.nn.Linear(4, 6) for _ in range(4)])
        self.pooling = pooling
        self.preprocessing = "tile"
        self.feature_layers = [2]
        self.calls: list[int] = []

    def extract(self, images, queries, layers=None):
        assert not torch.is_grad_enabled()
        self.calls.append(len(images))
        x = torch.tensor(
            [[*np.asarray(img.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) / 255, len(q) / 10]
             for img, q in zip(images, queries)]
        )
        return {layer: self.model[layer](x) for layer in (layers or self.feature_layers)}


@pytest.fixture
def dataset(tmp_path):
    samples = []
    for i in range(7):
        name = f"p{i}.png"
        Image.new("RGB", (40 + i, 30), (30 * i, 100, 200 - 20 * i)).save(tmp_path / name)
        samples.append({"id": f"s{i}", "image": name, "question": "what is " + "x" * i, "answers": ["a"]})
    return tmp_path, samples


def test_extracts_every_layer_in_one_pass_in_sample_order(dataset):
    folder, samples = dataset
    bb = CountingBackbone()
    fs = extract_features(samples, bb, layers=[3, 1], base_dir=folder, batch_size=3)
    assert fs.ids == [s["id"] for s in samples]
    assert fs.layers == [1, 3]
    assert fs.features[1].shape == (7, 6) and fs.features[1].dtype == np.float32
    assert bb.calls == [3, 3, 1]  # one pass per batch covers both layers
    assert not np.allclose(fs.features[1], fs.features[3])
    # row order follows samples: recompute sample 4 alone
    single = extract_features([samples[4]], bb, layers=[1], base_dir=folder)
    np.testing.assert_allclose(single.features[1][0], fs.features[1][4], rtol=1e-5, atol=1e-6)


def test_cache_hit_skips_backbone_and_new_layer_recomputes(dataset, tmp_path):
    folder, samples = dataset
    cache = tmp_path / "cache"
    bb = CountingBackbone()
    first = extract_features(samples, bb, layers=[1, 2], base_dir=folder, cache_dir=cache, batch_size=4)
    assert first.computed == 7
    calls = list(bb.calls)
    again = extract_features(samples[::-1], bb, layers=[2], base_dir=folder, cache_dir=cache)
    assert bb.calls == calls and again.computed == 0
    np.testing.assert_array_equal(again.features[2], first.features[2][::-1])
    # a new sample and a layer not cached yet: only what's missing runs
    extra = extract_features(samples[:2], bb, layers=[0], base_dir=folder, cache_dir=cache)
    assert extra.computed == 2


def test_changed_backbone_or_question_invalidates(dataset, tmp_path):
    folder, samples = dataset
    cache = tmp_path / "cache"
    a = CountingBackbone(seed=0)
    extract_features(samples, a, layers=[1], base_dir=folder, cache_dir=cache)
    b = CountingBackbone(seed=1)  # other weights
    assert backbone_fingerprint(a) != backbone_fingerprint(b)
    assert extract_features(samples, b, layers=[1], base_dir=folder, cache_dir=cache).computed == 7
    c = CountingBackbone(seed=0, pooling="last")
    assert backbone_fingerprint(a) != backbone_fingerprint(c)
    edited = [dict(samples[0], question="a different question")] + samples[1:]
    assert sample_key(edited[0]) != sample_key(samples[0])
    assert extract_features(edited, a, layers=[1], base_dir=folder, cache_dir=cache).computed == 1
    meta = json.loads(next(cache.glob("*/meta.json")).read_text())
    assert "fingerprint" in meta


def test_torn_shard_is_ignored(dataset, tmp_path):
    folder, samples = dataset
    cache = tmp_path / "cache"
    bb = CountingBackbone()
    extract_features(samples, bb, layers=[1], base_dir=folder, cache_dir=cache, batch_size=7)
    shard_dir = next(cache.glob("*/"))
    (shard_dir / "shard-00001.npz").write_bytes(b"garbage")
    fs = extract_features(samples, bb, layers=[1], base_dir=folder, cache_dir=cache)
    assert fs.computed == 0


def test_bad_samples_have_clear_errors(dataset):
    folder, samples = dataset
    bb = CountingBackbone()
    with pytest.raises(KeyError, match="question"):
        extract_features([{"id": "x", "image": "p0.png"}], bb, layers=[1], base_dir=folder)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        extract_features([{"id": "x", "image": "missing.png", "question": "q"}], bb, layers=[1], base_dir=folder)
    with pytest.raises(ValueError, match="duplicate sample 's0'"):
        extract_features([samples[0], samples[0]], bb, layers=[1], base_dir=folder)
