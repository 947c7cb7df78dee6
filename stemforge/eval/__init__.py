"""Scoring separations."""

from .metrics import global_sdr, mean_sdr, track_sdr
from .oracle import ideal_ratio_mask

__all__ = ["global_sdr", "ideal_ratio_mask", "mean_sdr", "track_sdr"]
