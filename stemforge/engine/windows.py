"""Overlap-add windows. Outputs are weighted by the window and divided by the summed windows."""

from __future__ import annotations

import math

import torch


def taper_window(chunk: int, overlap: int) -> torch.Tensor:
    """Default window ``[chunk]``: a Hann taper sampled at half-sample offsets.

    ``sin^2(pi * (n + 0.5) / chunk)`` is never exactly zero, sums to a constant for hops that
    divide the chunk, and gives the least weight to the chunk edges, where the network sees the
    least context. With ``overlap == 1`` chunks do not overlap and the window is rectangular.
    """
    if overlap <= 1:
        return torch.ones(chunk)
    n = torch.arange(chunk, dtype=torch.float64)
    return torch.sin(math.pi * (n + 0.5) / chunk).pow(2).float()


def msst_fade_window(chunk: int) -> torch.Tensor:
    """MSST's ``_getWindowingArray``: linear fades of ``chunk // 10`` samples (from 0) at both ends."""
    fade = chunk // 10
    window = torch.ones(chunk)
    if fade > 0:
        window[-fade:] = torch.linspace(1, 0, fade)
        window[:fade] = torch.linspace(0, 1, fade)
    return window
