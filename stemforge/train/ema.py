"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` whose weights follow ``avg = m * avg + (1 - m) * w``.

    Call :meth:`update` after every optimizer step; buffers are copied as they are. The
    momentum warms up as ``min(m, (1 + step) / (10 + step))``: without it, the random initial
    weights keep a share of ``m ** step`` (37% after 1000 steps at ``m = 0.999``).
    """

    def __init__(self, model: nn.Module, momentum: float):
        self.momentum = momentum
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """``step``: optimizer steps taken before this one (0 for the first)."""
        momentum = min(self.momentum, (1 + step) / (10 + step))
        for avg, w in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(w, 1.0 - momentum)
        for avg, b in zip(self.model.buffers(), model.buffers()):
            avg.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
