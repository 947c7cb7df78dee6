"""Per-stem waveform augmentations, each drawn from a given ``numpy.random.Generator``."""

from __future__ import annotations

import numpy as np

from .config import AugmentConfig


def augment_stem(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """``x: [C, T] -> [C, T]``: random gain, channel swap, polarity flip and time reversal."""
    if not cfg.enable:
        return x
    if cfg.loudness:
        x = x * np.float32(_gain(rng, cfg))
    if rng.random() < cfg.all.channel_shuffle:
        x = x[::-1]
    if rng.random() < cfg.all.random_polarity:
        x = -x
    if rng.random() < cfg.all.random_inverse:
        x = x[:, ::-1]
    return np.ascontiguousarray(x, dtype=np.float32)


def _gain(rng: np.random.Generator, cfg: AugmentConfig) -> float:
    """A gain in [loudness_min, loudness_max]: uniform in amplitude, or in dB with ``loudness_log``."""
    if cfg.loudness_log:
        return float(np.exp(rng.uniform(np.log(cfg.loudness_min), np.log(cfg.loudness_max))))
    return float(rng.uniform(cfg.loudness_min, cfg.loudness_max))
