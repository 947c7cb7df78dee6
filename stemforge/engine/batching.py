"""Choosing how many chunks to run per network call, and backing off on out-of-memory.

``auto_batch_size`` measures what one more chunk costs (peak memory of 1 and of 2 chunks through
the runner) and fits as many as ``safety`` x free memory allows, up to a per-device cap.
:class:`AdaptiveBatch` halves the batch when a call runs out of memory anyway and reruns the
same chunks, so no work is lost.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch

from .peak_memory import peak_bytes

Run = Callable[[torch.Tensor], torch.Tensor]

# Measured on 2 cores (AVX-512, no AMX), configs/mdx23c_small.yaml: batch 1, 2 and 4 cost the
# same time per chunk within noise (1 thread: 70, 71, 66 ms), while memory grows linearly.
# So small CPUs get batch 1 (and skip the measurement); many-core CPUs up to 4, where a
# single chunk's small convolutions leave threads idle. GPUs need large batches to fill.
CPU_CORES_PER_CHUNK = 4
MAX_BATCH = {"cpu": 4, "cuda": 32, "mps": 8}


def batch_cap(device: torch.device, threads: int | None = None) -> int:
    """Largest batch worth running on ``device`` (CPU: one chunk per 4 threads, at most 4)."""
    if device.type == "cpu":
        threads = threads or torch.get_num_threads()
        return max(1, min(MAX_BATCH["cpu"], threads // CPU_CORES_PER_CHUNK))
    return MAX_BATCH.get(device.type, 4)


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


def chunk_memory(run: Run, chunk: int, channels: int, device: torch.device) -> tuple[int, int]:
    """Measured ``(fixed, per_chunk)`` bytes of one call of ``run``: peak(n) ~ fixed + n * per_chunk."""
    one, two = (peak_bytes(lambda: run(torch.zeros(n, channels, chunk)), device) for n in (1, 2))
    per_chunk = max(two - one, 1)
    return max(one - per_chunk, 0), per_chunk


def fit_batch(fixed: int, per_chunk: int, free: int, cap: int, safety: float = 0.5) -> int:
    """Largest ``n <= cap`` with ``fixed + n * per_chunk <= safety * free`` (at least 1)."""
    return max(1, min(cap, int((safety * free - fixed) // per_chunk)))


def auto_batch_size(run: Run, chunk: int, channels: int, device: torch.device, safety: float = 0.5,
                    cap: int | None = None) -> int:
    """Largest batch that fits in ``safety`` x free memory by a measured per-chunk cost, capped per device.

    Runs the network on 1 and 2 silent chunks to measure, unless the cap is 1.
    """
    cap = cap or batch_cap(device)
    if cap == 1:
        return 1
    fixed, per_chunk = chunk_memory(run, chunk, channels, device)
    return fit_batch(fixed, per_chunk, available_memory(device), cap, safety)


OOM_MESSAGES = ("out of memory", "can't allocate memory", "failed to allocate", "bad_alloc")


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory errors from torch (CUDA or CPU allocator) and ONNX Runtime."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if not isinstance(exc, RuntimeError) and not type(exc).__module__.startswith("onnxruntime"):
        return False
    return any(s in str(exc).lower() for s in OOM_MESSAGES)


class AdaptiveBatch:
    """Callable wrapping ``run``: on out-of-memory, halves ``size`` and reruns the same chunks in halves.

    ``size`` is the batch the engine should gather next; it only ever shrinks. A single chunk
    that does not fit re-raises the error.
    """

    def __init__(self, run: Run, size: int):
        self.run, self.size = run, max(1, int(size))

    def __call__(self, chunks: torch.Tensor) -> torch.Tensor:
        if len(chunks) > self.size:
            return torch.cat([self(part) for part in chunks.split(self.size)])
        try:
            return self.run(chunks)
        except Exception as exc:
            if len(chunks) == 1 or not is_oom(exc):
                raise
        # out of the except block: the failed call's frames and tensors are released
        self.size = max(1, len(chunks) // 2)
        warnings.warn(f"out of memory with {len(chunks)} chunks per call; continuing with {self.size}",
                      RuntimeWarning, stacklevel=2)
        _free_cached_memory()
        return self(chunks)


def _free_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
