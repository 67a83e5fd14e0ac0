"""``load_router``: one call for the embedded default, a saved gate folder, or a hub id."""

from __future__ import annotations

import os
from typing import Any

from ..core.router import Router
from .fixed import FixedRouter


def load_router(source: str | os.PathLike | Router | None = None, *, device: str | None = None,
                dtype: Any = None, **options: Any) -> Router:
    """Load a router.

    - ``None`` or ``"default"``: the embedded default router (no download, no GPU).
    - ``"text-scale"``: the text-scale heuristic router (the default today); ``"learned-default"``:
      the small learned router shipped in the wheel; ``"fixed:768"``: always 768 px.
    - a folder written by ``cares calibrate``: its base router with the fitted operating point
      (:class:`~cares_integrations.routers.calibrated.CalibratedRouter`).
    - a local folder or a hub id: a CARES gate (proxy VLM + head) saved in our format, or a
      research-code state dict given ``base_model=...``.
    - a :class:`Router` instance is returned as is.

    ``device`` (``"cuda"``, ``"mps"``, ``"cpu"``; picked automatically when None) and ``dtype``
    apply to gates; ``options`` go to the router's constructor (``target``, ``policy``,
    ``free_detail``, ``max_pixels``, ``fetch`` and router-specific ones).
    """
    if isinstance(source, Router):
        if options:
            raise TypeError("options cannot be applied to an existing Router instance")
        return source
    if source is None or source == "default":
        return default_router(**options)
    if isinstance(source, str) and source == "text-scale":
        from .textscale import TextScaleRouter

        return TextScaleRouter(**options)
    if isinstance(source, str) and source == "learned-default":
        from .learned import LearnedDefaultRouter

        return LearnedDefaultRouter(**options)
    if isinstance(source, str) and source.startswith("fixed:"):
        try:
            long_side = int(source.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"fixed router needs a pixel size, e.g. 'fixed:768', got {source!r}") from None
        return FixedRouter(long_side, **options)
    from .calibrated import is_calibration_dir, load_calibrated

    if is_calibration_dir(source):
        return load_calibrated(source, device=device, dtype=dtype, **options)
    from .gate import load_gate

    return load_gate(source, device=device, dtype=dtype, **options)


def default_router(**options: Any) -> Router:
    """The embedded default router: needs no download and no GPU.

    The text-scale router. The learned router shipped beside it (``"learned-default"``) becomes
    the default only if it beats text-scale on held-out pages (more tokens saved at the same or
    better retention); on the current recipe's held-out split it does not
    (docs/learned-default.md).
    """
    from .textscale import TextScaleRouter

    return TextScaleRouter(**options)
