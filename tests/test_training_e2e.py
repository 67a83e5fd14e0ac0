"""The whole loop on CPU: synthetic pages -> labels (Tesseract reader AND a LangChain chat model)
-> cached proxy-VLM features (tiny Idefics3) -> head + calibration -> evaluation -> saved gate ->
``load_router`` routes with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.messages import BaseMessage
from langchain_helpers import RecordingChatModel, decode
from tiny_models import tiny_idefics3

from cares_integrations import load_router
from cares_integrations.routers.gate import CaresGateRouter, ProxyBackbone
from cares_integrations.training.evaluate import evaluate_router
from cares_integrations.training.features import extract_features
from cares_integrations.training.labeling import label_dataset, load_labels
from cares_integrations.training.ocr import OcrReader
from cares_integrations.training.synthetic import generate_pages, write_dataset
from cares_integrations.training.targets import LangChainChatTarget
from cares_integrations.training.train import train_gate_from_labels

RESOLUTIONS = (384, 768, 1024)
LEGIBLE_PX = 10.0


# Every test here trains or runs a tiny torch model: one torch thread (see conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ReadingChat(RecordingChatModel):
    """The recording chat model as a fake VLM: it answers right only when the answer's text, at
    the size of the image it received, is at least ``LEGIBLE_PX`` tall (so labels really depend
    on resolution)."""

    facts: dict = {}

    def answer(self, messages: list[BaseMessage]) -> str:
        content = messages[0].content
        assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        size = decode(content[0]).size
        answer, span_px, native_long = self.facts[content[1]["text"].splitlines()[0]]
        return answer if span_px * max(size) / native_long >= LEGIBLE_PX else "unreadable"

    @property
    def calls(self) -> list[tuple[tuple[int, int], str]]:
        """(image size, question) of every call."""
        return [(decode(m[0].content[0]).size, m[0].content[1]["text"].splitlines()[0]) for m in self.received]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    pages = generate_pages(6, seed=5, dpi=100, max_questions=5)
    write_dataset(pages, folder)
    return folder


def test_label_train_calibrate_evaluate_save_route(dataset, tmp_path):
    samples = [json.loads(line) for line in (dataset / "samples.jsonl").read_text().splitlines()]

    # 1. labels from the Tesseract reader (one page: real OCR is the slow part)
    ocr_pages = sorted({s["page_id"] for s in samples})[:1]
    ocr_samples = [s for s in samples if s["page_id"] in ocr_pages]
    ocr_labels = tmp_path / "labels-ocr.jsonl"
    ocr_records = label_dataset(ocr_samples, OcrReader(workers=2), resolutions=RESOLUTIONS, out_path=ocr_labels,
                                base_dir=dataset, progress=False, batch_size=16)
    assert [r.id for r in ocr_records] == [s["id"] for s in ocr_samples]
    assert all(r.target == "tesseract" and len(r.scores) == 3 for r in ocr_records)
    assert max(r.scores[-1] for r in ocr_records) >= 0.85  # the reader really reads at 1024 px

    # 2. labels from a LangChain chat model (every sample)
    facts = {s["question"]: (s["answers"][0], s["span_px"], max(s["image_size"])) for s in samples}
    chat = ReadingChat(facts=facts)
    chat_labels = tmp_path / "labels-chat.jsonl"
    records = label_dataset(dataset, LangChainChatTarget(chat, max_concurrency=4, image_format="JPEG"), resolutions=RESOLUTIONS,
                            out_path=chat_labels, progress=False)
    assert len(records) == len(samples)
    assert len(chat.calls) == len(samples) * len(RESOLUTIONS)  # 100-dpi pages (1100 px) are larger than 1024
    assert {max(size) for size, _ in chat.calls} == set(RESOLUTIONS)
    counts = np.bincount([r.label for r in records], minlength=3)
    assert (counts > 0).sum() >= 2, counts  # labels depend on the question

    # 3-4. features once (two layers in one pass), a head per layer, calibration, save
    model_dir = tiny_idefics3()
    out = tmp_path / "gate"
    report = train_gate_from_labels(chat_labels, dataset, base_model=str(model_dir), layers_sweep=[1, 3],
                                    out_dir=out, hidden=16, epochs=8, seed=0, progress=False)
    assert set(report.per_layer) == {1, 3}
    assert report.feature_layer in (1, 3)
    assert report.val_metrics["accuracy"] == max(m["accuracy"] for m in report.per_layer.values())
    assert report.temperature > 0 and report.bins == RESOLUTIONS
    assert (out / "cares_gate.json").exists() and (out / "head.safetensors").exists()
    saved = json.loads((out / "cares_gate.json").read_text())
    assert saved["feature_layers"] == [report.feature_layer] and saved["temperature"] == pytest.approx(report.temperature)
    assert json.loads((out / "training_report.json").read_text())["n_samples"] == len(samples)

    # 5. load_router loads it and routes; probabilities match the training-time features + head
    router = load_router(out)
    assert isinstance(router, CaresGateRouter)
    page = dataset / samples[0]["image"]
    decision = router.route(str(page), samples[0]["question"], target="openai:gpt-4o")
    assert decision.bins == list(RESOLUTIONS)
    assert sum(decision.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert decision.tokens_after <= decision.tokens_before
    backbone = ProxyBackbone.from_pretrained(str(model_dir), feature_layers=[report.feature_layer])
    feats = extract_features(samples[:3], backbone, base_dir=dataset, cache_dir=out / "feature_cache")
    assert feats.computed == 0  # the training run's cache serves a fresh backbone of the same model
    expected = report.result.predict_proba(feats.features[report.feature_layer])
    routed = router.route_batch([str(dataset / s["image"]) for s in samples[:3]], [s["question"] for s in samples[:3]])
    np.testing.assert_allclose([d.probabilities for d in routed], expected, atol=1e-4)

    # 6. evaluation on both label sets, with the target's token rules
    for labels in (chat_labels, ocr_labels):
        ev = evaluate_router(router, labels, dataset_dir=dataset, target="openai:gpt-4o")
        assert ev.router is not None and ev.classifier is not None
        assert ev.n == len(load_labels(labels))
        assert ev.policy("oracle").tokens_saved >= 0
        assert 0 <= ev.router.retention <= 1.0 + 1e-9
