"""Scoring separations."""

from .metrics import global_sdr, mean_sdr, track_sdr

__all__ = ["global_sdr", "mean_sdr", "track_sdr"]
