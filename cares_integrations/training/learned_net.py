"""The learned default router's network in torch, for training: :class:`PageQuestionNet`, and
:func:`save_learned` writing the format :class:`~cares_integrations.routers.learned.LearnedDefaultRouter`
reads (``config.json`` + ``model.safetensors``). Inference needs none of this: the router runs
the same network in numpy (:class:`~cares_integrations.routers.learned.LearnedNet`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..core.errors import CheckpointError
from ..routers.learned import CONFIG_NAME, FORMAT, FORMAT_VERSION, N_STATS, WEIGHTS_NAME, read_learned

__all__ = ["PageQuestionNet", "build_net", "load_torch_net", "save_learned"]


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


def load_torch_net(path: str | os.PathLike) -> tuple[dict[str, Any], PageQuestionNet]:
    """Read a saved learned gate as a torch network in eval mode: returns (config, network)."""
    config, state = read_learned(path)
    net = build_net(config)
    try:
        net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path} do not fit the config: {exc}") from None
    return config, net.eval()
