"""Fail fast, with one clear line, when a hub id is asked for and the hub cannot be reached.

``huggingface_hub`` retries an unreachable hub for tens of seconds before giving up. Before any
download we check, in well under a second, whether the hub (or the https proxy) accepts a
connection. A copy already in the cache is then used without the network; otherwise the error
names the id, the cache folder looked in, and the two ways to use a local copy.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

from ...core.errors import CheckpointError

PROBE_TIMEOUT = 3.0


def _probe_address() -> tuple[str, int]:
    from huggingface_hub import constants

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    parts = urllib.parse.urlsplit(proxy or constants.ENDPOINT)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the hub endpoint (``HF_ENDPOINT``, or the https proxy) accepts a TCP connection."""
    host, port = _probe_address()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def local_files_only(model_id: str, filename: str, *, revision: str | None = None, what: str = "model") -> bool:
    """Whether loading ``model_id`` must use the cache only; raises when it cannot load at all.

    A local folder, or ``HF_HUB_OFFLINE`` set, needs no check (False / True as the hub library
    decides). With the hub unreachable: True when ``filename`` of ``model_id`` is cached, else a
    :class:`CheckpointError` in one line saying where it looked and how to use a local copy.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    if Path(model_id).expanduser().exists() or constants.HF_HUB_OFFLINE:
        return False
    if hub_reachable():
        return False
    cached = try_to_load_from_cache(model_id, filename, revision=revision)
    if isinstance(cached, str):
        return True
    host, port = _probe_address()
    raise CheckpointError(
        f"cannot reach the Hugging Face hub ({host}:{port}) for the {what} {model_id!r}, and it is not in "
        f"the cache folder {constants.HF_HUB_CACHE}; download it where there is a network and pass its "
        f"local folder instead of the id, or set HF_HUB_OFFLINE=1 (and HF_HOME or HF_HUB_CACHE) to use "
        f"a cached copy"
    )
