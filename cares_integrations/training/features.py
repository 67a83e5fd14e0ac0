"""Gate features, extracted once and cached on disk.

Training a gate head needs the frozen proxy backbone's pooled hidden state for every sample.
The backbone is by far the slow part, so :func:`extract_features` runs it ONCE per sample (for
several layers in the same forward pass when a layer sweep is wanted), batched under
``torch.inference_mode()``, and caches the result; training a head then takes seconds and a
layer sweep never reruns the backbone.

Inputs are samples in the shared dataset/labels format: dicts with ``"id"``, ``"image"`` (a path,
relative to ``base_dir``, or a PIL image) and ``"question"``; extra keys are ignored here.

Cache layout (``cache_dir``)::

    cache_dir/<fingerprint>/meta.json          # what the fingerprint stands for
    cache_dir/<fingerprint>/shard-00000.npz    # "keys": sample keys, "layer_<L>": n x d float32

``<fingerprint>`` hashes the backbone (model name/revision, model config, a checksum of its
weights, preprocessing and pooling): a changed backbone lands in a new folder, so stale features
are never reused. Inside, a sample's key hashes its id, image path and question, so an edited
sample is recomputed. Every call that computes something appends one shard; nothing is
rewritten, so an interrupted extraction keeps the shards already written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["FeatureSet", "backbone_fingerprint", "extract_features", "sample_key"]


@dataclass
class FeatureSet:
    """Features for a list of samples: ``features[layer]`` is an (n, d) float32 array whose rows
    follow ``ids`` (the samples' order as given)."""

    ids: list[str]
    features: dict[int, np.ndarray] = field(default_factory=dict)
    fingerprint: str | None = None
    computed: int = 0
    """How many samples needed a backbone pass in this call (0 when everything was cached)."""

    @property
    def layers(self) -> list[int]:
        """The layers held, sorted."""
        return sorted(self.features)

    def __len__(self) -> int:
        return len(self.ids)


def sample_key(sample: Mapping[str, Any]) -> str:
    """The cache key of one sample: a hash of its id, image path and question."""
    image = sample.get("image")
    image_part = image if isinstance(image, str) else f"<{type(image).__name__}>"
    raw = json.dumps([str(sample["id"]), image_part, sample.get("question", "")], ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def _describe_backbone(backbone: Any) -> dict[str, Any]:
    """Everything about a backbone that changes its features, as plain JSON values."""
    desc: dict[str, Any] = {"class": type(backbone).__name__}
    # feature_layers is left out on purpose: the layer is part of each cached row's key, and a
    # layer's features do not depend on how many layers above it were kept.
    for attr in ("model_id", "name_or_path", "revision", "pooling", "preprocessing", "tile_size"):
        value = getattr(backbone, attr, None)
        if value is not None:
            desc[attr] = value if isinstance(value, (str, int, float, bool)) else repr(value)
    model = getattr(backbone, "model", None)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        # Truncating text layers (a gate keeps only those up to its feature layer) changes the
        # config's layer count but not any kept layer's features: leave those keys out.
        desc["model_config"] = hashlib.sha1(
            json.dumps(_without_layer_counts(config.to_dict()), sort_keys=True, default=repr).encode()
        ).hexdigest()
    if getattr(backbone, "num_base_layers", None) is not None:
        desc["num_base_layers"] = int(backbone.num_base_layers)
    if model is not None and hasattr(model, "named_parameters"):
        import torch

        text_layers = getattr(getattr(backbone, "text_model", None), "layers", None)
        skip = {id(p) for p in text_layers.parameters()} if text_layers is not None else set()
        h = hashlib.sha1()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if id(p) in skip:
                    continue
                flat = p.detach().float().reshape(-1)
                h.update(name.encode())
                h.update(np.asarray(flat[:256].cpu().numpy(), dtype=np.float32).tobytes())
                h.update(str(tuple(p.shape)).encode())
        desc["weights"] = h.hexdigest()
    processor = getattr(backbone, "processor", None)
    if processor is not None:
        image_processor = getattr(processor, "image_processor", None)
        if image_processor is not None and hasattr(image_processor, "to_json_string"):
            desc["image_processor"] = hashlib.sha1(image_processor.to_json_string().encode()).hexdigest()
    return desc


def _without_layer_counts(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_layer_counts(v) for k, v in obj.items()
                if k not in ("num_hidden_layers", "layer_types", "_name_or_path", "transformers_version")}
    if isinstance(obj, list):
        return [_without_layer_counts(v) for v in obj]
    return obj


def backbone_fingerprint(backbone: Any, *, extra: Mapping[str, Any] | None = None) -> str:
    """A short hash that changes whenever the backbone's features would change.

    A backbone may define ``fingerprint`` (a string or a method returning one) to take charge;
    otherwise it is derived from its model name, config, weights checksum, preprocessing and
    pooling. ``extra`` folds in anything else the caller's features depend on.
    """
    own = getattr(backbone, "fingerprint", None)
    desc: Any = own() if callable(own) else own
    if desc is None:
        desc = _describe_backbone(backbone)
    payload = json.dumps({"backbone": desc, "extra": dict(extra or {})}, sort_keys=True, default=repr)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


class _Cache:
    """The shard folder of one fingerprint: which (key, layer) pairs are stored and where."""

    def __init__(self, folder: Path, meta: Mapping[str, Any]) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            meta_path.write_text(json.dumps(dict(meta), indent=2, default=repr))
        self.rows: dict[tuple[str, int], np.ndarray] = {}
        for shard in sorted(folder.glob("shard-*.npz")):
            try:
                with np.load(shard) as data:
                    keys = [str(k) for k in data["keys"]]
                    for name in data.files:
                        if not name.startswith("layer_"):
                            continue
                        layer = int(name[len("layer_"):])
                        arr = data[name]
                        for i, key in enumerate(keys):
                            self.rows[(key, layer)] = arr[i]
            except (OSError, ValueError, KeyError):  # a torn shard from an interrupted run
                continue

    def has(self, key: str, layer: int) -> bool:
        return (key, layer) in self.rows

    def write(self, keys: list[str], by_layer: Mapping[int, np.ndarray]) -> None:
        n = len(list(self.folder.glob("shard-*.npz")))
        while (self.folder / f"shard-{n:05d}.npz").exists():
            n += 1
        final = self.folder / f"shard-{n:05d}.npz"
        tmp = self.folder / f".shard-{n:05d}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), **{f"layer_{layer}": arr for layer, arr in by_layer.items()})
        os.replace(tmp, final)
        for layer, arr in by_layer.items():
            for i, key in enumerate(keys):
                self.rows[(key, layer)] = arr[i]


def _open_image(image: Any, base_dir: Path | None):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f"sample image must be a path or a PIL image, got {type(image).__name__}")
    path = Path(image)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.exists():
        raise FileNotFoundError(f"sample image not found: {path}")
    with Image.open(path) as img:
        return img.convert("RGB")


def extract_features(
    samples: Iterable[Mapping[str, Any]],
    backbone: Any,
    *,
    layers: Sequence[int] | None = None,
    base_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> FeatureSet:
    """Pooled backbone features for every sample, for one or several layers, in one pass.

    ``backbone`` is a :class:`cares_integrations.gate.ProxyBackbone` (anything with
    ``extract(images, queries, layers) -> {layer: (n, d) tensor}``). ``layers`` defaults to the
    backbone's own feature layers (``backbone.feature_layers``). Samples already in ``cache_dir``
    for this backbone's fingerprint are not recomputed; new ones are computed in batches of
    ``batch_size`` and appended to the cache. Without ``cache_dir`` nothing is stored.
    """
    samples = list(samples)
    for i, s in enumerate(samples):
        for key in ("id", "image", "question"):
            if key not in s:
                raise KeyError(f"sample {i} has no {key!r} key (need id, image, question)")
    if layers is None:
        layers = getattr(backbone, "feature_layers", None)
        if not layers:
            raise ValueError("give layers=[...]: the backbone does not say which layers it extracts")
    layers = sorted({int(layer) for layer in layers})
    base = Path(base_dir) if base_dir is not None else None
    keys = [sample_key(s) for s in samples]
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dup = next(str(s["id"]) for s, k in zip(samples, keys) if k in seen or seen.add(k))
        raise ValueError(f"duplicate sample {dup!r}: ids must be unique")

    fingerprint = backbone_fingerprint(backbone)
    cache: _Cache | None = None
    if cache_dir is not None:
        cache = _Cache(Path(cache_dir) / fingerprint, {"fingerprint": fingerprint, "backbone": _safe_desc(backbone)})

    stored: dict[tuple[str, int], np.ndarray] = cache.rows if cache is not None else {}
    todo = [i for i, k in enumerate(keys) if any((k, layer) not in stored for layer in layers)]

    if todo:
        import torch

        bar = _progress(len(todo), progress)
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            images = [_open_image(samples[i]["image"], base) for i in idx]
            queries = [str(samples[i]["question"]) for i in idx]
            with torch.inference_mode():
                out = backbone.extract(images, queries, layers=layers)
            missing = [layer for layer in layers if layer not in out]
            if missing:
                raise RuntimeError(f"backbone returned layers {sorted(out)} but {missing} were asked for")
            by_layer = {layer: out[layer].detach().float().cpu().numpy().astype(np.float32) for layer in layers}
            batch_keys = [keys[i] for i in idx]
            if cache is not None:
                cache.write(batch_keys, by_layer)
            else:
                for layer, arr in by_layer.items():
                    for j, key in enumerate(batch_keys):
                        stored[(key, layer)] = arr[j]
            bar.update(len(idx))
        bar.close()

    features = {layer: np.stack([stored[(k, layer)] for k in keys]).astype(np.float32) for layer in layers} if keys else {
        layer: np.zeros((0, 0), np.float32) for layer in layers
    }
    return FeatureSet(ids=[str(s["id"]) for s in samples], features=features, fingerprint=fingerprint,
                      computed=len(todo))


def _safe_desc(backbone: Any) -> Any:
    try:
        own = getattr(backbone, "fingerprint", None)
        return own() if callable(own) else (own or _describe_backbone(backbone))
    except Exception as exc:  # the description is informational only
        return repr(exc)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="features", unit="sample")
