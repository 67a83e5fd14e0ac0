"""The learned default router: a small CNN + hashed-question gate shipped inside the package.

No download, no proxy VLM: the page is seen as a low-resolution grayscale view (box-filtered so
that text too small to resolve still shows up as grey texture whose darkness tracks its size), a
few measured statistics (page size, aspect, ink density) and the question as hashed word and
bigram counts (the hashing trick: no vocabulary to ship). A few tens of thousands of weights
turn that into class probabilities over the resolution bins, calibrated with a temperature.

The weights live in ``cares_integrations/routers/learned_default/`` (``config.json`` +
``model.safetensors``), trained by ``python benchmarks/train_learned_corpus.py`` on the
real-document corpus's train split labeled with the PP-OCRv4 reader (the synthetic-page recipe,
``python -m cares_integrations.training.recipe``, writes the same format; see
``docs/learned-default.md``). The same building
blocks (:func:`page_view`, :func:`page_stats`, :func:`question_features`) are used at training
time, so inference and training cannot drift. Inference runs in numpy (:class:`LearnedNet`), so
the default install needs no torch; training uses the same network written in torch
(:class:`cares_integrations.training.learned_net.PageQuestionNet`), and tests check the two agree.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from ..core.errors import CheckpointError
from ..core.payload import DecodedImage
from ..core.policy import ResolutionPolicy
from ..core.router import Prediction, Router

__all__ = [
    "DEFAULT_MODEL_DIR",
    "LearnedDefaultRouter",
    "LearnedNet",
    "page_stats",
    "page_view",
    "question_features",
    "read_learned",
    "read_safetensors",
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


_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                       "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file into numpy arrays, without the safetensors package.

    The format: 8 bytes of little-endian header length, a JSON header naming each tensor's dtype,
    shape and byte range, then the raw little-endian buffers. BF16 is widened to float32.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise CheckpointError(f"{path} is not a safetensors file (only {len(raw)} bytes)")
    n = int.from_bytes(raw[:8], "little")
    if n > len(raw) - 8:
        raise CheckpointError(f"{path} is not a safetensors file (header of {n} bytes in a {len(raw)}-byte file)")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has an unreadable safetensors header: {exc}") from None
    data = memoryview(raw)[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if not 0 <= start <= end <= len(data):
            raise CheckpointError(f"{path}: tensor {name!r} lies outside the file")
        if dtype == "BF16":
            arr = (np.frombuffer(data[start:end], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _SAFETENSORS_DTYPES:
            arr = np.frombuffer(data[start:end], dtype=_SAFETENSORS_DTYPES[dtype])
        else:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, which this reader does not know")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{path}: tensor {name!r} holds {arr.size} values for shape {shape}")
        out[name] = arr.reshape(shape)
    return out


def _conv_bn_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray, bn: Mapping[str, np.ndarray]) -> np.ndarray:
    """``ReLU(BatchNorm(Conv2d(x, stride=2, padding=k // 2)))`` in eval mode, for (n, c, h, w) input."""
    k = w.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::2, ::2]
    y = np.einsum("nchwij,ocij->nohw", windows, w, optimize=True) + b[None, :, None, None]
    scale = bn["weight"] / np.sqrt(bn["running_var"] + 1e-5)
    y = (y - bn["running_mean"][None, :, None, None]) * scale[None, :, None, None] + bn["bias"][None, :, None, None]
    return np.maximum(y, 0, out=y)


class LearnedNet:
    """The learned router's network (CNN over the page view + MLP over the hashed question and
    stats -> class logits), run in numpy from the weights torch training wrote.

    Same layout and arithmetic as the torch ``PageQuestionNet`` in eval mode: each conv stage
    (stride 2, BatchNorm, ReLU) halves the view; global mean and max pooling; the classifier's
    dropout is off at inference.
    """

    def __init__(self, config: Mapping[str, Any], state: Mapping[str, np.ndarray]) -> None:
        channels = tuple(config.get("channels", (8, 16, 32, 32)))
        try:
            self.stages = [
                (state[f"cnn.{3 * i}.weight"], state[f"cnn.{3 * i}.bias"],
                 {key: state[f"cnn.{3 * i + 1}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")})
                for i in range(len(channels))
            ]
            self.question = (state["question.0.weight"], state["question.0.bias"])
            self.hidden = (state["classifier.0.weight"], state["classifier.0.bias"])
            self.out = (state["classifier.3.weight"], state["classifier.3.bias"])
        except KeyError as exc:
            raise CheckpointError(f"the weights lack {exc.args[0]!r} for a {len(channels)}-stage network") from None
        expected = [(c, 1 if i == 0 else channels[i - 1]) for i, c in enumerate(channels)]
        got = [tuple(w.shape[:2]) for w, _, _ in self.stages]
        n_joint = 2 * channels[-1] + self.question[0].shape[0] + N_STATS
        if (got != expected or self.question[0].shape[1] != int(config["question_dim"])
                or self.hidden[0].shape[1] != n_joint or self.out[0].shape[0] != len(config["bins"])):
            raise CheckpointError(
                f"the weights do not fit the config (conv stages {got} for channels {channels}; question "
                f"{self.question[0].shape}, classifier {self.hidden[0].shape} -> {self.out[0].shape})"
            )

    def __call__(self, views: np.ndarray, questions: np.ndarray, stats: np.ndarray) -> np.ndarray:
        """Class logits (n, n_classes) for views (n, 1, S, S), questions (n, Q), stats (n, N_STATS)."""
        f = views.astype(np.float32)
        for w, b, bn in self.stages:
            f = _conv_bn_relu(f, w, b, bn)
        pooled = np.concatenate([f.mean(axis=(2, 3)), f.max(axis=(2, 3))], axis=1)
        q = np.maximum(questions @ self.question[0].T + self.question[1], 0)
        h = np.maximum(np.concatenate([pooled, q, stats], axis=1) @ self.hidden[0].T + self.hidden[1], 0)
        return h @ self.out[0].T + self.out[1]


def read_learned(path: str | os.PathLike = DEFAULT_MODEL_DIR) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a saved learned gate's config and weights (numpy arrays), checking the format."""
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
    return config, read_safetensors(w_path)


def load_learned(path: str | os.PathLike = DEFAULT_MODEL_DIR) -> tuple[dict[str, Any], LearnedNet]:
    """Read a saved learned gate: returns (config, its :class:`LearnedNet`)."""
    config, state = read_learned(path)
    try:
        return config, LearnedNet(config, state)
    except CheckpointError as exc:
        raise CheckpointError(f"{Path(path) / WEIGHTS_NAME}: {exc}") from None


def __getattr__(name: str) -> Any:
    # The torch network and its writer live with the training code; kept importable from here.
    if name in ("PageQuestionNet", "build_net", "save_learned", "load_torch_net"):
        from ..training import learned_net

        return getattr(learned_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class LearnedDefaultRouter(Router):
    """A tiny learned gate that ships with the package: page view + hashed question -> bins.

    ``path`` is a folder written by :func:`save_learned` (default: the shipped weights). Returns
    calibrated class probabilities over its bins (``softmax(logits / temperature + class_bias)``:
    the temperature is fitted on validation pages, the optional ``class_bias`` is the operating
    point chosen on them, a log-prior shift toward larger bins); the policy (the config's
    ``mode``, continuous when absent) turns them into a long side. Runs in numpy on CPU (no torch) in tens
    of ms per page, most of it the text measurement.
    """

    name = "learned-default"

    def __init__(self, path: str | os.PathLike | None = None, **options: Any) -> None:
        self.path = Path(path or DEFAULT_MODEL_DIR)
        config, net = load_learned(self.path)
        bins = tuple(int(b) for b in config["bins"])
        self.config = config
        policy = options.pop("policy", None) or ResolutionPolicy(bins=bins, mode=config.get("mode", "continuous"))
        self._check_policy(policy)
        super().__init__(policy=policy, **options)
        self.net = net
        self.temperature = float(config["temperature"])
        bias = config.get("class_bias") or [0.0] * len(bins)
        if len(bias) != len(bins):
            raise CheckpointError(f"class_bias has {len(bias)} values for {len(bins)} bins")
        self.class_bias = np.array([float(b) for b in bias], dtype=np.float32)

    def predict_proba(self, images: Sequence[Image.Image], questions: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities (n, len(bins)) for PIL pages and their questions."""
        views, qs, stats = encode_inputs(images, questions, self.config)
        z = self.net(views, qs, stats).astype(np.float32) / np.float32(self.temperature) + self.class_bias
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def _identity(self) -> dict[str, Any]:
        weights = (self.path / WEIGHTS_NAME).read_bytes()
        return {"weights": str(self.path), "weights_crc32": zlib.crc32(weights), "temperature": self.temperature}

    def _check_policy(self, policy: ResolutionPolicy) -> None:
        bins = tuple(int(b) for b in self.config["bins"])
        if tuple(policy.bins) != bins:
            raise ValueError(f"this learned gate predicts bins {bins}; the policy has bins {tuple(policy.bins)}")

    def _predict(self, images: list[DecodedImage], queries: list[str]) -> list[Prediction]:
        probs = self.predict_proba([d.image for d in images], queries)
        return [Prediction(probabilities=[float(p) for p in row]) for row in probs]
