"""Validation through the inference engine (the code users run) and global SDR per stem."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine import ChunkRunner, separate_tensor
from ..engine.soft_mask import SoftMask, soft_mask
from ..eval import mean_sdr, track_sdr
from .tracks import Track


@dataclass(frozen=True)
class Separation:
    """How the engine runs: chunk length, overlap, batch size, device and network dtype, and the
    soft mask after the network (``None``, as in training: the network alone)."""

    chunk: int
    overlap: int
    batch_size: int
    device: torch.device
    dtype: torch.dtype = torch.float32
    soft_mask: SoftMask | None = None


def separate(model: torch.nn.Module, mix: np.ndarray, stems: int, how: Separation) -> torch.Tensor:
    """``mix [C, S] -> [stems, C, S]`` with :class:`ChunkRunner` and :func:`separate_tensor` (then the
    soft mask, if ``how`` has one)."""
    run = ChunkRunner(model, how.device, how.dtype)
    out = separate_tensor(
        run, mix, chunk=how.chunk, overlap=how.overlap, batch_size=how.batch_size, num_stems=stems, device=how.device
    )
    return out if how.soft_mask is None else soft_mask(torch.as_tensor(mix, dtype=torch.float32), out, how.soft_mask)


def validate(
    model: torch.nn.Module,
    tracks: list[Track],
    stems: tuple[str, ...],
    targets: tuple[str, ...],
    how: Separation,
    channels: int = 2,
    segments: list[tuple[int, int, int]] | None = None,
) -> tuple[dict[str, float], float]:
    """Mean global SDR per target stem over ``tracks`` (or over ``segments``: ``(track, start, length)``).

    Returns ``({stem: dB}, mean over stems)``. The model is left in eval mode.
    """
    scores = []
    for t, start, length in segments or [(i, 0, track.length) for i, track in enumerate(tracks)]:
        track = tracks[t]
        refs = np.stack([track.read(s, start, length, channels) for s in targets])
        mix = _mixture(track, stems, start, length, channels)
        est = separate(model, mix, len(targets), how)
        scores.append(track_sdr(refs, est.numpy(), mix, targets))
    return mean_sdr(scores)


def random_segments(tracks: list[Track], k: int, length: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``k`` random ``(track, start, length)`` segments (shorter tracks give whole-track segments)."""
    out = []
    for _ in range(k):
        t = int(rng.integers(len(tracks)))
        n = min(length, tracks[t].length)
        out.append((t, int(rng.integers(tracks[t].length - n + 1)), n))
    return out


def _mixture(track: Track, stems: tuple[str, ...], start: int, length: int, channels: int) -> np.ndarray:
    if "mixture" in track.files:
        return track.read("mixture", start, length, channels)
    return np.sum([track.read(s, start, length, channels) for s in stems], axis=0)
