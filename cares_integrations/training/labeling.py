"""Labeling (CARES Algorithm 1): the smallest resolution at which the target still answers.

For each sample the target answers the question with the page sent at every resolution in
``resolutions`` (long sides in px, ascending; "at resolution r" = the page resized with
:func:`cares_integrations.resize.fit_long_side`, never upscaled, so a page smaller than r is sent
as is), each answer is scored with ANLS against the reference answers, and

    label = the lowest resolution whose score >= tau AND >= best score - delta (plateau rule);
            the highest resolution when none qualifies.

Every per-resolution prediction and score is kept, so labels can be recomputed with another
``tau``/``delta`` (:func:`relabel`) and policies evaluated without calling the target again.

Dataset (input): a folder with ``samples.jsonl``, one JSON object per line::

    {"id": str, "image": str (path relative to the folder), "question": str,
     "answers": [str, ...], ...extra keys, kept in the labels}

Labels (output): JSONL, one JSON object per line::

    {...extra keys of the sample, "id", "image", "question", "answers", "target": str,
     "resolutions": [int, ...], "predictions": [str per resolution],
     "scores": [float ANLS per resolution], "label": int (index into resolutions),
     "label_resolution": int}

Runs are resumable: finished samples are appended batch by batch (one write, flush and fsync
per batch); a rerun skips ids already in the file and drops a torn last line left by a crash.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from PIL import Image

from .anls import anls
from .targets import Target

__all__ = [
    "DEFAULT_RESOLUTIONS",
    "LabelRecord",
    "label_dataset",
    "label_for_scores",
    "load_labels",
    "load_samples",
    "relabel",
]

DEFAULT_RESOLUTIONS: tuple[int, ...] = (384, 768, 1024)
"""The CARES resolution set (long sides in px)."""

_CORE_KEYS = ("id", "image", "question", "answers", "target", "resolutions", "predictions", "scores",
              "label", "label_resolution")


@dataclass
class LabelRecord:
    """One labeled sample: the target's answer and ANLS score at every resolution, and the label.

    ``label`` indexes ``resolutions``; ``label_resolution`` is that long side. ``extra`` holds
    the sample's other keys (source dataset, page number, ...), written back unchanged.
    """

    id: str
    image: str
    question: str
    answers: list[str]
    target: str
    resolutions: list[int]
    predictions: list[str]
    scores: list[float]
    label: int
    label_resolution: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSONL object (extra keys first, then the shared-format keys)."""
        out = dict(self.extra)
        out.update({k: getattr(self, k) for k in _CORE_KEYS})
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], *, where: str = "label record") -> "LabelRecord":
        """Read one JSONL object; raises ValueError naming the missing or malformed key."""
        missing = [k for k in _CORE_KEYS if k not in obj]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        n = len(obj["resolutions"])
        if len(obj["predictions"]) != n or len(obj["scores"]) != n:
            raise ValueError(f"{where}: resolutions, predictions and scores must have the same length")
        if not 0 <= int(obj["label"]) < n:
            raise ValueError(f"{where}: label {obj['label']} is not an index into {obj['resolutions']}")
        return cls(
            id=str(obj["id"]), image=str(obj["image"]), question=str(obj["question"]),
            answers=list(obj["answers"]), target=str(obj["target"]),
            resolutions=[int(r) for r in obj["resolutions"]], predictions=[str(p) for p in obj["predictions"]],
            scores=[float(s) for s in obj["scores"]], label=int(obj["label"]),
            label_resolution=int(obj["label_resolution"]),
            extra={k: v for k, v in obj.items() if k not in _CORE_KEYS},
        )

    @property
    def best_score(self) -> float:
        """The best ANLS over all resolutions."""
        return max(self.scores)


def label_for_scores(scores: Sequence[float], *, tau: float = 0.85, delta: float = 0.1) -> int:
    """Index of the label: the first (lowest-resolution) score that is >= ``tau`` and within
    ``delta`` of the best score; the last index when none is. ``scores`` are in ascending
    resolution order."""
    if not scores:
        raise ValueError("label_for_scores needs at least one score")
    best = max(scores)
    for i, s in enumerate(scores):
        if s >= tau and s >= best - delta - 1e-12:
            return i
    return len(scores) - 1


def relabel(records: Iterable[LabelRecord], *, tau: float = 0.85, delta: float = 0.1) -> list[LabelRecord]:
    """New records with labels recomputed from the stored scores (no target calls)."""
    out = []
    for rec in records:
        i = label_for_scores(rec.scores, tau=tau, delta=delta)
        out.append(LabelRecord(**{**rec.__dict__, "label": i, "label_resolution": rec.resolutions[i],
                                  "extra": dict(rec.extra)}))
    return out


