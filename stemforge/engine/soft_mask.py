"""Soft-mask post-filter: share the mixture out among the stems by their estimated magnitudes.

In every STFT bin, stem ``j`` becomes ``G_j * X``: the mixture's STFT ``X`` weighted by

    M_j = |S_j|^p / sum_k |S_k|^p          (S_j: the network's estimate of stem j)
    G_j = min(M_j, max_gain * |S_j| / |X|)   (when max_gain is set)

With ``p = 2`` this is single-channel Wiener filtering, which Open-Unmix and Demucs v2 ran after
their magnitude networks. Without ``max_gain`` the stems sum to the mixture exactly, and mixture
energy that no stem claimed goes to the stems in proportion; with it, no bin of a stem comes out
louder than ``max_gain`` times the network's estimate (a quiet stem beside loud ones, such as a
hi-hat under a kit, is not handed what the others missed).

The STFT is its own (``n_fft``, hop ``n_fft / 4``, periodic Hann window, zero padding of
``n_fft / 2`` at both ends, as ``torch.stft(center=True, pad_mode="constant")``), not the network's:
a longer window resolves the stems' harmonics better. :class:`SoftMaskStream` filters a track
piece by piece in memory independent of its length; :func:`soft_mask` does a whole track at once
through it. Both equal ``torch.stft`` -> mask -> ``torch.istft`` (``tests/test_soft_mask.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Piece = tuple[torch.Tensor, torch.Tensor]
"""``(mix [C, n], stems [stems, C, n])``, as :class:`~stemforge.engine.streaming.OverlapAddStream` yields."""

FRAMES_PER_STEP = 32
"""STFT frames filtered at once: bounds the spectrogram held in memory (32 x 2049 bins per signal at n_fft 4096)."""


@dataclass(frozen=True)
class SoftMask:
    """Settings of the post-filter (``inference.soft_mask_*`` in a model's YAML)."""

    power: float = 1.0
    n_fft: int = 4096
    max_gain: float | None = None

    def __post_init__(self):
        if not self.power > 0:
            raise ValueError(f"soft_mask_power must be > 0, got {self.power}")
        if self.n_fft < 16 or self.n_fft % 4:
            raise ValueError(f"soft_mask_n_fft must be a multiple of 4 and at least 16, got {self.n_fft}")
        if self.max_gain is not None and not self.max_gain >= 1:
            raise ValueError(f"soft_mask_max_gain must be >= 1 or null, got {self.max_gain}")

    @property
    def hop(self) -> int:
        return self.n_fft // 4


def mask_spectra(mix: torch.Tensor, stems: torch.Tensor, settings: SoftMask) -> torch.Tensor:
    """``mix: [..., bins]`` complex, ``stems: [stems, ..., bins]`` complex -> ``G_j * mix`` per stem
    ``[stems, ..., bins]`` (the gains of the module docstring)."""
    magnitude = stems.abs()
    weight = magnitude.pow(settings.power)
    gain = weight / weight.sum(0).clamp_min(torch.finfo(weight.dtype).tiny)
    if settings.max_gain is not None:
        gain = torch.minimum(gain, settings.max_gain * magnitude / mix.abs().clamp_min(torch.finfo(weight.dtype).tiny))
    return gain * mix


class SoftMaskStream:
    """Feed ``push(piece)`` with consecutive ``(mix [C, n], stems [S, C, n])`` pieces, then ``finish()``;
    each returns the filtered pieces finished so far, which end at most ``n_fft / 2`` samples before
    the input received. Held: the last piece and ``n_fft`` samples of mixture, stems and output."""

    def __init__(self, settings: SoftMask):
        self.settings = settings
        self.window = torch.hann_window(settings.n_fft)
        self.window_squared = self.window.square()  # what each frame adds to norm
        self.buf: torch.Tensor | None = None  # [1 + S, C, m]: mix and stems from padded position buf_start
        self.buf_start = 0
        self.next_frame = 0
        self.acc: torch.Tensor | None = None  # [S, C, m] filtered frames summed, from padded position acc_start
        self.norm = torch.zeros(0)  # summed squared window, from acc_start
        self.acc_start = 0
        self.emitted = settings.n_fft // 2  # padded position of the first sample not yet returned
        self.end: int | None = None  # padded position one past the last real sample, set by finish()

    @torch.inference_mode()
    def push(self, piece: Piece) -> list[Piece]:
        mix, stems = piece
        if self.end is not None:
            raise RuntimeError("push() after finish()")
        both = torch.cat([mix[None].float(), stems.float()], 0)
        if self.buf is None:
            pad = both.new_zeros(*both.shape[:-1], self.settings.n_fft // 2)
            self.buf = torch.cat([pad, both], -1)
            self.acc = both.new_zeros(*stems.shape[:-1], 0)
        else:
            self.buf = torch.cat([self.buf, both], -1)
        return self._run()

    @torch.inference_mode()
    def finish(self) -> list[Piece]:
        if self.end is not None:
            raise RuntimeError("finish() called twice")
        if self.buf is None:
            raise ValueError("no audio was pushed")
        self.end = self.buf_start + self.buf.shape[-1]
        self.buf = torch.cat([self.buf, self.buf.new_zeros(*self.buf.shape[:-1], self.settings.n_fft // 2)], -1)
        return self._run()

    def _run(self) -> list[Piece]:
        n_fft, hop = self.settings.n_fft, self.settings.hop
        available = self.buf_start + self.buf.shape[-1]
        frames = 0 if available < self.next_frame * hop + n_fft else (available - n_fft) // hop - self.next_frame + 1
        pieces = []
        while frames > 0:  # emitting after every step keeps acc short however long the piece
            step = min(frames, FRAMES_PER_STEP)
            self._filter(step)
            frames -= step
            pieces += self._emit(last=frames == 0)
        return pieces or self._emit(last=True)

    def _filter(self, count: int) -> None:
        """Filter ``count`` frames from ``next_frame`` and overlap-add them into ``acc``."""
        n_fft, hop = self.settings.n_fft, self.settings.hop
        first = self.next_frame * hop
        at = first - self.buf_start
        frames = self.buf[..., at : at + (count - 1) * hop + n_fft].unfold(-1, n_fft, hop)  # [1+S, C, F, n_fft]
        spectra = torch.fft.rfft(frames * self.window, dim=-1)
        out = torch.fft.irfft(mask_spectra(spectra[0], spectra[1:], self.settings), n=n_fft, dim=-1) * self.window
        end = first + (count - 1) * hop + n_fft
        grow = end - self.acc_start - self.acc.shape[-1]
        if grow > 0:
            self.acc = torch.cat([self.acc, self.acc.new_zeros(*self.acc.shape[:-1], grow)], -1)
            self.norm = torch.cat([self.norm, self.norm.new_zeros(grow)])
        for f in range(count):
            a = first + f * hop - self.acc_start
            self.acc[..., a : a + n_fft] += out[:, :, f]
            self.norm[a : a + n_fft] += self.window_squared
        self.next_frame += count

    def _emit(self, last: bool) -> list[Piece]:
        """Return the samples no later frame will touch (all of them once the track has ended and
        ``last`` frames have run), and forget what no later frame needs."""
        hop = self.settings.hop
        upto = self.next_frame * hop  # where the next frame starts
        if self.end is not None:
            upto = self.end if last else min(upto, self.end)
        pieces = []
        if upto > self.emitted:
            a = slice(self.emitted - self.acc_start, upto - self.acc_start)
            m = slice(self.emitted - self.buf_start, upto - self.buf_start)
            pieces.append((self.buf[0, :, m].clone(), self.acc[..., a] / self.norm[a]))
            self.emitted = upto
        needed = min(self.next_frame * hop, self.emitted)  # the next frame's start, or what is left to return
        drop = needed - self.acc_start
        self.acc, self.norm, self.acc_start = self.acc[..., drop:], self.norm[drop:], needed
        keep = needed - self.buf_start
        self.buf, self.buf_start = self.buf[..., keep:], needed
        return pieces


def soft_mask(mix: torch.Tensor, stems: torch.Tensor, settings: SoftMask) -> torch.Tensor:
    """The post-filter over a whole track: ``mix: [C, n]``, ``stems: [S, C, n]`` -> ``[S, C, n]``."""
    stream, pieces, step = SoftMaskStream(settings), [], 1 << 18  # in slices: no second copy of the track
    for at in range(0, mix.shape[-1], step):
        pieces += stream.push((mix[:, at : at + step], stems[..., at : at + step]))
    pieces += stream.finish()
    return torch.cat([s for _, s in pieces], -1)


class SoftMaskedStream:
    """An overlap-add stream (``push(block)``/``finish()`` -> pieces) with the post-filter after it."""

    def __init__(self, inner, settings: SoftMask):
        self.inner, self.filter = inner, SoftMaskStream(settings)

    def push(self, block) -> list[Piece]:
        return [out for piece in self.inner.push(block) for out in self.filter.push(piece)]

    def finish(self) -> list[Piece]:
        pieces = [out for piece in self.inner.finish() for out in self.filter.push(piece)]
        return pieces + self.filter.finish()
