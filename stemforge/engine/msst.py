"""MSST compatibility: reproduces Music-Source-Separation-Training's ``demix`` overlap-add.

Same fade window, reflect padding, chunk grid, zero/reflect tail padding and normalisation,
including its batch-dependent windows: the fade-in is dropped only when a batch holds just
the first chunk, and when a batch holds the final chunk every chunk in it loses its fade-out.
Results therefore depend on ``batch_size``; use MSST's ``inference.batch_size`` to match it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .windows import msst_fade_window


@torch.inference_mode()
def separate_msst(
    run: Callable[[torch.Tensor], torch.Tensor],
    mix: np.ndarray | torch.Tensor,
    *,
    chunk: int,
    overlap: int,
    batch_size: int,
    num_stems: int,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``mix: [C, S] -> [stems, C, S]`` exactly as MSST's ``demix`` (generic mode) computes it."""
    mix = torch.as_tensor(mix, dtype=torch.float32)
    length = mix.shape[-1]
    fade, step = chunk // 10, chunk // overlap
    border = chunk - step
    padded = length > 2 * border and border > 0
    if padded:
        mix = torch.nn.functional.pad(mix[None], (border, border), mode="reflect")[0]
    total = mix.shape[-1]
    base_window = msst_fade_window(chunk)
    result = torch.zeros(num_stems, *mix.shape)
    counter = torch.zeros(num_stems, *mix.shape)
    num_chunks = -(-total // step)
    parts, where, i, done = [], [], 0, 0
    while i < total:
        part = mix[:, i : i + chunk]
        seg = part.shape[-1]
        mode = "reflect" if seg > chunk // 2 else "constant"
        parts.append(torch.nn.functional.pad(part[None], (0, chunk - seg), mode=mode)[0] if seg < chunk else part)
        where.append((i, seg))
        i += step
        if len(parts) >= batch_size or i >= total:
            y = run(torch.stack(parts)).cpu()  # accumulated on the CPU, as MSST's demix does
            window = base_window.clone()
            if i - step == 0:
                window[:fade] = 1
            elif i >= total:
                window[-fade:] = 1
            for j, (start, n) in enumerate(where):
                result[..., start : start + n] += y[j, ..., :n] * window[:n]
                counter[..., start : start + n] += window[:n]
            done += len(parts)
            parts, where = [], []
            if progress is not None:
                progress(done, num_chunks)
    out = torch.nan_to_num(result / counter, nan=0.0)
    return out[..., border:-border] if padded else out
