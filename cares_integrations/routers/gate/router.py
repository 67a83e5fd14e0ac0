"""``CaresGateRouter``: a proxy VLM + small head that predicts class probabilities over the bins."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ...core.batching import MicroBatcher
from ...core.payload import DecodedImage
from ...core.policy import ResolutionPolicy
from ...core.router import Prediction, Router
from ...core.view import ViewSpec
from .backbone import ProxyBackbone
from .config import GateConfig
from .head import GateHead


class CaresGateRouter(Router):
    """The CARES gate: pooled proxy-VLM features -> :class:`GateHead` -> ``softmax(logits / T)``.

    ``router_options`` are the base :class:`Router` options (``policy``, ``target``,
    ``free_detail``, ``max_pixels``, ``fetch``); the policy's bins default to the config's.
    ``max_batch_size``/``max_wait_ms`` bound the micro-batches that concurrent :meth:`aroute`
    calls are gathered into. Thread-safe.
    """

    name = "cares-gate"

    def __init__(
        self,
        backbone: ProxyBackbone,
        head: GateHead,
        config: GateConfig,
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        **router_options: Any,
    ) -> None:
        self.config = config
        policy = router_options.pop("policy", None) or ResolutionPolicy(bins=config.bins)
        self._check_policy(policy)
        super().__init__(policy=policy, **router_options)
        if head.in_dim != backbone.hidden_size:
            raise ValueError(f"head expects {head.in_dim}-d features but the backbone gives {backbone.hidden_size}-d")
        if head.n_classes != config.n_classes:
            raise ValueError(f"head has {head.n_classes} classes but the config says {config.n_classes}")
        self.backbone = backbone
        self.head = head.to(backbone.device).float().eval()
        self.head.requires_grad_(False)
        self.batcher: MicroBatcher[tuple[DecodedImage, str], Prediction] = MicroBatcher(
            self._predict_items, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms
        )

    # -- prediction ---------------------------------------------------------------------------------
    def logits(self, images: Sequence[Any], queries: Sequence[str]) -> torch.Tensor:
        """Raw head logits ``(n, n_classes)`` (float32, on the backbone's device)."""
        feats = self.backbone.features(images, queries)
        with torch.inference_mode():
            return self.head(feats)

    def probabilities(self, images: Sequence[Any], queries: Sequence[str]) -> torch.Tensor:
        """Calibrated class probabilities: ``softmax(logits / temperature)``, ``(n, n_classes)`` on CPU."""
        return torch.softmax(self.logits(images, queries) / self.config.temperature, dim=-1).cpu()

    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        probs = self.probabilities(images, queries)
        return [Prediction(probabilities=row.tolist()) for row in probs]

    def _predict_items(self, items: list[tuple[DecodedImage, str]]) -> list[Prediction]:
        return self._predict([d for d, _ in items], [q for _, q in items])

    # -- async: concurrent calls share micro-batches --------------------------------------------------
    async def _apredict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        """Concurrent async calls are gathered into shared batches (bounded by
        ``max_batch_size``/``max_wait_ms``), run in a worker thread."""
        return await self.batcher.submit_many(list(zip(images, queries)))

    def _identity(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(mode="json")}

    @property
    def view_spec(self) -> ViewSpec:
        """The backbone's view: one RGB tile (512 px on SmolVLM) under ``"tile"`` preprocessing."""
        return self.backbone.view_spec

    def _check_policy(self, policy: ResolutionPolicy) -> None:
        if len(policy.bins) != self.config.n_classes:
            raise ValueError(
                f"the policy has {len(policy.bins)} bins {policy.bins} but the gate predicts {self.config.n_classes} classes"
            )

    # -- persistence ----------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``cares_gate.json`` + ``head.safetensors`` to ``path`` (our format; see ``load_gate``)."""
        from .checkpoint import save_gate

        save_gate(path, self.config, self.head)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CaresGateRouter(base_model={c.base_model!r}, feature_layers={c.feature_layers}, pooling={c.pooling!r}, "
            f"preprocessing={c.preprocessing!r}, bins={c.bins}, T={c.temperature}, policy={self.policy!r}, "
            f"target={self.target!r}, device={str(self.backbone.device)!r})"
        )
