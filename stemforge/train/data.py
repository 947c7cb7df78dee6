"""Training examples and which rank draws which.

Example ``i`` is a pure function of ``(seed, i)``: its own ``numpy`` Generator picks, for every
stem, a track (independently per stem when ``augmentations.remix``), an offset, and the
augmentations. Batches are lists of example indices derived from the optimizer step, the
micro-batch and the rank (:class:`StepBatches`), so data does not depend on workers and a
resumed run sees exactly the examples an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import augment_stem, compress_mixture, draw_mp3_bitrate, draw_speed, varispeed
from .config import AugmentConfig
from .tracks import Track

MAX_TRIES = 10  # redraws of a segment quieter than audio.min_mean_abs


class SegmentDataset(Dataset):
    """``dataset[i] -> (mix [C, chunk], targets [len(targets), C, chunk])`` float32.

    The mixture is the sum of all ``stems`` after augmentation (then, with
    ``augmentations.mp3_compression_on_mixture``, sometimes through mp3); ``targets`` (names among
    ``stems``) are what the model learns to output.
    """

    def __init__(
        self,
        tracks: list[Track],
        stems: tuple[str, ...],
        targets: tuple[str, ...],
        *,
        chunk: int,
        channels: int,
        augment: AugmentConfig,
        seed: int,
        min_mean_abs: float = 0.0,
        sample_rate: int = 44100,
    ):
        self.tracks, self.stems, self.chunk, self.channels = tracks, stems, chunk, channels
        self.target_index = [stems.index(t) for t in targets]
        self.augment, self.seed, self.min_mean_abs, self.sample_rate = augment, seed, min_mean_abs, sample_rate

    def __len__(self) -> int:
        return 2**62  # examples are drawn, not enumerated

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        shared = self._draw_place(rng)
        stems = np.stack([self._stem(name, rng, shared) for name in self.stems])
        mix = compress_mixture(stems.sum(0), draw_mp3_bitrate(rng, self.augment), self.sample_rate)
        return torch.from_numpy(mix), torch.from_numpy(stems[self.target_index])

    def _draw_place(self, rng: np.random.Generator) -> tuple[Track, int]:
        track = self.tracks[rng.integers(len(self.tracks))]
        return track, int(rng.integers(max(1, track.length - self.chunk + 1)))

    def _stem(self, name: str, rng: np.random.Generator, shared: tuple[Track, int]) -> np.ndarray:
        """One augmented stem ``[C, chunk]``, with MSST-style mixup of the same stem from other tracks."""
        x = self._augmented(name, rng, shared)
        if self.augment.enable and self.augment.mixup:
            for p in self.augment.mixup_probs:
                if rng.random() < p:
                    gain = rng.uniform(self.augment.mixup_loudness_min, self.augment.mixup_loudness_max)
                    x = x + np.float32(gain) * self._augmented(name, rng, None)
        return x

    def _augmented(self, name: str, rng: np.random.Generator, shared: tuple[Track, int] | None) -> np.ndarray:
        """A segment of ``speed * chunk`` samples played back in ``chunk``, then the per-stem augmentations."""
        speed = draw_speed(rng, self.augment)
        x = varispeed(self._segment(name, rng, shared, round(self.chunk * speed)), self.chunk)
        return augment_stem(x, rng, self.augment, self.sample_rate)

    def _segment(
        self, name: str, rng: np.random.Generator, shared: tuple[Track, int] | None, length: int
    ) -> np.ndarray:
        if shared is not None and not (self.augment.enable and self.augment.remix):
            track, start = shared
            return track.read(name, start, length, self.channels)
        for _ in range(MAX_TRIES):
            track, start = self._draw_place(rng)
            x = track.read(name, start, length, self.channels)
            if np.abs(x).mean() >= self.min_mean_abs:
                break
        return x


class StepBatches:
    """Batch sampler: for steps ``start..stop-1``, ``accum`` micro-batches of ``batch`` example indices.

    Example indices are split between ranks like ``DistributedSampler`` splits a dataset: the
    micro-batch ``m`` of step ``s`` uses the global block ``(s * accum + m) * world * batch``,
    of which rank ``r`` takes the ``r``-th slice of ``batch`` indices.
    """

    def __init__(self, start: int, stop: int, *, batch: int, accum: int = 1, rank: int = 0, world: int = 1):
        self.start, self.stop, self.batch, self.accum, self.rank, self.world = start, stop, batch, accum, rank, world

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accum

    def __iter__(self):
        for step in range(self.start, self.stop):
            for micro in range(self.accum):
                first = ((step * self.accum + micro) * self.world + self.rank) * self.batch
                yield list(range(first, first + self.batch))
