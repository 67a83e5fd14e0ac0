"""Shared fixtures: small rendered document pages in every encoded form (rendered by
``helpers.render_page``).

Area-specific fixtures (tiny models, framework objects) live in their own test modules or
helper files; keep this one small.
"""

from __future__ import annotations

import base64

import pytest
from PIL import Image

from helpers import encode, render_page


@pytest.fixture()
def one_torch_thread():
    """Run torch with one intra-op thread, restored afterwards: on a small shared CPU machine two
    threads contend and run several times slower on tiny models. Modules that train or run tiny
    models use it through an autouse fixture of their own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def page_image() -> Image.Image:
    """An 850x1100 text page (100 dpi letter), RGB."""
    return render_page()


@pytest.fixture(scope="session")
def page_png(page_image) -> bytes:
    """The page as PNG bytes."""
    return encode(page_image, "PNG")


@pytest.fixture(scope="session")
def page_jpeg(page_image) -> bytes:
    """The page as JPEG bytes (quality 90)."""
    return encode(page_image, "JPEG", quality=90)


@pytest.fixture(scope="session")
def page_b64(page_png) -> str:
    """The page as a bare base64 PNG string."""
    return base64.b64encode(page_png).decode("ascii")


@pytest.fixture(scope="session")
def page_data_url(page_b64) -> str:
    """The page as a ``data:image/png;base64,...`` URL."""
    return "data:image/png;base64," + page_b64
