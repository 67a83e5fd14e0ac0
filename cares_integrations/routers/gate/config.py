"""``GateConfig``: everything needed to rebuild a gate, stored as ``cares_gate.json``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...core.policy import DEFAULT_BINS

FORMAT_VERSION = 1
"""Version of the saved-gate format this code writes (and the newest it reads)."""

CONFIG_NAME = "cares_gate.json"
HEAD_NAME = "head.safetensors"

Pooling = Literal["mean", "last"]
Preprocessing = Literal["tile", "upstream"]


class GateConfig(BaseModel):
    """How a gate was built: base model, feature layer(s), pooling, preprocessing, bins, head sizes.

    ``feature_layers`` index the base model's ``hidden_states`` (0 = token embeddings, ``k`` = the
    output of text layer ``k``); several indices are averaged. ``pooling`` is ``"mean"`` (mean over
    attended non-image tokens, the research code) or ``"last"`` (the last attended token, the
    paper). ``preprocessing`` is ``"tile"`` (one tile per image, e.g. 512 px / 64 tokens on SmolVLM)
    or ``"upstream"`` (the processor's defaults: long edge 2048 split into 512 tiles + a global tile,
    what the research code used). Probabilities are ``softmax(logits / temperature)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = Field(default=FORMAT_VERSION, description="Saved-format version.")
    base_model: str = Field(description="Hub id or local folder of the proxy VLM.")
    base_model_revision: str | None = Field(default=None, description="Hub revision (commit, tag, branch) of the base model.")
    feature_layers: tuple[int, ...] = Field(description="hidden_states indices pooled and averaged into the feature.")
    pooling: Pooling = Field(default="mean", description="'mean' over attended non-image tokens, or 'last' token.")
    preprocessing: Preprocessing = Field(default="tile", description="'tile' (one tile per image) or 'upstream'.")
    tile_size: int | None = Field(default=None, description="Tile side in px for 'tile' mode; None: the processor's tile size.")
    bins: tuple[int, ...] = Field(default=DEFAULT_BINS, description="Long side (px) each class stands for.")
    temperature: float = Field(default=1.0, gt=0, description="Calibration temperature T: softmax(logits / T).")
    in_dim: int = Field(gt=0, description="Feature size (the base model's text hidden size).")
    hidden_dim: int = Field(default=256, gt=0, description="Hidden size of the head's MLP.")
    n_classes: int = Field(default=3, gt=1, description="Number of classes (one per bin).")
    num_base_layers: int | None = Field(default=None, description="Text layers of the untruncated base model (informative).")
    labels: str | None = Field(default=None, description="Free text: how the training labels were made.")

    @field_validator("feature_layers", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if isinstance(value, int):
            return (value,)
        return value

    @field_validator("feature_layers")
    @classmethod
    def _layers_valid(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("feature_layers must hold at least one hidden_states index")
        if any(i < 0 for i in value):
            raise ValueError(f"feature_layers must be non-negative hidden_states indices, got {value}")
        return tuple(sorted(set(int(i) for i in value)))

    @field_validator("bins")
    @classmethod
    def _bins_sorted(cls, bins: tuple[int, ...]) -> tuple[int, ...]:
        if list(bins) != sorted(set(bins)) or any(b <= 0 for b in bins):
            raise ValueError(f"bins must be strictly increasing positive pixel sizes, got {bins}")
        return bins

    @field_validator("format_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > FORMAT_VERSION or version < 1:
            raise ValueError(
                f"gate format version {version} is not supported by this cares-integrations "
                f"(reads versions 1..{FORMAT_VERSION}); upgrade the package"
            )
        return version

    @model_validator(mode="after")
    def _classes_match_bins(self) -> "GateConfig":
        if self.n_classes != len(self.bins):
            raise ValueError(f"n_classes ({self.n_classes}) must equal the number of bins {self.bins}")
        return self
