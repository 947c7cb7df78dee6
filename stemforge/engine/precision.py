"""Selective precision: the network may run in bf16/fp16; STFT, iSTFT and accumulation stay fp32."""

from __future__ import annotations

import contextlib

import torch

from ..errors import StemforgeError

_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AMX bf16 tiles, the units that make bf16 convolutions pay off.

    AVX512-BF16 alone is not enough: on such a CPU without AMX we measured a 2048^2 matmul at
    137 GFLOP/s fp32 vs 151 bf16, and the MDX23C network no faster in bf16 than in fp32.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        flags = ""
    cpu = getattr(torch, "cpu", None)
    return "amx_bf16" in flags or bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """``fp32|bf16|fp16|auto`` -> dtype. Auto: fp16 on CUDA, bf16 on CPUs with AMX bf16, else fp32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if name not in _NAMES:
        raise StemforgeError(f"unknown precision '{name}'; use fp32, bf16, fp16 or auto")
    return _NAMES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast context for the network; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_name(dtype: torch.dtype) -> str:
    return next(k for k, v in _NAMES.items() if v == dtype)
