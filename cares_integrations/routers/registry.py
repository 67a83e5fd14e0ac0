"""The router registry behind ``load_router``: names, prefixes and local folders.

A source is resolved in this order, so a built-in name never shadows a folder the caller
clearly meant:

1. a :class:`Router` instance is returned as is; ``None`` is the embedded default router;
2. an ``os.PathLike``, or a string written as a path (``./my-gate``, ``../x``, ``/abs/path``,
   ``~/x``, ``C:\\x``), is a local folder or file: a saved gate, a learned router folder, or a
   folder format registered with :func:`register_folder_format`;
3. ``NAME:ARG`` (``fixed:768``, ``hub:org/gate``) or ``SCHEME://...`` (a URL form, once a
   factory is registered for the scheme) goes to the factory registered under ``NAME``;
4. a bare registered name (``default``, ``text-scale``, ``learned-default``);
5. an existing local folder or file under that relative name;
6. ``org/name``: a hub id (as ``hub:org/name``).

Anything else is a ValueError listing what :func:`list_routers` knows.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.router import Router
from .fixed import FixedRouter

logger = logging.getLogger(__name__)

RouterFactory = Callable[..., Router]
"""``factory(arg, **options) -> Router``. ``arg`` is the text after ``NAME:`` (``"768"`` for
``fixed:768``), the whole source for a URL form (``http://host:8000``), or None for a bare name.
``options`` are load_router's keyword options, ``device`` and ``dtype`` included."""

FolderDetect = Callable[[Path], bool]

_FACTORIES: dict[str, tuple[RouterFactory, bool]] = {}  # name -> (factory, takes an argument)
_FOLDER_FORMATS: list[tuple[str, FolderDetect, Callable[..., Router]]] = []

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.I)
_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


