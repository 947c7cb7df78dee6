"""Overlap-add separation of a track that arrives block by block, in memory independent of its length.

Same chunk grid, padding, window, batching and normalisation as
:func:`~stemforge.engine.overlap_add.separate_tensor`, so the concatenated output equals it.
The track length is only known at the end, which is all the plan needs it for:

* a chunk that lies wholly inside the samples received so far is in the plan whatever the
  final length, so it can run; nothing runs before ``chunk`` samples have arrived (so the
  reflect padding at the start needs only the first ``border`` samples);
* at the end the right padding reflects the last samples, so the last ``chunk`` samples are
  always kept; tracks shorter than a chunk are handled whole, exactly as in memory;
* an output sample is final once the next chunk to run starts after it.

Held at any time: about ``chunk + batch * hop`` input samples and as many accumulated outputs.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .batching import AdaptiveBatch
from .overlap_add import ChunkPlan, Progress, pad_track, plan_chunks
from .staging import Staging
from .windows import taper_window

Piece = tuple[torch.Tensor, torch.Tensor]
"""``(mix [C, n], stems [stems, C, n])``: consecutive finished pieces of the track, on the CPU."""


class OverlapAddStream:
    """Feed ``push(block [C, n])`` then ``finish()``; each returns the pieces finished so far.

    Args:
        run: ``chunks [B, C, chunk] -> [B, stems, C, chunk]`` (e.g. a ChunkRunner).
        device: where chunks are staged and the overlap-add accumulates; ``run``'s outputs are
            moved there (best: the device ``run`` computes on).
        length_hint: expected length (samples), for progress only.
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], *, chunk: int, overlap: int, num_stems: int,
                 channels: int, batch_size: int = 1, device: torch.device | str = "cpu",
                 progress: Progress | None = None, length_hint: int | None = None):
        self.batcher = AdaptiveBatch(run, batch_size)
        self.staging = Staging(max(1, batch_size), channels, chunk, device)
        self.chunk, self.overlap, self.channels = chunk, overlap, channels
        self.hop = max(1, chunk // overlap)
        self.border = chunk - self.hop
        self.device = torch.device(device)
        self.window = taper_window(chunk, overlap).to(self.device)
        self.progress, self.length_hint = progress, length_hint
        self.received = 0  # real samples pushed
        self.pending: list[torch.Tensor] = []  # blocks not yet appended to buf
        self.buf: torch.Tensor | None = None  # padded track from position buf_start
        self.buf_start = 0
        self.plan: ChunkPlan | None = None  # known at finish()
        self.next_chunk = 0
        self.acc = torch.zeros(num_stems, channels, 0, device=self.device)  # weighted sum from acc_start
        self.norm = torch.zeros(0, device=self.device)  # summed window from acc_start
        self.acc_start = 0

    # -- feeding ----------------------------------------------------------------------------

    @torch.inference_mode()
    def push(self, block: np.ndarray | torch.Tensor) -> list[Piece]:
        """Add ``block: [C, n]`` (fp32, the model's rate) and run every full batch now possible."""
        block = torch.as_tensor(block, dtype=torch.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a block of shape [{self.channels}, n], got {tuple(block.shape)}")
        if self.plan is not None:
            raise RuntimeError("push() after finish()")
        self.pending.append(block)
        self.received += block.shape[-1]
        if self.buf is None and self.received < self.chunk:
            return []
        if self._ready_chunks() < self.batcher.size:
            return []
        self._consolidate()
        return self._run(final=False)

    @torch.inference_mode()
    def finish(self) -> list[Piece]:
        """The track has ended: pad its end, run the remaining chunks and return the rest."""
        if self.received == 0:
            raise ValueError("no audio was pushed")
        self.plan = plan_chunks(self.received, self.chunk, self.overlap)
        if self.buf is None:  # shorter than a chunk: exactly the in-memory padding
            self.buf = pad_track(torch.cat(self.pending, -1), self.plan)
            self.pending = []
        else:
            self._consolidate()
            right = self.plan.pad_right
            self.buf = torch.cat([self.buf, self.buf[:, -(right + 1) : -1].flip(-1)], -1)
        return self._run(final=True)

    # -- internals --------------------------------------------------------------------------

    def _known_end(self) -> int:
        """Padded position one past the last sample available (pending blocks included)."""
        if self.buf is None:
            return self.border + self.received
        return self.buf_start + self.buf.shape[-1] + sum(b.shape[-1] for b in self.pending)

    def _ready_chunks(self) -> int:
        """Chunks that could run now: the ones lying wholly within the available samples."""
        end = self._known_end()
        if self.plan is not None:
            return self.plan.num_chunks - self.next_chunk
        start = self.next_chunk * self.hop
        return 0 if start + self.chunk > end else (end - self.chunk - start) // self.hop + 1

    def _consolidate(self) -> None:
        """Append pending blocks to ``buf``; drop what no chunk, output or end padding needs."""
        if self.buf is None:  # first chunk: reflect-pad the start
            mix = torch.cat(self.pending, -1)
            self.buf = torch.cat([mix[:, 1 : self.border + 1].flip(-1), mix], -1)
        elif self.pending:
            end = self._known_end()
            keep = max(self.buf_start, min(self.acc_start, end - self.chunk))
            self.buf = torch.cat([self.buf[:, keep - self.buf_start :], *self.pending], -1)
            self.buf_start = keep
        self.pending = []

    def _run(self, final: bool) -> list[Piece]:
        pieces = []
        while (n := min(self.batcher.size, self._ready_chunks())) and (final or n == self.batcher.size):
            starts = [(self.next_chunk + j) * self.hop for j in range(n)]
            first = starts[0] - self.buf_start
            frames = self.buf[:, first : first + (n - 1) * self.hop + self.chunk].unfold(-1, self.chunk, self.hop)
            y = self.batcher(self.staging.upload(frames.transpose(0, 1)))  # [n, stems, C, chunk]
            y = y.to(self.device).mul_(self.window)  # a no-op unless run's device is not ours
            self._grow(starts[-1] + self.chunk)
            for j, s in enumerate(starts):
                at = s - self.acc_start
                self.acc[..., at : at + self.chunk] += y[j]
                self.norm[at : at + self.chunk] += self.window
            self.next_chunk += n
            self._report()
            pieces += self._emit(self.next_chunk * self.hop if not final or self.next_chunk < self.plan.num_chunks
                                 else self.border + self.received)
        return pieces

    def _grow(self, end: int) -> None:
        extra = end - self.acc_start - self.acc.shape[-1]
        if extra > 0:
            self.acc = torch.cat([self.acc, self.acc.new_zeros(*self.acc.shape[:-1], extra)], -1)
            self.norm = torch.cat([self.norm, self.norm.new_zeros(extra)])

    def _emit(self, upto: int) -> list[Piece]:
        """Return the finished real samples before padded position ``upto`` and forget them."""
        lo, hi = max(self.acc_start, self.border), min(upto, self.border + self.received)
        pieces = []
        if hi > lo:
            a = slice(lo - self.acc_start, hi - self.acc_start)
            stems = (self.acc[..., a] / self.norm[a]).cpu()
            mix = self.buf[:, lo - self.buf_start : hi - self.buf_start].clone()
            pieces.append((mix, stems))
        drop = max(0, upto - self.acc_start)
        self.acc, self.norm = self.acc[..., drop:], self.norm[drop:]
        self.acc_start += drop
        return pieces

    def _report(self) -> None:
        if self.progress is None:
            return
        if self.plan is not None:
            total = self.plan.num_chunks
        else:
            hint = max(self.length_hint or 0, self.received)
            total = max(plan_chunks(hint, self.chunk, self.overlap).num_chunks, self.next_chunk + 1)
        self.progress(self.next_chunk, total)


def separate_stream(run: Callable[[torch.Tensor], torch.Tensor], blocks: Iterable[np.ndarray | torch.Tensor],
                    **kwargs) -> Iterator[Piece]:
    """Separate a track given as blocks ``[C, n]``; yields ``(mix, stems)`` pieces in order.

    Keyword arguments as :class:`OverlapAddStream`.
    """
    stream = OverlapAddStream(run, **kwargs)
    for block in blocks:
        yield from stream.push(block)
    yield from stream.finish()
