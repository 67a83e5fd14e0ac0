"""Labeling (Algorithm 1): plateau rule, per-resolution scores, resumable JSONL, progress."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from cares_integrations.training.labeling import (
    LabelRecord,
    label_dataset,
    label_for_scores,
    load_labels,
    load_samples,
    relabel,
)
from cares_integrations.training.targets import Target


class SizeTarget(Target):
    """Answers correctly only when the page's long side reaches the size the question names
    ("need 700"); answers "wrong" otherwise. Records every call."""

    name = "size-target"

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[list[tuple[int, int]]] = []
        self.fail_on_call = fail_on_call

    def answer_batch(self, images, questions):
        self.calls.append([img.size for img in images])
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")
        out = []
        for img, q in zip(images, questions):
            need = int(q.split()[-1])
            out.append("the answer" if max(img.size) >= need else "wrong")
        return out


def make_dataset(folder: Path, needs: list[int], *, size=(850, 1100), extra=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pages").mkdir(exist_ok=True)
    lines = []
    for i, need in enumerate(needs):
        name = f"pages/p{i}.png"
        Image.new("RGB", size, "white").save(folder / name)
        sample = {"id": f"s{i}", "image": name, "question": f"need {need}", "answers": ["The Answer"]}
        if extra:
            sample["source"] = "unit"
        lines.append(json.dumps(sample))
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("scores, expected", [
    ((1.0, 1.0, 1.0), 0),
    ((0.9, 1.0, 1.0), 0),    # sufficient and within delta of the best
    ((0.86, 1.0, 1.0), 1),   # sufficient but not on the plateau
    ((0.2, 0.87, 0.95), 1),
    ((0.2, 0.3, 0.4), 2),    # nothing sufficient: the highest
    ((0.9, 0.5, 0.5), 0),
])
def test_plateau_rule(scores, expected):
    assert label_for_scores(scores, tau=0.85, delta=0.1) == expected


def test_plateau_rule_delta_and_tau():
    assert label_for_scores((0.86, 1.0), tau=0.85, delta=0.2) == 0
    assert label_for_scores((0.86, 1.0), tau=0.9, delta=0.2) == 1
    with pytest.raises(ValueError):
        label_for_scores(())


def test_label_dataset_writes_shared_format(tmp_path):
    data = make_dataset(tmp_path / "ds", [100, 700, 1000, 5000])
    target = SizeTarget()
    out = tmp_path / "labels.jsonl"
    records = label_dataset(data, target, out_path=out, batch_size=3, progress=False)
    assert [r.label_resolution for r in records] == [384, 768, 1024, 1024]
    assert [r.label for r in records] == [0, 1, 2, 2]
    assert records[1].predictions == ["wrong", "the answer", "the answer"]
    assert records[1].scores[0] < 0.85 and records[1].scores[1:] == [1.0, 1.0]
    assert records[3].scores == [records[3].scores[0]] * 3  # never right: highest is the label
    # one target call per batch of samples, covering every resolution; sizes never upscaled
    assert len(target.calls) == 2
    assert target.calls[0][:3] == [(297, 384), (593, 768), (791, 1024)]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4
    first = lines[0]
    assert set(first) == {"id", "image", "question", "answers", "target", "resolutions", "predictions",
                          "scores", "label", "label_resolution", "source"}
    assert first["target"] == "size-target" and first["source"] == "unit"
    assert first["resolutions"] == [384, 768, 1024]
    assert load_labels(out) == records


def test_small_pages_are_sent_once_as_is(tmp_path):
    data = make_dataset(tmp_path / "ds", [10], size=(300, 200))
    target = SizeTarget()
    [rec] = label_dataset(data, target, out_path=tmp_path / "l.jsonl", progress=False)
    assert target.calls == [[(300, 200)]]  # one image for all three resolutions, not upscaled
    assert rec.predictions == ["the answer"] * 3 and rec.label == 0


def test_resume_after_interruption_and_torn_line(tmp_path):
    data = make_dataset(tmp_path / "ds", [100, 700, 1000, 5000, 100])
    out = tmp_path / "labels.jsonl"
    with pytest.raises(KeyboardInterrupt):
        label_dataset(data, SizeTarget(fail_on_call=3), out_path=out, batch_size=2, progress=False)
    assert [r.id for r in load_labels(out)] == ["s0", "s1", "s2", "s3"]
    # a crash mid-write leaves a torn last line: ignored on read, truncated on resume
    with open(out, "a") as fh:
        fh.write('{"id": "s4", "image": "pag')
    assert len(load_labels(out)) == 4
    target = SizeTarget()
    records = label_dataset(data, target, out_path=out, batch_size=2, progress=False)
    assert len(target.calls) == 1 and len(target.calls[0]) == 3  # only s4 was labeled
    assert [r.id for r in records] == ["s0", "s1", "s2", "s3", "s4"]
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["s0", "s1", "s2", "s3", "s4"]
    # nothing left to do
    again = SizeTarget()
    assert label_dataset(data, again, out_path=out, progress=False) == records
    assert again.calls == []
    # resume=False starts afresh
    fresh = SizeTarget()
    label_dataset(data, fresh, out_path=out, resume=False, progress=False, batch_size=8)
    assert len(fresh.calls) == 1 and len(out.read_text().splitlines()) == 5


def test_resume_refuses_another_target_or_resolutions(tmp_path):
    data = make_dataset(tmp_path / "ds", [100])
    out = tmp_path / "labels.jsonl"
    label_dataset(data, SizeTarget(), out_path=out, progress=False)
    other = SizeTarget()
    other.name = "other"
    with pytest.raises(ValueError, match="target 'size-target'"):
        label_dataset(data, other, out_path=out, progress=False)
    with pytest.raises(ValueError, match=r"\[384, 768, 1024\]"):
        label_dataset(data, SizeTarget(), out_path=out, resolutions=(512, 1024), progress=False)


def test_samples_given_as_dicts(tmp_path):
    make_dataset(tmp_path, [700], extra=False)
    samples = [{"id": 7, "image": "pages/p0.png", "question": "need 700", "answers": "the answer"}]
    [rec] = label_dataset(samples, SizeTarget(), out_path=tmp_path / "l.jsonl", base_dir=tmp_path,
                          resolutions=(512, 1024), progress=False)
    assert rec.id == "7" and rec.answers == ["the answer"] and rec.label_resolution == 1024


def test_relabel_uses_stored_scores(tmp_path):
    data = make_dataset(tmp_path / "ds", [700])
    [rec] = label_dataset(data, SizeTarget(), out_path=tmp_path / "l.jsonl", progress=False)
    [strict] = relabel([rec], tau=1.1)
    assert strict.label == 2 and rec.label == 1 and strict.scores == rec.scores


def test_bad_datasets_name_the_problem(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="samples.jsonl"):
        load_samples(folder)
    (folder / "samples.jsonl").write_text('{"id": "a", "image": "x.png", "question": "q"}\n')
    with pytest.raises(ValueError, match=r"samples.jsonl:1: sample has no 'answers'"):
        load_samples(folder)
    (folder / "samples.jsonl").write_text(
        '{"id": "a", "image": "x.png", "question": "q", "answers": ["a"]}\n'
        '{"id": "a", "image": "y.png", "question": "q", "answers": ["a"]}\n')
    with pytest.raises(ValueError, match="duplicate sample id 'a'"):
        load_samples(folder)
    (folder / "samples.jsonl").write_text('{"id": "a", "image": "x.png", "question": "q", "answers": []}\n')
    with pytest.raises(ValueError, match="non-empty list"):
        load_samples(folder)
    (folder / "samples.jsonl").write_text('{"id": "a", "image": "x.png", "question": "q", "answers": ["a"], "label": 3}\n')
    with pytest.raises(ValueError, match="reserved"):
        load_samples(folder)
    (folder / "samples.jsonl").write_text('{"id": "a", "image": "missing.png", "question": "q", "answers": ["a"]}\n')
    with pytest.raises(FileNotFoundError, match="sample 'a'.*missing.png"):
        label_dataset(folder, SizeTarget(), out_path=tmp_path / "l.jsonl", progress=False)
    with pytest.raises(ValueError, match="increasing"):
        label_dataset(folder, SizeTarget(), out_path=tmp_path / "l.jsonl", resolutions=(768, 384))


def test_progress_without_tqdm_prints_rate_and_eta(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails like a missing package
    data = make_dataset(tmp_path / "ds", [100, 700])
    label_dataset(data, SizeTarget(), out_path=tmp_path / "l.jsonl", progress=True, batch_size=1)
    err = capsys.readouterr().err
    assert "labeling with size-target: 2/2" in err and "samples/s" in err and "ETA" in err


def test_label_record_rejects_inconsistent_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "a", "image": "x", "question": "q", "answers": ["a"], "target": "t",
                                "resolutions": [384, 768], "predictions": ["a"], "scores": [1.0, 1.0],
                                "label": 0, "label_resolution": 384}) + "\n")
    with pytest.raises(ValueError, match="same length"):
        load_labels(path)
    assert isinstance(LabelRecord.from_json({"id": "a", "image": "x", "question": "q", "answers": ["a"],
                                             "target": "t", "resolutions": [384], "predictions": ["a"],
                                             "scores": [1.0], "label": 0, "label_resolution": 384}), LabelRecord)