def register_router(name: str, factory: RouterFactory, *, takes_argument: bool = False,
                    replace: bool = False) -> None:
    """Make ``load_router(name)`` (or ``load_router("name:ARG")`` / ``"name://..."`` with
    ``takes_argument=True``) build a router with ``factory(arg, **options)``.

    ValueError for a malformed name, or a name already registered unless ``replace=True``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a router name is lower-case letters, digits, '.', '_' or '-', starting with a letter; got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    if name in _FACTORIES and not replace:
        raise ValueError(f"a router named {name!r} is already registered; pass replace=True to replace it")
    _FACTORIES[name] = (factory, bool(takes_argument))


def register_folder_format(name: str, detect: FolderDetect, load: Callable[..., Router]) -> None:
    """Let local folders in another format load: ``detect(path) -> bool`` recognises one,
    ``load(path, **options) -> Router`` builds its router. Checked before the built-in formats."""
    global _FOLDER_FORMATS
    _FOLDER_FORMATS = [(name, detect, load)] + [f for f in _FOLDER_FORMATS if f[0] != name]


def list_routers() -> list[str]:
    """The registered router names, sorted; those taking an argument are shown as ``name:ARG``."""
    return sorted(f"{name}:ARG" if takes else name for name, (_, takes) in _FACTORIES.items())


def _looks_like_path(text: str) -> bool:
    return (text.startswith(("./", "../", "/", "~", ".\\", "..\\")) or text in (".", "..")
            or bool(re.match(r"^[A-Za-z]:[\\/]", text)))


def _load_folder(path: Path, **options: Any) -> Router:
    """A local router folder or file: a registered format, a calibration (``cares calibrate``),
    a learned router, or a gate."""
    path = path.expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no router at {str(path)!r}: the path does not exist")
    for _, detect, load in _FOLDER_FORMATS:
        if detect(path):
            return load(path, **options)
    from .calibrated import is_calibration_dir, load_calibrated

    if is_calibration_dir(path):
        return load_calibrated(path, **options)
    from .learned import CONFIG_NAME, FORMAT, LearnedDefaultRouter

    config = path / CONFIG_NAME
    if path.is_dir() and config.is_file() and f'"{FORMAT}"' in config.read_text(errors="replace"):
        options.pop("device", None), options.pop("dtype", None)
        return LearnedDefaultRouter(path, **options)
    from .gate import load_gate

    return load_gate(path, **options)


#: The built-in router names ``load_router`` accepts besides ``fixed:N``, a folder and a hub id.
BUILTIN_ROUTERS = ("default", "text-scale", "learned-default")

#: One line naming every source form, for help texts.
ROUTER_SOURCES = ("'default' (text-scale, embedded), 'text-scale', 'learned-default' (small learned router "
                  "in the wheel), 'fixed:N' (always N px on the long side), a saved gate, learned or "
                  "calibrated router folder ('./name'), or a hub id of a gate ('org/name' or 'hub:org/name')")


def fixed_long_side(source: str) -> int:
    """The pixel size of a ``fixed:N`` source; ValueError unless N is a positive integer."""
    text = source.split(":", 1)[1]
    try:
        long_side = int(text)
    except ValueError:
        long_side = 0
    if long_side <= 0:
        raise ValueError(f"fixed router needs a positive pixel size, e.g. 'fixed:768', got {source!r}")
    return long_side


def load_router(source: str | os.PathLike | Router | None = None, *, device: str | None = None,
                dtype: Any = None, **options: Any) -> Router:
    """Load a router by name, prefix, local folder or hub id (the order is in this module's
    docstring).

    - ``None`` or ``"default"``: the embedded default router (no download, no GPU).
    - ``"text-scale"``: the text-scale heuristic router (the default today); ``"learned-default"``:
      the small learned router shipped in the wheel; ``"fixed:768"``: always 768 px.
    - ``"./my-gate"``, ``"/abs/path"``, a ``Path``: a local folder (a CARES gate saved in our
      format, a folder written by ``cares calibrate``: its base router with the fitted operating
      point, a learned router folder, or a research-code state dict given ``base_model=...``).
    - ``"hub:org/gate"`` (or plain ``"org/gate"`` when no such local folder exists): a gate on the
      Hugging Face hub.
    - a :class:`Router` instance is returned as is.

    ``device`` (``"cuda"``, ``"mps"``, ``"cpu"``; picked automatically when None) and ``dtype``
    apply to gates; ``options`` go to the router's constructor (``target``, ``policy``,
    ``free_detail``, ``max_pixels``, ``fetch`` and router-specific ones). More names:
    :func:`register_router`; what is known: :func:`list_routers`.
    """
    if isinstance(source, Router):
        if options or device is not None or dtype is not None:
            raise TypeError("options cannot be applied to an existing Router instance")
        return source
    if device is not None:
        options["device"] = device
    if dtype is not None:
        options["dtype"] = dtype
    router = _build(source, options)
    if router.source is None:
        router.source = "default" if source is None else os.fspath(source)
    return router


def _build(source: str | os.PathLike | None, options: dict[str, Any]) -> Router:
    if source is None:
        return _FACTORIES["default"][0](None, **options)
    if isinstance(source, os.PathLike):
        return _load_folder(Path(source), **options)
    if not isinstance(source, str):
        raise TypeError(f"a router source is a name, a path, a Router or None; got {type(source).__name__}")
    if _looks_like_path(source):
        return _load_folder(Path(source), **options)
    url = _URL.match(source)
    name, sep, arg = (url.group(1).lower(), ":", source) if url else source.partition(":")
    if sep and name in _FACTORIES:
        factory, takes = _FACTORIES[name]
        if not takes:
            raise ValueError(f"router {name!r} takes no argument; use load_router({name!r})")
        if not arg:
            raise ValueError(f"router {name!r} needs an argument, e.g. {name}:ARG")
        return factory(arg, **options)
    if not sep and source in _FACTORIES:
        factory, takes = _FACTORIES[source]
        if takes:
            raise ValueError(f"router {source!r} needs an argument: use {source}:ARG")
        if Path(source).exists():
            logger.warning("load_router(%r): the built-in router is used; a local folder %r exists too, "
                           "load it as './%s'", source, source, source)
        return factory(None, **options)
    if Path(source).expanduser().exists():
        return _load_folder(Path(source), **options)
    if not sep and _HUB_ID.match(source):
        return _FACTORIES["hub"][0](source, **options)
    what = f"unknown router prefix {name!r}" if sep else f"unknown router {source!r}"
    raise ValueError(
        f"{what}: not a registered router ({', '.join(list_routers())}), not an existing local "
        "path, and not a hub id like 'org/name' (write local folders as './name')"
    )


def default_router(**options: Any) -> Router:
    """The embedded default router: needs no download and no GPU.

    The text-scale router. The learned router shipped beside it (``"learned-default"``) becomes
    the default only if it beats text-scale on held-out pages (more tokens saved at the same or
    better retention); on the current recipe's held-out split it does not
    (docs/learned-default.md).
    """
    from .textscale import TextScaleRouter

    return TextScaleRouter(**options)


# -- the built-in routers -------------------------------------------------------------------------


def _without_device(options: dict[str, Any]) -> dict[str, Any]:
    """Options for routers that run on the CPU without torch: ``device``/``dtype`` do not apply."""
    return {k: v for k, v in options.items() if k not in ("device", "dtype")}


def _text_scale(arg: str | None, **options: Any) -> Router:
    from .textscale import TextScaleRouter

    return TextScaleRouter(**_without_device(options))


def _learned(arg: str | None, **options: Any) -> Router:
    from .learned import LearnedDefaultRouter

    return LearnedDefaultRouter(**_without_device(options))


def _fixed(arg: str, **options: Any) -> Router:
    return FixedRouter(fixed_long_side(f"fixed:{arg}"), **_without_device(options))


def _hub(arg: str, **options: Any) -> Router:
    if not _HUB_ID.match(arg):
        raise ValueError(f"a hub id looks like 'org/name', got {arg!r}")
    from .gate import load_gate

    return load_gate(arg, hub=True, **options)


def _remote(url: str, **options: Any) -> Router:
    from ..serve.client import RemoteRouter

    return RemoteRouter(url, **_without_device(options))


register_router("default", lambda arg, **options: default_router(**_without_device(options)))
register_router("text-scale", _text_scale)
register_router("learned-default", _learned)
register_router("fixed", _fixed, takes_argument=True)
register_router("hub", _hub, takes_argument=True)
register_router("http", _remote, takes_argument=True)  # a router service: cares serve (extra serve)
register_router("https", _remote, takes_argument=True)
