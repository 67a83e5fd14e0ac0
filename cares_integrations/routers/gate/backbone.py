"""``ProxyBackbone``: the frozen proxy VLM that turns (page image, question) into a feature vector.

What it does, and why:

- **Truncation.** Text layers above the highest feature layer are deleted at load (and the
  config fixed so the model still runs): they are never computed and never kept in memory.
- **Preprocessing.** ``"tile"`` gives each page ONE tile (512 px / 64 image tokens on SmolVLM):
  the processor's own no-splitting path (long side to the tile, then squared, like SmolVLM's
  global tile). ``"upstream"`` uses the processor's defaults (long edge 2048 split into 512
  tiles plus a global tile, up to 17 tiles), the research code's pipeline.
- **Vision cache.** For Idefics3-style models (SmolVLM) the vision tower + connector output of
  each image is cached by pixel hash, and spliced into the token embeddings at the image-token
  positions, so the same page with a new question skips the vision tower. Other architectures
  run the plain ``model(**processor(...))`` path without the cache.
- **Pooling.** ``"mean"`` over attended non-image tokens (research code) or ``"last"`` attended
  token (paper). Batches are right-padded, so positions match an unpadded run and the last
  token is found from the attention mask.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn

from .device import pick_device, pick_dtype
from ...core.errors import CheckpointError
from ...core.composite import flatten
from ...core.payload import DecodedImage
from ...core.view import ViewSpec, view_image
from .cache import VisionCache, VisionEntry, image_key
from .config import GateConfig, Pooling, Preprocessing

_STRUCTURAL_TOKENS = ("<image>", "<fake_token_around_image>", "<global-img>")


def find_text_model(model: nn.Module) -> nn.Module:
    """The decoder-only language model inside a VLM (the module holding ``layers``)."""
    base = getattr(model, "model", model)
    for name in ("text_model", "language_model"):
        sub = getattr(base, name, None)
        if sub is not None and isinstance(getattr(sub, "layers", None), nn.ModuleList):
            return sub
        inner = getattr(sub, "model", None) if sub is not None else None
        if inner is not None and isinstance(getattr(inner, "layers", None), nn.ModuleList):
            return inner
    raise CheckpointError(
        f"cannot find the text decoder's layers in {type(model).__name__}; "
        "expected model.text_model.layers or model.language_model.layers"
    )


def truncate_text_layers(text_model: nn.Module, keep: int) -> int:
    """Delete the decoder layers above ``keep`` and fix the config; returns the original count.

    ``hidden_states[k]`` of the truncated model then equals ``hidden_states[k]`` of the full one
    for every ``k <= keep``: when layers are removed the final norm (applied to the last hidden
    state only) is replaced by the identity, so the last kept layer's output stays un-normed.
    """
    layers = text_model.layers
    total = len(layers)
    if not 0 <= keep <= total:
        raise ValueError(f"cannot keep {keep} of {total} text layers")
    if keep == total:
        return total
    del layers[keep:]
    cfg = text_model.config
    cfg.num_hidden_layers = keep
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = list(cfg.layer_types)[:keep]
    if hasattr(text_model, "norm"):
        text_model.norm = nn.Identity()
    return total


def _pil(image: Image.Image | DecodedImage) -> Image.Image:
    img = image.image if isinstance(image, DecodedImage) else image
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL image or DecodedImage, got {type(image).__name__}")
    return flatten(img, "RGB")


class ProxyBackbone:
    """A frozen, truncated proxy VLM with its processor: ``extract`` gives pooled hidden states.

    Build with :meth:`from_pretrained`. ``feature_layers`` are ``hidden_states`` indices
    (0 = embeddings; default: the middle layer, ``num_hidden_layers // 2``); the model keeps
    only the text layers up to the highest one (``truncate=False`` keeps all, for layer sweeps).
    Thread-safe: one lock guards the model and tokenizer; the vision cache has its own.
    """

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        *,
        feature_layers: Sequence[int] | int | None = None,
        pooling: Pooling = "mean",
        preprocessing: Preprocessing = "tile",
        device: str | torch.device | None = None,
        truncate: bool = True,
        cache_size: int = 256,
        batch_size: int = 16,
        model_id: str | None = None,
        revision: str | None = None,
    ) -> None:
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}")
        if preprocessing not in ("tile", "upstream"):
            raise ValueError(f"preprocessing must be 'tile' or 'upstream', got {preprocessing!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_id, self.revision = model_id, revision
        self.processor = processor
        self.pooling: Pooling = pooling
        self.preprocessing: Preprocessing = preprocessing
        self.batch_size = int(batch_size)
        # Keep the base model only: the LM head is never needed.
        self.model = getattr(model, "model", model) if hasattr(model, "lm_head") else model
        self.model.eval()
        self.model.requires_grad_(False)
        self.text_model = find_text_model(self.model)
        self.num_base_layers = len(self.text_model.layers)
        if feature_layers is None:
            feature_layers = [self.num_base_layers // 2]
        elif isinstance(feature_layers, int):
            feature_layers = [feature_layers]
        layers = sorted(set(int(i) for i in feature_layers))
        if not layers or layers[0] < 0 or layers[-1] > self.num_base_layers:
            raise ValueError(
                f"feature_layers {list(feature_layers)} out of range: hidden_states indices go from 0 "
                f"(embeddings) to {self.num_base_layers}"
            )
        self.feature_layers: tuple[int, ...] = tuple(layers)
        if truncate:
            truncate_text_layers(self.text_model, self.feature_layers[-1])
        self.num_layers = len(self.text_model.layers)
        self.device = pick_device(device) if device is not None else next(self.model.parameters()).device
        self.model.to(self.device)
        self.dtype = next(self.model.parameters()).dtype
        config = self.model.config
        self.image_token_id = getattr(config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(config, "image_token_index", None)
        self.hidden_size = int(getattr(self.text_model.config, "hidden_size"))
        # The spliced fast path needs Idefics3's processor layout and get_image_features.
        self.splice = (
            type(processor).__name__ == "Idefics3Processor"
            and hasattr(self.model, "get_image_features")
            and self.image_token_id is not None
        )
        self.cache = VisionCache(cache_size if self.splice else 0)
        self._lock = threading.RLock()
        self.vision_calls = 0

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str,
        *,
        feature_layers: Sequence[int] | int | None = None,
        pooling: Pooling = "mean",
        preprocessing: Preprocessing = "tile",
        device: str | torch.device | None = None,
        dtype: Any = None,
        revision: str | None = None,
        truncate: bool = True,
        cache_size: int = 256,
        batch_size: int = 16,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
    ) -> "ProxyBackbone":
        """Load a VLM with ``AutoModelForImageTextToText`` + ``AutoProcessor`` and wrap it.

        ``device``/``dtype`` default to :func:`pick_device` / :func:`pick_dtype` (bf16 on CUDA,
        fp32 on CPU). ``model_kwargs``/``processor_kwargs`` pass through to transformers.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from .hub import local_files_only

        dev = pick_device(device)
        dt = pick_dtype(dev, dtype)
        offline = {"local_files_only": True} if local_files_only(
            str(model_id_or_path), "config.json", revision=revision, what="proxy VLM") else {}
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                model_id_or_path, revision=revision, dtype=dt, **offline, **(model_kwargs or {})
            )
            processor = AutoProcessor.from_pretrained(model_id_or_path, revision=revision, **offline,
                                                      **(processor_kwargs or {}))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"could not load the proxy VLM {model_id_or_path!r}: {exc}") from exc
        return cls(
            model, processor, feature_layers=feature_layers, pooling=pooling, preprocessing=preprocessing,
            device=dev, truncate=truncate, cache_size=cache_size, batch_size=batch_size,
            model_id=str(model_id_or_path), revision=revision,
        )

    # -- public API -------------------------------------------------------------------------------
    @property
    def tile_size(self) -> int:
        """Side in px of one vision tile (SmolVLM: 512)."""
        ip = self.processor.image_processor
        mis = getattr(ip, "max_image_size", None)
        if isinstance(mis, dict) and "longest_edge" in mis:
            return int(mis["longest_edge"])
        return int(getattr(self.model.config, "vision_config").image_size)

    @property
    def view_spec(self) -> ViewSpec:
        """What the backbone reads of a page: RGB (alpha on white), the long side fitted to one tile
        under ``"tile"`` preprocessing, or to the processor's long edge under ``"upstream"``."""
        if self.preprocessing == "tile":
            return ViewSpec(mode="RGB", fit_long_side=self.tile_size)
        longest = (getattr(self.processor.image_processor, "size", None) or {}).get("longest_edge")
        return ViewSpec(mode="RGB", fit_long_side=int(longest) if longest else None)

    def extract(
        self,
        images: Sequence[Image.Image | DecodedImage],
        queries: Sequence[str],
        layers: Sequence[int] | None = None,
    ) -> dict[int, torch.Tensor]:
        """Pooled features per requested ``hidden_states`` index: ``{layer: (n, hidden) float32}``.

        All requested layers come from ONE forward pass (for layer sweeps). ``layers`` defaults to
        ``feature_layers``; each must be <= the number of kept layers. Tensors are float32 on the
        backbone's device, in input order.
        """
        images = list(images)
        queries = list(queries)
        if len(images) != len(queries):
            raise ValueError(f"got {len(images)} images but {len(queries)} queries")
        wanted = tuple(sorted(set(int(i) for i in (layers if layers is not None else self.feature_layers))))
        if not wanted or wanted[0] < 0 or wanted[-1] > self.num_layers:
            raise ValueError(
                f"layers {list(wanted)} out of range: this backbone keeps hidden_states 0..{self.num_layers}"
                + (" (load with truncate=False for deeper layers)" if self.num_layers < self.num_base_layers else "")
            )
        for i, q in enumerate(queries):
            if not isinstance(q, str):
                raise TypeError(f"query {i} must be a string, got {type(q).__name__}")
        if not images:
            return {k: torch.empty(0, self.hidden_size, device=self.device) for k in wanted}
        pils = [view_image(_pil(img), self.view_spec) for img in images]
        chunks: list[dict[int, torch.Tensor]] = []
        for start in range(0, len(pils), self.batch_size):
            stop = start + self.batch_size
            chunks.append(self._extract_batch(pils[start:stop], queries[start:stop], wanted))
        return {k: torch.cat([c[k] for c in chunks]) for k in wanted}

    def features(self, images: Sequence[Image.Image | DecodedImage], queries: Sequence[str]) -> torch.Tensor:
        """The configured feature: ``feature_layers`` pooled and averaged, ``(n, hidden)`` float32."""
        per_layer = self.extract(images, queries, self.feature_layers)
        return torch.stack([per_layer[k] for k in self.feature_layers]).mean(0)

    def gate_config(self, **fields: Any) -> "GateConfig":
        """A :class:`GateConfig` describing this backbone (base model, layers, pooling, preprocessing,
        ``in_dim``); ``fields`` add or override the rest (``bins``, ``hidden_dim``, ``temperature``...)."""
        from .config import GateConfig

        values: dict[str, Any] = dict(
            base_model=self.model_id or "", base_model_revision=self.revision, feature_layers=self.feature_layers,
            pooling=self.pooling, preprocessing=self.preprocessing, in_dim=self.hidden_size,
            num_base_layers=self.num_base_layers,
        )
        values.update(fields)
        if "bins" in fields and "n_classes" not in fields:
            values["n_classes"] = len(values["bins"])
        return GateConfig(**values)

    def prompt(self, query: str) -> str:
        """The chat-template prompt for one question: one user turn [image, question], no generation prompt."""
        for tok in _STRUCTURAL_TOKENS:
            if tok in query:  # a literal image token in a question would break the image layout
                query = query.replace(tok, "< " + tok[1:])
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)

    def image_kwargs(self) -> dict[str, Any]:
        """Image-processor overrides of the preprocessing mode (``{}`` for ``"upstream"``)."""
        if self.preprocessing == "upstream":
            return {}
        tile = self.tile_size
        if type(self.processor).__name__ in ("Idefics3Processor", "SmolVLMProcessor"):
            return {"do_image_splitting": False, "size": {"longest_edge": tile}, "max_image_size": {"longest_edge": tile}}
        return {}

    # -- internals --------------------------------------------------------------------------------
    def _prepare_generic(self, pils: list[Image.Image]) -> list[Image.Image]:
        if self.preprocessing == "tile" and not self.image_kwargs():
            tile = self.tile_size
            out = []
            for img in pils:
                w, h = img.size
                scale = tile / max(w, h)
                if scale < 1:
                    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
                out.append(img)
            return out
        return pils

    def _vision(self, pils: list[Image.Image]) -> list[VisionEntry]:
        """Vision tower + connector for images not in the cache (one batched call)."""
        enc = self.processor.image_processor(
            [[img] for img in pils], return_tensors="pt", return_row_col_info=True, **self.image_kwargs()
        )
        pixel_values = enc["pixel_values"].to(self.device, self.dtype)
        pixel_mask = enc.get("pixel_attention_mask")
        if pixel_mask is not None:
            pixel_mask = pixel_mask.to(self.device)
        self.vision_calls += 1
        out = self.model.get_image_features(pixel_values, pixel_mask, return_dict=True)
        # transformers 5 returns an output object (per-image list in pooler_output); 4.x a tensor
        feats = out if isinstance(out, torch.Tensor) else out.pooler_output
        if isinstance(feats, torch.Tensor):
            feats = list(feats.reshape(len(pils), -1, feats.shape[-1]))
        rows = [r[0] for r in enc["rows"]]
        cols = [c[0] for c in enc["cols"]]
        return [VisionEntry(f.reshape(-1, f.shape[-1]), int(r), int(c)) for f, r, c in zip(feats, rows, cols)]

    def _extract_batch(self, pils: list[Image.Image], queries: list[str], wanted: tuple[int, ...]) -> dict[int, torch.Tensor]:
        with self._lock, torch.inference_mode():
            if self.splice:
                input_ids, attention_mask, hidden_states = self._forward_spliced(pils, queries, wanted)
            else:
                input_ids, attention_mask, hidden_states = self._forward_generic(pils, queries, wanted)
            return {k: self._pool(hidden_states[k], input_ids, attention_mask) for k in wanted}

    def _forward_spliced(self, pils, queries, wanted):
        prep_key = (self.preprocessing, self.tile_size)
        keys = [image_key(img, prep_key) for img in pils]
        entries: list[VisionEntry | None] = [self.cache.get(k) for k in keys]
        todo: dict[tuple, int] = {}
        for i, entry in enumerate(entries):
            if entry is None:
                todo.setdefault(keys[i], i)
        if todo:
            computed = self._vision([pils[i] for i in todo.values()])
            fresh = dict(zip(todo.keys(), computed))
            for key, entry in fresh.items():
                self.cache.put(key, entry)
            entries = [e if e is not None else fresh[k] for e, k in zip(entries, keys)]
        texts = []
        for q, entry in zip(queries, entries):
            layout = {"rows": [[entry.rows]], "cols": [[entry.cols]]}
            expanded = self.processor.replace_image_token(layout, 0)
            texts.append(self.prompt(q).replace(self.processor.image_token, expanded, 1))
        enc = self.processor.tokenizer(texts, padding=True, padding_side="right", return_tensors="pt")
        input_ids = enc["input_ids"].to(self.device)
        attention_mask = enc["attention_mask"].to(self.device)
        embeds = self.model.get_input_embeddings()(input_ids)
        image_mask = input_ids == self.image_token_id
        feats = torch.cat([e.features for e in entries]).to(embeds.dtype)
        if int(image_mask.sum()) != feats.shape[0]:
            raise RuntimeError(
                f"image tokens ({int(image_mask.sum())}) and image features ({feats.shape[0]}) do not match"
            )
        embeds = embeds.masked_scatter(image_mask.unsqueeze(-1), feats)
        out = self.text_model(
            inputs_embeds=embeds, attention_mask=attention_mask, output_hidden_states=True, use_cache=False
        )
        return input_ids, attention_mask, out.hidden_states

    def _forward_generic(self, pils, queries, wanted):
        texts = [self.prompt(q) for q in queries]
        enc = self.processor(
            text=texts, images=[[img] for img in self._prepare_generic(pils)], padding=True,
            padding_side="right", return_tensors="pt", **self.image_kwargs(),
        )
        enc = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in enc.items()}
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
        self.vision_calls += 1
        out = self.model(**enc, output_hidden_states=True, use_cache=False)
        return enc["input_ids"], enc["attention_mask"], out.hidden_states

    def _pool(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()
        attended = attention_mask.bool()
        if self.pooling == "last":
            positions = torch.arange(attended.shape[1], device=attended.device).expand_as(attended)
            last = torch.where(attended, positions, torch.full_like(positions, -1)).max(dim=1).values
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        mask = attended
        if self.image_token_id is not None:
            mask = mask & (input_ids != self.image_token_id)
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def __repr__(self) -> str:
        return (
            f"ProxyBackbone(model={self.model_id!r}, layers={self.num_layers}/{self.num_base_layers}, "
            f"feature_layers={self.feature_layers}, pooling={self.pooling!r}, preprocessing={self.preprocessing!r}, "
            f"device={str(self.device)!r}, dtype={self.dtype}, cache={self.cache!r})"
        )
