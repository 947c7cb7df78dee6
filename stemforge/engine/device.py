"""Picking the device (``auto`` is cuda > mps > cpu) and the number of CPU threads."""

from __future__ import annotations

import math
import os
import time

import torch

from ..errors import StemforgeError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a ``torch.device`` that exists on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise StemforgeError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StemforgeError(f"device '{name}' requested but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise StemforgeError(f"device '{name}' does not exist: {torch.cuda.device_count()} CUDA device(s) found")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise StemforgeError(f"device '{name}' requested but MPS is not available here; use --device cpu")
    return device


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def auto_threads(window_s: float = 0.2) -> int:
    """Usable cores minus those other processes keep busy right now (measured), at least 1.

    Measured on 2 shared cores with another process busy on one: the small network took 70 ms
    per chunk on 1 thread and 0.6-2.7 s on 2, since every parallel op waits for the thread that
    lost its core. Oversubscribing costs far more than leaving a core idle.
    """
    cores = usable_cores()
    return max(1, min(cores, cores - round(busy_cores(window_s))))


def busy_cores(window_s: float = 0.2) -> float:
    """How many of our CPUs were busy (not idle) over ``window_s`` seconds, from ``/proc/stat``; 0 if unknown."""
    try:
        cpus = os.sched_getaffinity(0)
        before = _cpu_times(cpus)
        time.sleep(window_s)
        after = _cpu_times(cpus)
    except (AttributeError, OSError, ValueError):
        return 0.0
    total = after[0] - before[0]
    return len(cpus) * (1 - (after[1] - before[1]) / total) if total > 0 else 0.0


def _cpu_times(cpus: set[int]) -> tuple[int, int]:
    """(total, idle) jiffies summed over ``cpus``."""
    total = idle = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                total += sum(values)
                idle += values[3] + values[4]
    return total, idle


def set_threads(threads: int | str = "auto") -> int:
    """``torch.set_num_threads`` to ``threads`` (``auto``: :func:`auto_threads`); returns the count."""
    n = auto_threads() if threads == "auto" else int(threads)
    if n < 1:
        raise StemforgeError(f"--threads must be at least 1 or 'auto', got {threads}")
    torch.set_num_threads(n)
    return n