# -- reading ------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> tuple[list[tuple[int, dict]], int | None]:
    """Parsed (line number, object) pairs, and the byte offset of a torn last line (or None).

    A ``.gz`` file is read decompressed (the corpus ships its labels gzipped)."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(data)
    rows: list[tuple[int, dict]] = []
    offset = 0
    lines = data.split(b"\n")
    for n, raw in enumerate(lines, 1):
        is_last = n == len(lines) or (n == len(lines) - 1 and lines[-1] == b"")
        if raw.strip():
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except ValueError:
                if is_last:
                    return rows, offset
                raise ValueError(f"{path}:{n}: not a JSON object") from None
            rows.append((n, obj))
        offset += len(raw) + 1
    return rows, None


def load_samples(dataset: str | os.PathLike) -> tuple[list[dict[str, Any]], Path]:
    """Read a dataset folder (or its ``samples.jsonl``); returns (samples, folder).

    Checks every line: ``id`` (str or int, unique), ``image`` (str), ``question`` (str),
    ``answers`` (a list of strings, or one string); the error names the file, line and key.
    """
    path = Path(dataset)
    if path.is_dir():
        path = path / "samples.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no dataset at {dataset}: expected a folder holding samples.jsonl")
    rows, torn = _read_jsonl(path)
    if torn is not None:
        raise ValueError(f"{path}: the last line is not valid JSON")
    samples = [_check_sample(obj, f"{path}:{n}") for n, obj in rows]
    _check_unique(samples, str(path))
    return samples, path.parent


def _check_sample(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    sample = dict(obj)
    for key in ("id", "image", "question", "answers"):
        if key not in sample:
            raise ValueError(f"{where}: sample has no {key!r} (needs id, image, question, answers)")
    if not isinstance(sample["id"], (str, int)) or isinstance(sample["id"], bool):
        raise ValueError(f"{where}: 'id' must be a string, got {sample['id']!r}")
    sample["id"] = str(sample["id"])
    if not isinstance(sample["image"], str):
        raise ValueError(f"{where}: 'image' must be a path string, got {type(sample['image']).__name__}")
    if not isinstance(sample["question"], str):
        raise ValueError(f"{where}: 'question' must be a string")
    answers = sample["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"{where}: 'answers' must be a non-empty list of strings, got {sample['answers']!r}")
    sample["answers"] = answers
    reserved = [k for k in _CORE_KEYS[4:] if k in sample]
    if reserved:
        raise ValueError(f"{where}: sample key(s) {reserved} are reserved for the labels; rename them")
    return sample


def _check_unique(samples: Sequence[Mapping[str, Any]], where: str) -> None:
    seen: set[str] = set()
    for s in samples:
        if s["id"] in seen:
            raise ValueError(f"{where}: duplicate sample id {s['id']!r} (ids must be unique to resume)")
        seen.add(s["id"])


def load_labels(path: str | os.PathLike) -> list[LabelRecord]:
    """Read a labels JSONL (or ``.jsonl.gz``); a torn last line (an interrupted run) is ignored.

    Records may carry different resolution lists (each page's own native long side last)."""
    path = Path(path)
    rows, _ = _read_jsonl(path)
    return [LabelRecord.from_json(obj, where=f"{path}:{n}") for n, obj in rows]


def labels_and_dataset(labels: str | os.PathLike | Iterable[LabelRecord],
                       dataset_dir: str | os.PathLike | None) -> tuple[list[LabelRecord], str | os.PathLike | None]:
    """The label records (read from a labels file, or the records given) and the folder their
    image paths are relative to: ``dataset_dir``, else the labels file's folder."""
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        return load_labels(path), dataset_dir if dataset_dir is not None else path.parent
    return list(labels), dataset_dir


# -- labeling -----------------------------------------------------------------------------------


class _Progress:
    """tqdm when installed; otherwise a stderr line with rate and ETA every few seconds."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.bar = None
        self.enabled = enabled
        self.total, self.done, self.start_done = total, initial, initial
        self.t0 = self.last = time.monotonic()
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True)
        except ImportError:
            self.desc = desc

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            now = time.monotonic()
            if now - self.last >= 2.0 or self.done >= self.total:
                self.last = now
                rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
                eta = (self.total - self.done) / rate if rate > 0 else float("inf")
                eta_s = f"{int(eta // 60)}:{int(eta % 60):02d}" if eta != float("inf") else "?"
                print(f"{self.desc}: {self.done}/{self.total} ({rate:.2f} samples/s, ETA {eta_s})",
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _open_page(sample: Mapping[str, Any], base_dir: Path | None) -> Image.Image:
    from ..core.errors import ImageDecodeError
    from ..core.payload import load_image

    path = Path(sample["image"])
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise FileNotFoundError(f"sample {sample['id']!r}: image {str(path)!r} not found")
    try:
        return load_image(path).image
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"sample {sample['id']!r}: {exc}") from exc


def _existing(out_path: Path, target_name: str, resolutions: list[int]) -> dict[str, LabelRecord]:
    """Records already in ``out_path``; truncates a torn last line so appends stay valid."""
    if not out_path.exists():
        return {}
    rows, torn = _read_jsonl(out_path)
    if torn is not None:
        with open(out_path, "r+b") as fh:
            fh.truncate(torn)
    done: dict[str, LabelRecord] = {}
    for n, obj in rows:
        rec = LabelRecord.from_json(obj, where=f"{out_path}:{n}")
        if rec.resolutions != resolutions:
            raise ValueError(f"{out_path}:{n}: labeled at {rec.resolutions}, this run asks for {resolutions}; "
                             "use another out_path or the same resolutions")
        if rec.target != target_name:
            raise ValueError(f"{out_path}:{n}: labeled with target {rec.target!r}, this run uses "
                             f"{target_name!r}; use another out_path")
        done[rec.id] = rec
    if _ends_without_newline(out_path):
        with open(out_path, "ab") as fh:
            fh.write(b"\n")
    return done


def _ends_without_newline(path: Path) -> bool:
    """Whether a non-empty file lacks a final newline (so the next append would join a line)."""
    size = path.stat().st_size
    if size == 0:
        return False
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) != b"\n"


def label_dataset(
    dataset: str | os.PathLike | Sequence[Mapping[str, Any]],
    target: Target,
    *,
    resolutions: Sequence[int] = DEFAULT_RESOLUTIONS,
    tau: float = 0.85,
    delta: float = 0.1,
    out_path: str | os.PathLike,
    batch_size: int = 8,
    resume: bool = True,
    progress: bool = True,
    base_dir: str | os.PathLike | None = None,
    anls_threshold: float | None = None,
) -> list[LabelRecord]:
    """Label every sample with ``target`` at each resolution; append results to ``out_path``.

    - ``dataset``: a dataset folder (or its ``samples.jsonl``), or a sequence of sample dicts
      whose ``image`` paths are relative to ``base_dir`` (default: the working directory).
    - ``target``: any :class:`~.targets.Target` (``answer_batch(images, questions)``); one
      ``answer_batch`` call per batch of ``batch_size`` samples covers all their resolutions.
      When a page is smaller than several resolutions the same image is sent once and its
      answer reused for each of them.
    - ``tau``, ``delta``: the sufficiency threshold and the plateau rule (see the module
      docstring); ``anls_threshold``: ANLS cut-off (None: research setting, 0.5: DocVQA).
    - ``resume=True`` skips ids already in ``out_path`` (which must come from the same target
      and resolutions); ``resume=False`` starts the file afresh.
    - ``progress``: a progress bar with throughput and ETA (tqdm, or a plain stderr line).

    Returns the records of every sample in dataset order, the resumed ones included.
    """
    res = [int(r) for r in resolutions]
    if not res or any(r <= 0 for r in res) or res != sorted(set(res)):
        raise ValueError(f"resolutions must be positive and strictly increasing, got {list(resolutions)}")
    if not 0.0 <= tau <= 1.0 or delta < 0:
        raise ValueError(f"tau must be in [0, 1] and delta >= 0, got tau={tau}, delta={delta}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not callable(getattr(target, "answer_batch", None)):
        raise TypeError(f"target must have answer_batch(images, questions), got {type(target).__name__}")
    target_name = str(getattr(target, "name", type(target).__name__))

    if isinstance(dataset, (str, os.PathLike)):
        samples, folder = load_samples(dataset)
    else:
        samples = [_check_sample(s, f"sample {i}") for i, s in enumerate(dataset)]
        _check_unique(samples, "samples")
        folder = Path(base_dir) if base_dir is not None else None

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not resume and out.exists():
        out.unlink()
    done = _existing(out, target_name, res)
    todo = [s for s in samples if s["id"] not in done]

    bar = _Progress(total=len(samples), initial=len(samples) - len(todo), enabled=progress,
                    desc=f"labeling with {target_name}")
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            records = _label_batch(batch, folder, target, target_name, res, tau, delta, anls_threshold)
            payload = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
            with open(out, "a", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            for r in records:
                done[r.id] = r
            bar.update(len(batch))
    finally:
        bar.close()
    return [done[s["id"]] for s in samples]


def _label_batch(batch, folder, target, target_name, res, tau, delta, anls_threshold) -> list[LabelRecord]:
    from ..core.resize import fit_long_side, resize_image

    images: list[Image.Image] = []
    questions: list[str] = []
    slots: list[list[int]] = []  # per sample, per resolution: index into images
    for sample in batch:
        page = _open_page(sample, folder)
        sizes: dict[tuple[int, int], int] = {}
        row = []
        for r in res:
            size = fit_long_side(page.width, page.height, r)
            if size not in sizes:
                sizes[size] = len(images)
                images.append(resize_image(page, size))
                questions.append(sample["question"])
            row.append(sizes[size])
        slots.append(row)
    answers = list(target.answer_batch(images, questions))
    if len(answers) != len(images):
        raise RuntimeError(f"target {target_name!r} returned {len(answers)} answers for {len(images)} inputs")
    records = []
    for sample, row in zip(batch, slots):
        predictions = [str(answers[j]) for j in row]
        scores = [float(anls(p, sample["answers"], threshold=anls_threshold)) for p in predictions]
        label = label_for_scores(scores, tau=tau, delta=delta)
        records.append(LabelRecord(
            id=sample["id"], image=sample["image"], question=sample["question"], answers=list(sample["answers"]),
            target=target_name, resolutions=list(res), predictions=predictions, scores=scores, label=label,
            label_resolution=res[label],
            extra={k: v for k, v in sample.items() if k not in _CORE_KEYS},
        ))
    return records
