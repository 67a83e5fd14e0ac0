"""Which local files an image may be read from: the local-file policy.

Strings that arrive inside framework objects (message blocks, node URLs, tool arguments,
document metadata) are untrusted: a path or ``file://`` URL in them is read only under a
:class:`LocalFilePolicy` naming the folders it may come from. Paths handed directly to the
Python API (``router.route("page.png")``, :func:`~cares_integrations.route_and_resize`, the CLI)
are the caller's own and may come from anywhere, see :data:`ANY_LOCAL_FILE`.

Either way only a regular file under a byte limit is read: never a device, a FIFO, a socket,
or anything under ``/proc``, ``/sys`` or ``/dev``, and never more than ``max_bytes``.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ImageDecodeError, ImageSkipped

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
"""Largest image file read by default: 64 MiB (a 600-dpi A3 PNG scan is about 40 MiB)."""

_SPECIAL_ROOTS = tuple(Path(p) for p in ("/proc", "/sys", "/dev"))


class LocalFilePolicy(BaseModel):
    """Which local image files may be read.

    ``roots``: the folders files may come from (paths are resolved, symlinks followed and the
    result checked again); ``None`` means anywhere, which is only right for paths the
    program itself chose. ``max_bytes``: the largest file read.

    Example: ``CaresImageResizer(local_files=LocalFilePolicy(roots=["/srv/pages"]))`` lets
    message blocks name page files under ``/srv/pages`` and nothing else.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    roots: Optional[tuple[Path, ...]] = Field(
        default=None, description="Folders image files may be read from (resolved); None: anywhere."
    )
    max_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, gt=0, description="Largest file read, in bytes.")

    @field_validator("roots", mode="before")
    @classmethod
    def _resolve_roots(cls, roots: Any) -> Any:
        if roots is None:
            return None
        if isinstance(roots, (str, os.PathLike)):
            roots = (roots,)
        return tuple(Path(r).expanduser().resolve() for r in roots)

    def allows(self, path: Path) -> bool:
        """Whether the resolved ``path`` lies under one of the roots (always, with no roots set)."""
        if self.roots is None:
            return True
        return any(path == root or path.is_relative_to(root) for root in self.roots)


ANY_LOCAL_FILE = LocalFilePolicy()
"""The policy for paths the caller passes directly: any regular file under the default byte limit."""

NO_LOCAL_FILES: LocalFilePolicy | None = None
"""The policy for strings inside framework objects unless the caller opts in: no file is read."""


def file_url_path(url: str) -> str:
    """The local path of a ``file:`` URL; ImageSkipped for one naming another host."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ImageSkipped("file URL naming another host left as is")
    return urllib.request.url2pathname(parts.path)


def read_capped(read: Callable[[int], bytes], max_bytes: int, what: str,
                before_each: Callable[[], object] | None = None) -> bytes:
    """Everything ``read(n)`` returns until it returns ``b""``, refused once it passes ``max_bytes``
    (never more than ``max_bytes + 1`` bytes are asked for). ``before_each`` runs before every read
    (a deadline check, say)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        if before_each is not None:
            before_each()
        chunk = read(min(1 << 20, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise ImageDecodeError(f"{what} is over the {max_bytes}-byte limit")


def read_local_file(path: str | os.PathLike, policy: LocalFilePolicy | None, what: str = "image file") -> bytes:
    """The bytes of a local image file, if ``policy`` allows it.

    ``policy`` None: the file is not read; :class:`ImageSkipped` says so (the caller passes the
    original through). Otherwise the path is resolved (symlinks followed), checked against the
    policy's roots, opened without following a final symlink and without blocking, and read
    only if it is a regular file of at most ``max_bytes`` outside ``/proc``, ``/sys`` and
    ``/dev``. Raises :class:`ImageSkipped` for a path outside the roots and
    :class:`ImageDecodeError` for anything else wrong; neither carries the file's bytes.
    """
    if policy is None:
        raise ImageSkipped(
            "local path left as is: local files are not read from this input "
            "(pass local_files=LocalFilePolicy(roots=[...]) to allow a folder)"
        )
    try:
        resolved = Path(os.fspath(path)).expanduser().resolve(strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ImageDecodeError(f"cannot read {what}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from exc
    if any(resolved == r or resolved.is_relative_to(r) for r in _SPECIAL_ROOTS):
        raise ImageDecodeError(f"cannot read {what}: /proc, /sys and /dev are never read")
    if not policy.allows(resolved):
        raise ImageSkipped("local path left as is: it is outside the local-file policy's folders")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {what}: {exc.strerror or type(exc).__name__}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError(f"cannot read {what}: not a regular file (devices, FIFOs and sockets are never read)")
        if info.st_size > policy.max_bytes:
            raise ImageDecodeError(f"{what} is {info.st_size} bytes, over the {policy.max_bytes}-byte limit")
        return read_capped(lambda n: os.read(fd, n), policy.max_bytes, what)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {what}: {exc.strerror or type(exc).__name__}") from exc
    finally:
        os.close(fd)
