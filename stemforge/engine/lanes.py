"""Running several chunks at once, each on its own CPU thread ("lanes").

A small network leaves intra-op threads idle: its convolutions are too short to split well.
Measured with the shipped ``default`` model (1.6 M parameters, 3 s chunks) on 2 shared cores:
one chunk on 2 torch threads took 102-136 ms, two chunks at once on 1 thread each 69-97 ms per
chunk, bit-for-bit the same output; a whole 60 s file at overlap 4 took 8.7 s against 9.8 s
(medians of 4 interleaved runs, 1.13x). Each lane runs STFT, network and iSTFT of its share of the
batch; PyTorch and ONNX Runtime release the GIL inside their kernels, so the lanes run in
parallel. The thread count of a torch worker thread is its own (OpenMP), so each lane sets it
once when it starts and the caller's thread keeps its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from ..errors import StemforgeError

Run = Callable[[torch.Tensor], torch.Tensor]


SMALL_NETWORK = 10_000_000  # parameters; larger networks split well over intra-op threads


def resolve_lanes(lanes: int | str, device: torch.device, threads: int | None = None,
                  parameters: int = 0) -> tuple[int, int]:
    """``(lanes, torch threads per lane)`` for ``lanes`` = ``auto`` or a count.

    ``auto``: 2 lanes for a small network (under 10 M ``parameters``) on a CPU with at least 2
    threads (half the threads each), else 1. A large network's convolutions keep the threads
    busy, and every lane holds its own activations. GPUs run one lane: a batch fills them better.
    """
    threads = threads or torch.get_num_threads()
    if lanes == "auto":
        n = 2 if device.type == "cpu" and threads >= 2 and parameters < SMALL_NETWORK else 1
    else:
        try:
            n = int(lanes)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise StemforgeError(f"--lanes must be at least 1 or 'auto', got {lanes}")
    return n, max(1, threads // n)


def network_size(model: torch.nn.Module) -> int:
    """Parameters of the largest network that one call runs: a bag's members
    (:class:`~stemforge.models.StemBag`) run one after another, so a bag of small networks is small."""
    members = getattr(model, "members", None)
    if members is not None:
        return max(network_size(m) for m in members)
    return sum(p.numel() for p in model.parameters())


class Lanes:
    """Callable ``chunks: [B, C, chunk] -> [B, stems, C, chunk]``: ``run`` on up to ``lanes`` parts at once.

    The batch is split into ``min(lanes, B)`` consecutive parts (``torch.tensor_split``), each run on
    a worker thread with ``threads`` torch threads, and the results are concatenated in order. An
    error in any lane (e.g. out of memory) is raised to the caller after every lane has finished,
    so :class:`~stemforge.engine.batching.AdaptiveBatch` can halve the batch and retry. The first
    call runs its parts one after another, so lazy set-up (torch.compile, ONNX Runtime's first
    run) happens once.
    """

    def __init__(self, run: Run, lanes: int, threads: int = 1):
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        self.run, self.lanes, self.threads = run, lanes, threads
        self._pool = ThreadPoolExecutor(lanes, thread_name_prefix="stemforge-lane",
                                        initializer=torch.set_num_threads, initargs=(threads,))
        self._warm = False

    def __call__(self, chunks: torch.Tensor) -> torch.Tensor:
        parts = torch.tensor_split(chunks, min(self.lanes, len(chunks)))
        if not self._warm:
            outs = [self._pool.submit(self.run, part).result() for part in parts]
            self._warm = True
        else:
            futures = [self._pool.submit(self.run, part) for part in parts]
            errors = [f.exception() for f in futures]
            if any(errors):
                raise next(e for e in errors if e is not None)
            outs = [f.result() for f in futures]
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def close(self) -> None:
        """Stop the worker threads (they also stop when the object is garbage-collected)."""
        self._pool.shutdown(wait=True)
