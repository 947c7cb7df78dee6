"""Measuring the peak memory of a piece of work: CUDA allocator stats, or live tensors on the CPU.

The CPU has no allocator statistics and RSS cannot be reset between measurements (glibc keeps
freed blocks resident), so on the CPU we count like ``tracemalloc`` does, but for tensors: every
storage an op creates is added when it appears and subtracted when its last tensor dies.
Scratch memory inside kernels (oneDNN workspaces) is not seen; callers keep a safety margin.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    """Dispatch mode tracking ``current`` and ``peak`` bytes of tensor storages created inside it."""

    def __init__(self):
        super().__init__()
        self.refs: dict[int, int] = {}  # storage address -> live tracked tensors using it
        self.sizes: dict[int, int] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {_address(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._track(t, fresh=_address(t) not in inputs)
        return out

    def _track(self, t: torch.Tensor, fresh: bool) -> None:
        key = _address(t)
        if key not in self.refs:
            if not fresh or key == 0:  # a view of, or a write into, memory made outside: not ours
                return
            self.refs[key], self.sizes[key] = 0, t.untyped_storage().nbytes()
            self.current += self.sizes[key]
            self.peak = max(self.peak, self.current)
        self.refs[key] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.current -= self.sizes.pop(key)


def _address(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def peak_bytes(work: Callable[[], object], device: torch.device) -> int:
    """Peak memory ``work()`` allocates on ``device`` above what was allocated before, in bytes.

    The result of ``work`` counts (it is alive at the end), then it is dropped.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = work()
        torch.cuda.synchronize(device)
        del result
        return torch.cuda.max_memory_allocated(device) - before
    with LiveTensorBytes() as tracker:
        result = work()
        del result
    return tracker.peak
