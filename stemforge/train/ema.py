"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of ``model`` whose weights follow ``avg = m * avg + (1 - m) * w``.

    Call :meth:`update` after every optimizer step; buffers are copied as they are.
    """

    def __init__(self, model: nn.Module, momentum: float):
        self.momentum = momentum
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, w in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(w, 1.0 - self.momentum)
        for avg, b in zip(self.model.buffers(), model.buffers()):
            avg.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
