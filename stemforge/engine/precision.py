"""Selective precision: the network may run in bf16/fp16; STFT, iSTFT and accumulation stay fp32."""

from __future__ import annotations

import contextlib

import torch

from ..errors import StemforgeError

_NAMES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when bf16 convolutions pay off on this CPU (:func:`bf16_pays_off` of ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    cpu = getattr(torch, "cpu", None)
    return bf16_pays_off(cpuinfo) or bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def cpu_flags(cpuinfo: str) -> set[str]:
    """The words of the ``flags`` lines of ``/proc/cpuinfo``'s text (``avx2``, ``avx512_bf16``, ``amx_bf16``...)."""
    return {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}


def bf16_pays_off(cpuinfo: str) -> bool:
    """From the text of ``/proc/cpuinfo``: AMX bf16 tiles (Intel), or AVX512-BF16 on an AMD CPU (Zen 4
    on, which runs it at full width).

    AVX512-BF16 on an Intel CPU without AMX is not enough: there we measured a 2048^2 matmul at
    137 GFLOP/s fp32 vs 151 bf16, and the MDX23C network slower in bf16 than in fp32 (RTF 0.195 vs
    0.169, BENCHMARKS.md). On an AMD EPYC (Zen 4) the shipped bags ran 1.31x as fast in bf16
    (`stemforge bench`: `default` 0.287 -> 0.219, `drums` 0.251 -> 0.192).
    """
    flags = cpu_flags(cpuinfo)
    return "amx_bf16" in flags or ("AuthenticAMD" in cpuinfo and "avx512_bf16" in flags)


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """``fp32|bf16|fp16|auto`` -> dtype. Auto: fp16 on CUDA, bf16 on CPUs where it pays off, else fp32."""
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
