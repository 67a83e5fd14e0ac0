"""The learned default router: a small CNN + hashed-question gate shipped inside the package.

No download, no proxy VLM: the page is seen as a low-resolution grayscale view (box-filtered so
that text too small to resolve still shows up as grey texture whose darkness tracks its size), a
few measured statistics (page size, aspect, ink density) and the question as hashed word and
bigram counts (the hashing trick: no vocabulary to ship). A few tens of thousands of weights
turn that into class probabilities over the resolution bins, calibrated with a temperature.

The weights live in ``cares_integrations/routers/learned_default/`` (``config.json`` +
``model.safetensors``), trained by ``python -m cares_integrations.training.recipe`` on synthetic
pages labeled with the Tesseract reader (see ``docs/learned-default.md``). The same building
blocks (:func:`page_view`, :func:`page_stats`, :func:`question_features`,
:class:`PageQuestionNet`) are used at training time, so inference and training cannot drift.
"""

from __future__ import annotations

import json
import os
import re
import threading
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..core.errors import CheckpointError
from ..core.payload import DecodedImage
from ..core.policy import ResolutionPolicy
from ..core.router import Prediction, Router

__all__ = [
    "DEFAULT_MODEL_DIR",
    "LearnedDefaultRouter",
    "PageQuestionNet",
    "page_stats",
    "page_view",
    "question_features",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "learned_default"
"""Where the shipped weights live."""

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "cares-learned-default"
FORMAT_VERSION = 1

_TOKEN = re.compile(r"[a-z]+|\d+")


def page_view(image: Image.Image, size: int = 128) -> np.ndarray:
    """A ``size`` x ``size`` float32 ink map of the page (1 = black ink, 0 = paper or padding).

    The page is converted to grayscale, box-filtered down so its long side is ``size`` (aspect
    kept; never upscaled beyond ``size``), inverted, and placed top-left on an empty square.
    Dark-background pages are flipped so that ink is the minority.
    """
    gray = image.convert("L")
    w, h = gray.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if scale < 1:
        factor = int(1 / scale)
        if factor >= 2:
            gray = gray.reduce(factor)
        gray = gray.resize((nw, nh), Image.Resampling.BOX)
    else:
        gray = gray.resize((nw, nh), Image.Resampling.BILINEAR)
    arr = 1.0 - np.asarray(gray, dtype=np.float32) / 255.0
    if arr.mean() > 0.5:
        arr = 1.0 - arr
    out = np.zeros((size, size), dtype=np.float32)
    out[:nh, :nw] = arr
    return out


STAT_NAMES: tuple[str, ...] = (
    "log2_long_side_k", "aspect", "ink_mean", "ink_dense", "is_text", "is_blank", "is_photo", "is_tiny",
    "log2_small_text_side_k", "log2_min_text_side_k", "log2_median_text_side_k", "log_fragments",
)
"""The measured statistics, in order (``*_text_side_k``: log2 of the long side, in thousands of
px, at which that text would be 7 px tall: the text-scale router's own rule)."""
N_STATS = len(STAT_NAMES)


def page_stats(image: Image.Image, view: np.ndarray) -> np.ndarray:
    """Cheap measured statistics of a page (see :data:`STAT_NAMES`): its size and aspect, ink
    density in the view, and the text-scale router's text measurements
    (:func:`cares_integrations.textscale.measure_text`) turned into long sides."""
    from .textscale import measure_text

    w, h = image.size
    long_side = max(w, h)
    ink = view[view > 0] if (view > 0).any() else view.reshape(-1)
    m = measure_text(image)

    def side(px: float | None) -> float:
        return float(np.log2(long_side * 7.0 / max(px, 0.5) / 1000.0)) if px else 0.0

    kinds = [float(m.kind == k) for k in ("text", "blank", "photo", "tiny")]
    return np.array(
        [np.log2(long_side / 1000.0), h / w, float(ink.mean()) * 4, float((ink > 0.5).mean()) * 4, *kinds,
         side(m.small_px), side(m.min_px), side(m.median_px), float(np.log1p(m.fragments)) / 5],
        dtype=np.float32,
    )


def _tokens(question: str) -> list[str]:
    words = _TOKEN.findall(question.lower())
    words = ["<num>" if w.isdigit() else w for w in words]
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])]


def question_features(question: str, dim: int = 256) -> np.ndarray:
    """Hashed bag of words and bigrams (signed hashing trick, crc32), L2-normalised; digits
    collapse to one ``<num>`` token. Deterministic across runs and platforms."""
    vec = np.zeros(dim, dtype=np.float32)
    for tok in _tokens(question):
        hv = zlib.crc32(tok.encode("utf-8"))
        vec[hv % dim] += 1.0 if (hv >> 31) & 1 == 0 else -1.0
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def build_net(config: Mapping[str, Any]) -> "PageQuestionNet":
    """Build the :class:`PageQuestionNet` a config describes (weights random)."""
    return PageQuestionNet(
        view_size=int(config["view_size"]),
        question_dim=int(config["question_dim"]),
        n_classes=len(config["bins"]),
        channels=tuple(config.get("channels", (8, 16, 32, 32))),
        question_hidden=int(config.get("question_hidden", 32)),
        hidden=int(config.get("hidden", 64)),
    )


