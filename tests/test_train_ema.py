"""EMA of the weights: the warm-up keeps the random initial weights out of early checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from stemforge.train.ema import EMA


def test_early_average_forgets_the_initial_weights():
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    ema = EMA(model, momentum=0.999)
    init = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    for step in range(1000):
        ema.update(model, step)
    share_of_init = (ema.model.weight - 1.0).abs().max() / (init - 1.0).abs().max()
    assert share_of_init < 1e-3  # a plain m=0.999 average would still hold 0.999**1000 = 37% of it


def test_late_updates_use_the_configured_momentum():
    model = nn.Linear(2, 2)
    ema = EMA(model, momentum=0.9)
    before = ema.model.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=10_000)
    torch.testing.assert_close(ema.model.weight, before + 0.1)
