"""Handing batches of chunks to the device: one reused host buffer, pinned for CUDA.

From pinned memory a CUDA copy is asynchronous, so the network of one batch can be queued while
the next batch is gathered. The buffer must then not be overwritten before its copy has run:
:class:`Staging` records a CUDA event after each upload and waits on it before the next write.
On the CPU the "upload" is the buffer itself, used before the next batch is gathered.
"""

from __future__ import annotations

import torch


class Staging:
    """``upload(chunks [n, C, chunk]) -> the same chunks on device``, through one reused host buffer.

    Args:
        capacity: the largest ``n``; ``channels``, ``chunk``: the chunk shape.
    """

    def __init__(self, capacity: int, channels: int, chunk: int, device: torch.device | str):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.buffer = torch.empty(capacity, channels, chunk, pin_memory=self.cuda)
        self._copied: torch.cuda.Event | None = None

    def upload(self, chunks: torch.Tensor) -> torch.Tensor:
        """Copy ``chunks`` (any layout, on the CPU) into the buffer and send them to the device."""
        n = chunks.shape[0]
        if n > self.buffer.shape[0]:
            raise ValueError(f"{n} chunks do not fit a staging buffer of {self.buffer.shape[0]}")
        if self._copied is not None:
            self._copied.synchronize()  # the previous batch has left the buffer
        self.buffer[:n].copy_(chunks)
        if not self.cuda:
            return self.buffer[:n]
        out = self.buffer[:n].to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out
