"""Choosing how many chunks to run per network call."""

from __future__ import annotations

import os

import torch

MAX_BATCH = {"cpu": 4, "cuda": 32, "mps": 8}
WORKING_COPIES = 6  # live full-resolution tensors besides the skips (norm, act, conv out, residual...)


def activation_bytes_per_chunk(model: torch.nn.Module, chunk: int, dtype: torch.dtype) -> int:
    """Estimated peak activation memory of one chunk through an MDX23C network, in bytes.

    Sums the U-Net skip tensors over levels plus a few working tensors at full resolution,
    the spectrogram in and the stems out (fp32).
    """
    frames = chunk // model.hop_length + 1
    f = model.dim_f // model.num_subbands
    c0 = model.first_conv.out_channels
    levels = len(model.encoder_blocks)
    width = dtype.itemsize
    skips, c, t = 0, c0, frames
    growth = (model.bottleneck_block.blocks[0].shortcut.out_channels - c0) // max(levels, 1)
    for _ in range(levels + 1):
        skips += c * t * f
        c, t, f = c + growth, max(1, t // 2), max(1, f // 2)
    full = c0 * frames * (model.dim_f // model.num_subbands)
    spec = 2 * model.audio_channels * model.dim_f * frames * (1 + model.num_stems)
    return width * (skips + WORKING_COPIES * full) + 4 * spec


def available_memory(device: torch.device) -> int:
    """Free memory on ``device`` in bytes (CUDA: ``mem_get_info``; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_batch_size(model: torch.nn.Module, chunk: int, device: torch.device, dtype: torch.dtype,
                    safety: float = 0.5) -> int:
    """Largest batch whose estimated activations fit in ``safety`` x free memory, capped per device."""
    per_chunk = activation_bytes_per_chunk(model, chunk, dtype)
    fits = int(safety * available_memory(device) // max(per_chunk, 1))
    return max(1, min(fits, MAX_BATCH.get(device.type, 4)))
