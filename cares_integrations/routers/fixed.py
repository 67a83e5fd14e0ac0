"""``FixedRouter``: always the same long side. The baseline every router must beat."""

from __future__ import annotations

from typing import Any

from ..core.payload import DecodedImage
from ..core.router import Prediction, Router


class FixedRouter(Router):
    """A router that always asks for the same long side: a baseline, and handy in tests."""

    def __init__(self, long_side: int, **options: Any) -> None:
        super().__init__(**options)
        if int(long_side) <= 0:
            raise ValueError(f"long_side must be positive, got {long_side}")
        self.fixed_long_side = int(long_side)
        self.name = f"fixed-{self.fixed_long_side}"

    def _identity(self) -> dict[str, Any]:
        return {"long_side": self.fixed_long_side}

    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        return [Prediction(long_side=self.fixed_long_side) for _ in images]
