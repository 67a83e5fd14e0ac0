"""``CalibratedRouter``: any router with a safety margin fitted on the user's own labels.

A calibration (``cares calibrate``, :func:`cares_integrations.training.calibrate.calibrate`)
picks an operating point ``(scale, floor)`` for a base router: the long side sent is

    L = max(floor, scale * base long side), rounded up to the calibration's size grid,

and the page as is when that is above the grid or the page. The grid holds the resolutions the
labels were scored at, so every size the router sends is one the guarantee was checked at.
``scale = 0`` is the fixed size ``floor``: the family holds the fixed sizes, so a calibrated
router is never worse on the sample than the best fixed size the sample supports.

A calibration folder holds ``calibration.json``: the base router's source (``default``,
``text-scale``, ``learned-default``, ``fixed:N`` or a gate folder), the operating point, the
grid and the report. :func:`cares_integrations.load_router` loads such a folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import CheckpointError
from ..core.geometry import snap_long_side
from ..core.payload import DecodedImage
from ..core.router import Prediction, Router

__all__ = ["CALIBRATION_NAME", "CalibratedRouter", "base_long_side", "is_calibration_dir", "load_calibrated"]

CALIBRATION_NAME = "calibration.json"
FORMAT = "cares-calibrated"
FORMAT_VERSION = 1


def base_long_side(router: Router, decoded: DecodedImage, prediction: Prediction) -> float:
    """The long side ``router`` asks for on a page (its policy's clamps applied, capped at the
    page): what a calibration scales. Shared by fitting and routing so they cannot drift."""
    image_long = max(decoded.size)
    if prediction.probabilities is not None:
        raw = router.policy.raw_long_side(prediction.probabilities)
    else:
        raw = float(prediction.long_side)  # type: ignore[arg-type]
    return float(router.policy.clamp(raw, image_long))


class CalibratedRouter(Router):
    """A base router with a fitted operating point: ``max(floor, scale * base)`` snapped up to
    ``grid`` (see the module docstring). ``report`` is the calibration's report (a dict)."""

    def __init__(self, base: Router, *, scale: float, floor: int, grid: Sequence[int],
                 base_source: str | None = None, report: dict | None = None, **options: Any) -> None:
        options.setdefault("target", base.target)
        options.setdefault("free_detail", base.free_detail)
        options.setdefault("max_pixels", base.max_pixels)
        options.setdefault("fetch", base.fetch)
        super().__init__(**options)
        if not scale >= 0 or int(floor) < 0:
            raise ValueError(f"scale and floor must be >= 0, got scale={scale}, floor={floor}")
        grid = sorted({int(g) for g in grid})
        if not grid or grid[0] <= 0:
            raise ValueError(f"grid must hold positive pixel sizes, got {grid}")
        self.base = base
        self.scale = float(scale)
        self.floor = int(floor)
        self.grid = grid
        self.base_source = base_source
        self.report = dict(report or {})
        self.name = f"calibrated({base.name})"

    def long_side_for(self, base_long: float, native_long: int) -> int:
        """The long side sent for a page whose base router asked ``base_long``."""
        return snap_long_side(max(float(self.floor), self.scale * float(base_long)), self.grid, native_long)

    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        if self.scale == 0:  # a fixed size: the base router is not needed
            return [Prediction(long_side=self.long_side_for(0.0, max(d.size))) for d in images]
        predictions = self.base.predict(images, queries)
        return [Prediction(long_side=self.long_side_for(base_long_side(self.base, d, p), max(d.size)))
                for d, p in zip(images, predictions)]

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``calibration.json`` into ``out_dir``; returns its path."""
        if not self.base_source:
            raise ValueError("this calibrated router has no base_source (a load_router source string); "
                             "pass one to save it")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / CALIBRATION_NAME
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "base": self.base_source,
                   "scale": self.scale, "floor": self.floor, "grid": self.grid, "report": self.report}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return path


def is_calibration_dir(source: Any) -> bool:
    """Whether ``source`` is a folder holding a calibration."""
    try:
        return isinstance(source, (str, os.PathLike)) and (Path(source) / CALIBRATION_NAME).is_file()
    except OSError:
        return False


def load_calibrated(folder: str | os.PathLike, *, device: str | None = None, dtype: Any = None,
                    **options: Any) -> CalibratedRouter:
    """Load a calibration folder: the base router (through ``load_router``) and its operating
    point. ``options`` go to the base router (``target``, ``max_pixels``, ...)."""
    path = Path(folder) / CALIBRATION_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the calibration: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a CARES calibration (format {FORMAT!r} expected)")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {data.get('format_version')} is newer than this "
                              f"library reads ({FORMAT_VERSION}); upgrade cares-integrations")
    try:
        base_source, scale, floor, grid = str(data["base"]), float(data["scale"]), int(data["floor"]), list(data["grid"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed calibration ({exc!r})") from exc
    if base_source != "default" and not base_source.startswith(("fixed:", "text-scale", "learned-default")):
        resolved = Path(base_source)
        if not resolved.is_absolute():
            resolved = Path(folder) / resolved
        if resolved.exists():
            base_source = str(resolved)
    if is_calibration_dir(base_source):
        raise CheckpointError(f"{path}: a calibration's base cannot itself be a calibration")
    from .registry import load_router

    base = load_router(base_source, device=device, dtype=dtype, **options)
    return CalibratedRouter(base, scale=scale, floor=floor, grid=grid, base_source=str(data["base"]),
                            report=data.get("report"))
