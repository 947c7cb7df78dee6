"""Helpers for the training tests: a tiny MDX23C config and tiny synthetic MUSDB-style datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

STEMS = ("vocals", "bass", "drums", "other")
RATE = 44100


def tiny_config(tmp_path: Path, name: str = "tiny.yaml", **overrides) -> Path:
    """Write a tiny training YAML (0.18 s chunks, ~20 k parameters); ``overrides``: ``{"training.lr": 1e-3}``."""
    cfg = {
        "audio": {"chunk_size": 8064, "dim_f": 256, "dim_t": 64, "hop_length": 128, "n_fft": 512,
                  "num_channels": 2, "sample_rate": RATE, "min_mean_abs": 0.0},
        "model": {"act": "gelu", "bottleneck_factor": 2, "growth": 8, "norm": "InstanceNorm",
                  "num_blocks_per_scale": 1, "num_channels": 8, "num_scales": 2, "num_subbands": 4, "scale": [2, 2]},
        "training": {"instruments": list(STEMS), "target_instrument": None, "batch_size": 2, "lr": 1e-3,
                     "num_epochs": 2, "num_steps": 3, "gradient_accumulation_steps": 2, "grad_clip": 1.0,
                     "optimizer": "adamw", "ema_momentum": 0.9, "use_amp": False, "num_workers": 0,
                     "loss_stft": 0.1, "stft_resolutions": [[256, 64], [128, 32]], "patience": 0, "reduce_factor": 0.5},
        "augmentations": {"enable": True, "loudness": True, "loudness_min": 0.5, "loudness_max": 1.5,
                          "mixup": True, "mixup_probs": [0.3],
                          "all": {"channel_shuffle": 0.5, "random_polarity": 0.5}},
        "inference": {"batch_size": 4, "num_overlap": 2},
    }
    for key, value in overrides.items():
        section, field = key.split(".")
        cfg[section][field] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def synth_stems(seconds: float, seed: int) -> dict[str, np.ndarray]:
    """Four distinguishable stereo stems ``[S, 2]``: a vibrato voice, a bass line, noise hits, a chord."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(200, 400)
    vocals = 0.3 * np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * 5 * t))
    bass = 0.4 * np.sin(2 * np.pi * rng.uniform(50, 90) * t)
    hits = (np.sin(2 * np.pi * 2 * t) > 0.95).astype(float)
    drums = 0.5 * hits * rng.standard_normal(t.size)
    other = 0.15 * sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(500, 2000, 3))
    return {"vocals": _pan(vocals, 0.5), "bass": _pan(bass, 0.4), "drums": _pan(drums, 0.6), "other": _pan(other, 0.3)}


def _pan(x: np.ndarray, p: float) -> np.ndarray:
    return np.stack([x * (1 - p), x * p], 1).astype(np.float32)


def make_dataset(root: Path, tracks: int = 2, seconds: float = 2.0, seed: int = 0, mixture: bool = True) -> Path:
    """MUSDB18-HQ layout under ``root``: ``track_i/{mixture,vocals,bass,drums,other}.wav``."""
    for i in range(tracks):
        folder = root / f"track_{i}"
        folder.mkdir(parents=True)
        stems = synth_stems(seconds, seed * 100 + i)
        for name, audio in stems.items():
            sf.write(folder / f"{name}.wav", audio, RATE, subtype="FLOAT")
        if mixture:
            sf.write(folder / "mixture.wav", sum(stems.values()), RATE, subtype="FLOAT")
    return root
