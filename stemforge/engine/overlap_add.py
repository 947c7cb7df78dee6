"""Batched overlap-add separation of a whole track (the default engine).

Layout: the track ``[C, S]`` is padded by ``border = chunk - hop`` on the left and by at
least ``border`` on the right (reflect, or zeros when the track is shorter than the pad),
so every real sample, the first and the last included, is covered by ``overlap`` chunks
exactly like a sample in the middle. Chunks start every ``hop = chunk // overlap``.
Batches of chunks are copied into one reused input buffer, run through the network, weighted
by the window and added into a preallocated fp32 output; the summed window is divided out
at the end. An out-of-memory error halves the batch and reruns the same chunks
(:class:`~stemforge.engine.batching.AdaptiveBatch`). For files, :mod:`.streaming` computes the
same result in memory that does not grow with the track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .batching import AdaptiveBatch
from .staging import Staging
from .windows import taper_window

Progress = Callable[[int, int], None]
"""``progress(chunks_done, chunks_total)``."""


@dataclass(frozen=True)
class ChunkPlan:
    """Where the chunks of a track of ``length`` samples go, in padded coordinates."""

    length: int
    chunk: int
    hop: int
    pad_left: int
    pad_right: int
    num_chunks: int

    @property
    def padded_length(self) -> int:
        return self.pad_left + self.length + self.pad_right

    def starts(self) -> range:
        return range(0, self.num_chunks * self.hop, self.hop)


def plan_chunks(length: int, chunk: int, overlap: int) -> ChunkPlan:
    """Plan chunks of ``chunk`` samples every ``chunk // overlap`` over a track of ``length``."""
    if length < 1 or chunk < 1 or overlap < 1:
        raise ValueError(f"length, chunk and overlap must be positive, got {length}, {chunk}, {overlap}")
    hop = max(1, chunk // overlap)
    border = chunk - hop
    need = length + 2 * border
    num_chunks = max(1, math.ceil((need - chunk) / hop) + 1)
    padded = (num_chunks - 1) * hop + chunk
    return ChunkPlan(length, chunk, hop, border, padded - border - length, num_chunks)


def pad_track(mix: np.ndarray | torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    """``mix: [C, S] -> [C, padded_length]`` fp32: reflect where the track is long enough, else zeros."""
    mix = torch.as_tensor(mix, dtype=torch.float32)
    left, right = plan.pad_left, plan.pad_right
    if plan.length > max(left, right):
        return torch.nn.functional.pad(mix[None], (left, right), mode="reflect")[0]
    return torch.nn.functional.pad(mix, (left, right))


def summed_window(plan: ChunkPlan, window: torch.Tensor) -> torch.Tensor:
    """The overlap-added window ``[padded_length]`` (the normaliser)."""
    total = torch.zeros(plan.padded_length, dtype=torch.float32)
    for start in plan.starts():
        total[start : start + plan.chunk] += window
    return total


@torch.inference_mode()
def separate_tensor(
    run: Callable[[torch.Tensor], torch.Tensor],
    mix: np.ndarray | torch.Tensor,
    *,
    chunk: int,
    overlap: int = 4,
    batch_size: int = 1,
    num_stems: int,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> torch.Tensor:
    """Separate a whole track.

    Args:
        run: ``chunks [B, C, chunk] -> [B, stems, C, chunk]`` (e.g. a :class:`ChunkRunner`).
        mix: ``[C, S]`` fp32 audio at the model's rate.
        device: where chunks are staged and the overlap-add accumulates; ``run``'s outputs are
            moved there (best: the device ``run`` computes on).
    Returns:
        ``[stems, C, S]`` fp32 on the CPU.
    """
    channels, length = mix.shape
    plan = plan_chunks(length, chunk, overlap)
    window = taper_window(chunk, overlap).to(device)
    frames = pad_track(mix, plan).unfold(-1, chunk, plan.hop)  # [C, n, chunk] view, no copy
    out = torch.zeros(num_stems, channels, plan.padded_length, device=device)
    batcher = AdaptiveBatch(run, batch_size)
    staging = Staging(min(batcher.size, plan.num_chunks), channels, chunk, device)
    first = 0
    while first < plan.num_chunks:
        n = min(batcher.size, plan.num_chunks - first)  # shrinks after an out-of-memory error
        batch = staging.upload(frames[:, first : first + n].transpose(0, 1))
        y = batcher(batch).to(device).mul_(window)  # [n, stems, C, chunk]; .to: a no-op unless run's device differs
        for j in range(n):
            start = (first + j) * plan.hop
            out[..., start : start + chunk] += y[j]
        first += n
        if progress is not None:
            progress(first, plan.num_chunks)
    norm = summed_window(plan, window.cpu()).to(device)
    sl = slice(plan.pad_left, plan.pad_left + length)
    return (out[..., sl] / norm[sl]).cpu()
