"""The result of routing one image for one question."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RouteDecision(BaseModel):
    """What a router decided for one (image, question) pair, and what it will cost.

    ``long_side`` is the smallest long side the router asks for (never above the image's own);
    ``send_size`` is the exact (width, height) to send after provider-aware sizing for
    ``target``; token counts are for ``target`` when one was named.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    router: str = Field(description="Name of the router that made the decision.")
    long_side: int = Field(description="Long side in pixels the router asked for, clamped to the original.")
    original_size: tuple[int, int] = Field(description="(width, height) of the image as received, EXIF-oriented.")
    send_size: tuple[int, int] = Field(description="(width, height) to send to the model.")
    target: str | None = Field(default=None, description="Target model whose token rules sized the image.")
    tokens_before: int | None = Field(default=None, description="Visual tokens the target charges for the original.")
    tokens_after: int | None = Field(default=None, description="Visual tokens the target charges for send_size.")
    probabilities: list[float] | None = Field(default=None, description="Class probabilities, one per bin.")
    bins: list[int] | None = Field(default=None, description="Long sides the classes stand for.")
    mode: Literal["continuous", "discrete", "direct"] = Field(
        default="direct", description="How probabilities became a long side ('direct' if the router gave one)."
    )
    raw_long_side: float | None = Field(default=None, description="The policy's long side before rounding and clamps.")
    notes: list[str] = Field(default_factory=list, description="What was done to read the image (frames, EXIF, mode).")
    step: str | None = Field(default=None, description="The target's cost step the image lands in ('detail=low', "
                             "'detail=high, 2 tiles', 'media_resolution=MEDIA_RESOLUTION_LOW', 'max_num=4, 2x2 tiles').")
    request_knobs: dict[str, Any] = Field(
        default_factory=dict, description="Provider request fields written into the image block ('detail', 'media_resolution')."
    )
    processor_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Local processor arguments that realise the decision ('max_num', "
        "'longest_edge', 'min_pixels'/'max_pixels'); see cares_integrations.processors."
    )
    cannot_save: str | None = Field(
        default=None, description="Why routing saves nothing on this target, when it does not."
    )
    bytes_before: int | None = Field(default=None, description="Encoded bytes of the image as received.")
    bytes_after: int | None = Field(default=None, description="Encoded bytes of the image as sent.")
    payload: str | None = Field(
        default=None, description="What was sent: 'resized', 'original' (untouched), or why it was re-encoded."
    )

    @property
    def resized(self) -> bool:
        """Whether the image will be sent at a size other than its original."""
        return tuple(self.send_size) != tuple(self.original_size)

    @property
    def tokens_saved(self) -> int | None:
        """Visual tokens saved for the target, if a target was named."""
        if self.tokens_before is None or self.tokens_after is None:
            return None
        return self.tokens_before - self.tokens_after

    def summary(self) -> str:
        """One human-readable line: sizes, and tokens for the target when known."""
        ow, oh = self.original_size
        sw, sh = self.send_size
        line = f"{self.router}: {ow}x{oh} -> {sw}x{sh} (asked long side {self.long_side})"
        if self.target and self.tokens_before is not None:
            line += f"; {self.target}: {self.tokens_before} -> {self.tokens_after} visual tokens"
            if self.step:
                line += f" ({self.step})"
        if self.cannot_save:
            line += f"; {self.cannot_save}"
        return line
