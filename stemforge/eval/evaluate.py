"""Scoring a separator on a folder of MUSDB-layout tracks (``mixture.wav`` + one file per stem)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import mean_sdr, track_sdr


def evaluate_folder(separator, folder: str | Path) -> tuple[dict[str, dict[str, float | None]], dict[str, float], float]:
    """Separate every track folder under ``folder`` and score it with global SDR.

    Returns ``(per_track, per_stem_mean, mean_over_stems)``; stems silent in a track are skipped.
    """
    from ..audio import load_audio

    rate, channels = separator.sample_rate, separator.config.audio.num_channels
    per_track = {}
    for track in sorted(p for p in Path(folder).iterdir() if (p / "mixture.wav").exists()):
        mix = load_audio(track / "mixture.wav", sample_rate=rate, channels=channels)
        refs = np.stack([load_audio(track / f"{s}.wav", sample_rate=rate, channels=channels) for s in separator.stems])
        est = separator.separate_mix(mix)
        per_track[track.name] = track_sdr(refs, est, mix, separator.stems)
    stems, mean = mean_sdr(list(per_track.values()))
    return per_track, stems, mean
