"""Global SDR: one number per stem and track, over the whole track and both channels.

``SDR = 10 * log10(sum(ref**2) / sum((ref - est)**2))`` (a tiny ``EPS`` in both sums keeps a
perfect or silent estimate finite). A stem whose reference is ``silence_db`` (60 dB) or more
below the mixture is skipped: its SDR would measure noise, not separation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

EPS = 1e-10
SILENCE_DB = -60.0

Array = np.ndarray | torch.Tensor


def _energy(x: Array) -> float:
    x = torch.as_tensor(x, dtype=torch.float64)
    return float(x.square().sum())


def global_sdr(ref: Array, est: Array) -> float:
    """SDR in dB of ``est`` against ``ref`` (same shape, e.g. ``[C, S]``)."""
    ref = torch.as_tensor(ref, dtype=torch.float64)
    est = torch.as_tensor(est, dtype=torch.float64)
    if ref.shape != est.shape:
        raise ValueError(f"reference {tuple(ref.shape)} and estimate {tuple(est.shape)} differ in shape")
    return 10 * math.log10((_energy(ref) + EPS) / (_energy(ref - est) + EPS))


def is_silent(ref: Array, mix: Array, silence_db: float = SILENCE_DB) -> bool:
    """True when ``ref`` is at least ``-silence_db`` dB quieter than ``mix``."""
    return _energy(ref) <= _energy(mix) * 10 ** (silence_db / 10)


def track_sdr(refs: Array, ests: Array, mix: Array, stems: tuple[str, ...] | list[str]) -> dict[str, float | None]:
    """Per-stem SDR for one track: ``refs, ests: [stems, C, S]``, ``mix: [C, S]``; silent stems give ``None``."""
    return {
        name: None if is_silent(refs[i], mix) else global_sdr(refs[i], ests[i])
        for i, name in enumerate(stems)
    }


def mean_sdr(per_track: list[dict[str, float | None]]) -> tuple[dict[str, float], float]:
    """Average over tracks per stem (skipping ``None``), and the mean over stems of those averages."""
    names = list(dict.fromkeys(k for d in per_track for k in d))
    per_stem = {}
    for name in names:
        values = [d[name] for d in per_track if d.get(name) is not None]
        if values:
            per_stem[name] = float(np.mean(values))
    overall = float(np.mean(list(per_stem.values()))) if per_stem else float("nan")
    return per_stem, overall
