"""The plain per-chunk loop, kept as the yardstick for the batched engine.

One chunk at a time, numpy accumulation, no buffers reused, nothing clever: what the
original LarsNet / early MDX code did. Tests assert the fast engine equals it; the
benchmarks time the two side by side. Uses the same padding and window conventions
as :mod:`stemforge.engine.overlap_add`, written out independently.
"""

from __future__ import annotations

import numpy as np
import torch


def reference_separate(model: torch.nn.Module, mix: np.ndarray, chunk: int, overlap: int) -> np.ndarray:
    """``mix: [C, S] -> [stems, C, S]`` with the full-precision model forward, one chunk per call."""
    channels, length = mix.shape
    hop = max(1, chunk // overlap)
    border = chunk - hop
    if overlap > 1:
        window = np.sin(np.pi * (np.arange(chunk) + 0.5) / chunk) ** 2
    else:
        window = np.ones(chunk)
    starts = [-border]
    while starts[-1] + chunk < length + border:
        starts.append(starts[-1] + hop)
    right = starts[-1] + chunk - length
    mode = "reflect" if length > max(border, right) else "constant"
    padded = np.pad(mix.astype(np.float64), ((0, 0), (border, right)), mode=mode)
    out = None
    weight = np.zeros(padded.shape[-1])
    model = model.eval()
    for start in starts:
        s = start + border
        piece = torch.from_numpy(padded[None, :, s : s + chunk].astype(np.float32))
        with torch.no_grad():
            y = model(piece)[0].double().numpy()  # [stems, C, chunk]
        if out is None:
            out = np.zeros((y.shape[0], channels, padded.shape[-1]))
        out[..., s : s + chunk] += y * window
        weight[s : s + chunk] += window
    return (out[..., border : border + length] / weight[border : border + length]).astype(np.float32)