class PageQuestionNet(nn.Module):
    """CNN over the page view + MLP over the hashed question and stats -> class logits.

    ``forward(view (n, 1, S, S), question (n, Q), stats (n, N_STATS)) -> (n, n_classes)``. Each conv
    stage halves the view; global mean and max pooling keep both "how much fine texture" and
    "is there any" signals.
    """

    def __init__(self, view_size: int = 128, question_dim: int = 256, n_classes: int = 3,
                 channels: Sequence[int] = (8, 16, 32, 32), question_hidden: int = 32, hidden: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(channels):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, c, k, stride=2, padding=k // 2), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.cnn = nn.Sequential(*layers)
        self.question = nn.Sequential(nn.Linear(question_dim, question_hidden), nn.ReLU())
        joint = 2 * c_in + question_hidden + N_STATS
        self.classifier = nn.Sequential(nn.Linear(joint, hidden), nn.ReLU(), nn.Dropout(0.1),
                                        nn.Linear(hidden, n_classes))
        self.view_size, self.question_dim, self.n_classes = view_size, question_dim, n_classes

    def forward(self, view: torch.Tensor, question: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch."""
        f = self.cnn(view)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.classifier(torch.cat([pooled, self.question(question), stats], dim=1))


def encode_inputs(images: Sequence[Image.Image], questions: Sequence[str], config: Mapping[str, Any]):
    """The network's three input arrays for a batch: views (n,1,S,S), questions (n,Q), stats
    (n, N_STATS). A page repeated in the batch (several questions) is measured once."""
    s, q = int(config["view_size"]), int(config["question_dim"])
    per_page: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for img in images:
        if id(img) not in per_page:
            view = page_view(img, s)
            per_page[id(img)] = (view, page_stats(img, view))
    views = np.stack([per_page[id(img)][0] for img in images])[:, None]
    stats = np.stack([per_page[id(img)][1] for img in images])
    qs = np.stack([question_features(text, q) for text in questions])
    return views.astype(np.float32), qs.astype(np.float32), stats.astype(np.float32)


def save_learned(path: str | os.PathLike, config: Mapping[str, Any], net: Any) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the format :class:`LearnedDefaultRouter` reads)."""
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(config)
    cfg.setdefault("format", FORMAT)
    cfg.setdefault("format_version", FORMAT_VERSION)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME))
    (out / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


def load_learned(path: str | os.PathLike = DEFAULT_MODEL_DIR) -> tuple[dict[str, Any], Any]:
    """Read a saved learned gate: returns (config, network in eval mode)."""
    from safetensors.torch import load_file

    folder = Path(path)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.exists() or not w_path.exists():
        raise CheckpointError(f"no learned gate at {folder}: expected {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from None
    if config.get("format") != FORMAT or int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path} is not a {FORMAT} v{FORMAT_VERSION} config "
            f"(format={config.get('format')!r}, version={config.get('format_version')!r})"
        )
    for key in ("bins", "view_size", "question_dim", "temperature"):
        if key not in config:
            raise CheckpointError(f"{cfg_path} lacks {key!r}")
    net = build_net(config)
    try:
        net.load_state_dict(load_file(str(w_path)), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {w_path} do not fit the config: {exc}") from None
    net.eval()
    return config, net


class LearnedDefaultRouter(Router):
    """A tiny learned gate that ships with the package: page view + hashed question -> bins.

    ``path`` is a folder written by :func:`save_learned` (default: the shipped weights). Returns
    calibrated class probabilities over its bins (``softmax(logits / temperature + class_bias)``:
    the temperature is fitted on validation pages, the optional ``class_bias`` is the operating
    point chosen on them, a log-prior shift toward larger bins); the policy
    (continuous by default) turns them into a long side. Runs on CPU in tens of ms per page,
    most of it the text measurement.

    ``num_threads`` (default 1): torch threads for the forward pass. The network is so small that
    more threads only add contention (on the busy 2-core dev machine two threads made the forward
    pass 40x slower); torch's setting is process-wide, so it is set for the call and restored.
    None leaves torch's setting alone.
    """

    name = "learned-default"

    def __init__(self, path: str | os.PathLike | None = None, *, num_threads: int | None = 1,
                 **options: Any) -> None:
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be a positive number of threads or None, got {num_threads}")
        config, net = load_learned(path or DEFAULT_MODEL_DIR)
        bins = tuple(int(b) for b in config["bins"])
        self.config = config
        policy = options.pop("policy", None) or ResolutionPolicy(bins=bins)
        self._check_policy(policy)
        super().__init__(policy=policy, **options)
        self.net = net
        self.temperature = float(config["temperature"])
        bias = config.get("class_bias") or [0.0] * len(bins)
        if len(bias) != len(bins):
            raise CheckpointError(f"class_bias has {len(bias)} values for {len(bins)} bins")
        self.class_bias = torch.tensor([float(b) for b in bias], dtype=torch.float32)
        self.num_threads = None if num_threads is None else int(num_threads)
        self._lock = threading.Lock()

    def predict_proba(self, images: Sequence[Image.Image], questions: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities (n, len(bins)) for PIL pages and their questions."""
        views, qs, stats = encode_inputs(images, questions, self.config)
        with self._lock, torch.inference_mode():
            before = torch.get_num_threads()
            if self.num_threads is not None and before != self.num_threads:
                torch.set_num_threads(self.num_threads)
            try:
                logits = self.net(torch.from_numpy(views), torch.from_numpy(qs), torch.from_numpy(stats))
            finally:
                if torch.get_num_threads() != before:
                    torch.set_num_threads(before)
            return torch.softmax(logits.float() / self.temperature + self.class_bias, dim=-1).numpy()

    def _check_policy(self, policy: ResolutionPolicy) -> None:
        bins = tuple(int(b) for b in self.config["bins"])
        if tuple(policy.bins) != bins:
            raise ValueError(f"this learned gate predicts bins {bins}; the policy has bins {tuple(policy.bins)}")

    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        probs = self.predict_proba([d.image for d in images], queries)
        return [Prediction(probabilities=[float(p) for p in row]) for row in probs]
