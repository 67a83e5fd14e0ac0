"""``GateHead``: the small classifier on top of the proxy VLM's pooled features."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class GateHead(nn.Sequential):
    """LayerNorm(in_dim) -> Linear(in_dim, hidden) -> GELU -> Linear(hidden, n_classes).

    A ``Sequential``, so its state-dict keys are ``0.*`` (LayerNorm), ``1.*`` and ``3.*``
    (Linears): the research code's ``head.*`` keys minus the prefix.
    """

    def __init__(self, in_dim: int, hidden: int = 256, n_classes: int = 3) -> None:
        if in_dim <= 0 or hidden <= 0 or n_classes < 2:
            raise ValueError(f"bad head sizes: in_dim={in_dim}, hidden={hidden}, n_classes={n_classes}")
        super().__init__(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, n_classes),
        )
        self.in_dim, self.hidden, self.n_classes = in_dim, hidden, n_classes

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> "GateHead":
        """Build a head sized from its weights (keys ``0.*``, ``1.*``, ``3.*``) and load them."""
        from ...core.errors import CheckpointError

        needed = ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
        missing = [k for k in needed if k not in state]
        if missing:
            raise CheckpointError(f"head weights lack keys {missing}; found {sorted(state)[:10]}")
        hidden, in_dim = state["1.weight"].shape
        n_classes, hidden2 = state["3.weight"].shape
        if hidden2 != hidden or state["0.weight"].shape[0] != in_dim:
            raise CheckpointError(
                f"inconsistent head shapes: LayerNorm {tuple(state['0.weight'].shape)}, "
                f"Linear1 {tuple(state['1.weight'].shape)}, Linear2 {tuple(state['3.weight'].shape)}"
            )
        head = cls(int(in_dim), int(hidden), int(n_classes))
        head.load_state_dict({k: v.float() for k, v in state.items() if k in needed}, strict=True)
        return head.eval()
