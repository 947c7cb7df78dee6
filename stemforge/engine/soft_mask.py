"""Soft-mask post-filter: share the mixture out among the stems by their estimated magnitudes.

In every STFT bin, stem ``j`` becomes ``G_j * X``: the mixture's STFT ``X`` weighted by

    M_j = |S_j|^p / sum_k |S_k|^p          (S_j: the network's estimate of stem j)
    G_j = min(M_j, max_gain * |S_j| / |X|)   (when max_gain is set)

With ``p = 2`` this is single-channel Wiener filtering, which Open-Unmix and Demucs v2 ran after
their magnitude networks. Without ``max_gain`` the stems sum to the mixture exactly, and mixture
energy that no stem claimed goes to the stems in proportion; with it, no bin of a stem comes out
louder than ``max_gain`` times the network's estimate (a quiet stem beside loud ones, such as a
hi-hat under a kit, is not handed what the others missed).

With ``spatial`` the channels are filtered together (a multichannel Wiener filter, as one
expectation-maximisation step of Open-Unmix's ``norbert`` does), so a stem's place in the stereo
image helps tell it from the others. Each stem gets a ``C x C`` spatial covariance per frequency,

    R_j(f) = sum_t S_j S_j^H / sum_t v_j      v_j(f, t) = mean over channels of |S_j|^2

summed over the frames of a block of ``spatial_block`` frames and the blocks on either side of it
(the stem's stereo image over a few seconds), and the stems become

    Y_j = w_j R_j (sum_k w_k R_k)^-1 X        w_j = v_j^(p / 2)

With one channel ``R_j = 1`` and this is the ratio mask above; with any number of channels the
stems sum to the mixture. ``max_gain`` then caps each channel's bin as above: ``|Y_j| <= max_gain
* |S_j|``. ``spatial`` may also name some stems (by index): those take ``Y_j``, the others the
ratio mask ``M_j X``, and the stems then no longer sum to the mixture exactly. (On the drum kits
of the validation songs the spatial filter gave the toms, hi-hat and cymbals what it took from the
centred kick and snare, so ``drums`` names those three.)

``keep`` then hands back part of each stem to the network: stem ``j`` comes out as
``(1 - keep_j) * Y_j + keep_j * S_j``. The filter fixes the network's errors where the stems overlap
but adds its own where a stem's estimate is already better than its share of the mixture; on the
validation songs a blend of the two beat either, a different share per stem (MODELS.md). Done on
the spectra, which equals the blend of the signals (the synthesis inverts the analysis).

The STFT is its own (``n_fft``, hop ``n_fft / 4``, periodic Hann window, zero padding of
``n_fft / 2`` at both ends, as ``torch.stft(center=True, pad_mode="constant")``), not the network's:
a longer window resolves the stems' harmonics better. :class:`SoftMaskStream` filters a track
piece by piece in memory independent of its length (with ``spatial`` it holds two blocks of
samples, and its output lags up to two blocks behind); :func:`soft_mask` does a whole track at
once through it. Both equal ``torch.stft`` -> mask -> ``torch.istft`` (``tests/test_soft_mask.py``).
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
    spatial: bool | tuple[int, ...] = False
    """Off, on for every stem, or on for the stems at these indices (the others: the ratio mask)."""
    spatial_block: int = 64
    keep: tuple[float, ...] | None = None
    """Per stem, the share of the network's own estimate in the output (0: the filter's alone)."""

    def __post_init__(self):
        if not self.power > 0:
            raise ValueError(f"soft_mask_power must be > 0, got {self.power}")
        if self.n_fft < 16 or self.n_fft % 4:
            raise ValueError(f"soft_mask_n_fft must be a multiple of 4 and at least 16, got {self.n_fft}")
        if self.max_gain is not None and not self.max_gain >= 1:
            raise ValueError(f"soft_mask_max_gain must be >= 1 or null, got {self.max_gain}")
        if not self.spatial_block >= 1:
            raise ValueError(f"soft_mask_spatial_block must be at least 1 frame, got {self.spatial_block}")
        if self.keep is not None and not all(0 <= k <= 1 for k in self.keep):
            raise ValueError(f"soft_mask_keep must be between 0 and 1, got {list(self.keep)}")

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


def spatial_covariance(stems: torch.Tensor) -> torch.Tensor:
    """``stems: [stems, C, frames, bins]`` complex -> ``sum_t S_j S_j^H``, ``[stems, bins, C, C]``
    (complex128, to be summed over blocks and normalised by :func:`spatial_mask_spectra`)."""
    channels = range(stems.shape[1])
    rows = [torch.stack([(stems[:, c] * stems[:, d].conj()).sum(1) for d in channels], -1) for c in channels]
    return torch.stack(rows, -2).to(torch.complex128)


DIAGONAL_LOAD = 1e-8
"""Added to the diagonal of the mixture's modelled covariance (whose trace is ``C`` where any stem
sounds), so that stems with one stereo image, e.g. all centred, still give an invertible matrix."""


def spatial_mask_spectra(mix: torch.Tensor, stems: torch.Tensor, covariance: torch.Tensor,
                         settings: SoftMask) -> torch.Tensor:
    """The multichannel filter of the module docstring. ``mix: [C, frames, bins]``, ``stems: [stems,
    C, frames, bins]`` complex; ``covariance: [stems, bins, C, C]``, :func:`spatial_covariance`
    summed over the frames the stems' images are taken from -> ``Y_j``, ``[stems, C, frames, bins]``.
    Computed in float64: with stems that share an image the modelled covariance is near singular."""
    channels = mix.shape[0]
    trace = torch.diagonal(covariance, dim1=-2, dim2=-1).real.sum(-1)  # [stems, bins] = C * sum_t v_j
    image = covariance / (trace / channels).clamp_min(torch.finfo(torch.float64).tiny)[..., None, None]  # R_j
    weight = stems.abs().double().square().mean(1).pow(settings.power / 2)  # w_j: [stems, frames, bins]
    weight = weight / weight.sum(0).clamp_min(torch.finfo(torch.float64).tiny)  # the filter ignores a common scale
    x = mix.to(torch.complex128)
    if channels == 2:  # in closed form: sum_k w_k R_k is Hermitian, [[a, b], [b*, d]]
        r11, r22, r12 = image[..., 0, 0].real[:, None], image[..., 1, 1].real[:, None], image[..., 0, 1][:, None]
        a = (weight * r11).sum(0) + DIAGONAL_LOAD  # [frames, bins]
        d = (weight * r22).sum(0) + DIAGONAL_LOAD
        b = (weight * r12).sum(0)
        det = a * d - b.abs().square()
        z1, z2 = (d * x[0] - b * x[1]) / det, (a * x[1] - b.conj() * x[0]) / det  # (sum_k w_k R_k)^-1 X
        out = torch.stack([r11 * z1 + r12 * z2, r12.conj() * z1 + r22 * z2], 1) * weight[:, None]  # w_j R_j z
    else:
        modelled = torch.einsum("stb,sbcd->tbcd", weight.to(image.dtype), image)
        modelled = modelled + DIAGONAL_LOAD * torch.eye(channels, dtype=modelled.dtype)
        z = torch.linalg.solve(modelled, x.permute(1, 2, 0))  # [frames, bins, C]
        out = torch.einsum("stb,sbcd,tbd->sctb", weight.to(image.dtype), image, z)
    out = out.to(stems.dtype)
    if settings.max_gain is not None:
        limit = settings.max_gain * stems.abs()
        out = out * (limit / out.abs().clamp_min(torch.finfo(limit.dtype).tiny)).clamp(max=1.0)
    if isinstance(settings.spatial, tuple):  # the stems not named keep the ratio mask
        ratio = [j for j in range(stems.shape[0]) if j not in settings.spatial]
        out[ratio] = mask_spectra(mix, stems, settings)[ratio]
    return out


def keep_estimates(filtered: torch.Tensor, stems: torch.Tensor, settings: SoftMask) -> torch.Tensor:
    """``(1 - keep_j) * filtered_j + keep_j * stems_j`` (``settings.keep``), ``filtered, stems: [stems,
    ..., bins]`` complex; ``filtered`` itself when nothing is kept."""
    if settings.keep is None or not any(settings.keep):
        return filtered
    keep = torch.tensor(settings.keep, dtype=stems.real.dtype).view(-1, *[1] * (stems.dim() - 1))
    return filtered + keep * (stems - filtered)


class SoftMaskStream:
    """Feed ``push(piece)`` with consecutive ``(mix [C, n], stems [S, C, n])`` pieces, then ``finish()``;
    each returns the filtered pieces finished so far, which end at most ``n_fft / 2`` samples before
    the input received (with ``spatial``, up to two blocks of frames before it). Held: the last
    piece and ``n_fft`` samples of mixture, stems and output; with ``spatial`` also the samples of
    up to two blocks and three blocks' covariances."""

    def __init__(self, settings: SoftMask):
        self.settings = settings
        self.window = torch.hann_window(settings.n_fft)
        self.window_squared = self.window.square()  # what each frame adds to norm
        self.step = settings.spatial_block if settings.spatial else FRAMES_PER_STEP  # frames analysed at once
        self.buf: torch.Tensor | None = None  # [1 + S, C, m]: mix and stems from padded position buf_start
        self.buf_start = 0
        self.next_frame = 0  # the first frame not yet analysed
        self.pending: list[tuple[int, int, torch.Tensor]] = []  # spatial: (first frame, frames, covariance) per block
        self.covariance_before: torch.Tensor | None = None  # spatial: of the block before pending[0]
        self.synth_frame = 0  # the first frame not yet filtered and added into acc
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
        frames = (self.buf_start + self.buf.shape[-1] - n_fft) // hop + 1  # frames that fit in what arrived
        pieces = []
        while frames > self.next_frame:  # emitting after every step keeps acc short however long the piece
            count = min(frames - self.next_frame, self.step)
            if count < self.step and self.settings.spatial and self.end is None:
                break  # a block's covariance is taken over the whole block
            self._analyse(count)
            pieces += self._emit()
        if self.end is not None:
            while self.pending:
                self._filter_pending()
            pieces += self._emit()
        return pieces

    def _analyse(self, count: int) -> None:
        """Filter ``count`` frames from ``next_frame``; or (``spatial``) take their covariance, and filter
        the block before them now that the covariance after it is known."""
        first, self.next_frame = self.next_frame, self.next_frame + count
        if not self.settings.spatial:
            spectra = self._spectra(first, count)
            self._synthesise(keep_estimates(mask_spectra(spectra[0], spectra[1:], self.settings), spectra[1:],
                                            self.settings))
            return
        own = sum(spatial_covariance(spectra[1:]) for spectra in self._spectra_in_steps(first, count))
        self.pending.append((first, count, own))
        if len(self.pending) == 2:
            self._filter_pending()

    def _filter_pending(self) -> None:
        """Filter the oldest pending block with the covariance of it and its neighbours (its spectra
        taken again from ``buf``: holding the samples costs less than holding the spectra)."""
        first, count, own = self.pending.pop(0)
        covariance = own
        if self.covariance_before is not None:
            covariance = covariance + self.covariance_before
        if self.pending:  # the block after it
            covariance = covariance + self.pending[0][2]
        for spectra in self._spectra_in_steps(first, count):
            filtered = spatial_mask_spectra(spectra[0], spectra[1:], covariance, self.settings)
            self._synthesise(keep_estimates(filtered, spectra[1:], self.settings))
        self.covariance_before = own

    def _spectra_in_steps(self, first: int, count: int):
        """:meth:`_spectra` of ``count`` frames from ``first``, ``FRAMES_PER_STEP`` at a time, so that
        the spectra in memory stay small whatever the block length."""
        for f in range(first, first + count, FRAMES_PER_STEP):
            yield self._spectra(f, min(FRAMES_PER_STEP, first + count - f))

    def _spectra(self, first: int, count: int) -> torch.Tensor:
        """The windowed spectra of ``count`` frames from frame ``first``: ``[1 + S, C, count, bins]``."""
        n_fft, hop = self.settings.n_fft, self.settings.hop
        at = first * hop - self.buf_start
        frames = self.buf[..., at : at + (count - 1) * hop + n_fft].unfold(-1, n_fft, hop)  # [1+S, C, count, n_fft]
        return torch.fft.rfft(frames * self.window, dim=-1)

    def _synthesise(self, filtered: torch.Tensor) -> None:
        """Overlap-add ``filtered: [S, C, frames, bins]``, spectra of the frames from ``synth_frame``, into ``acc``."""
        n_fft, hop = self.settings.n_fft, self.settings.hop
        count = filtered.shape[-2]
        out = torch.fft.irfft(filtered, n=n_fft, dim=-1) * self.window
        first = self.synth_frame * hop
        end = first + (count - 1) * hop + n_fft
        grow = end - self.acc_start - self.acc.shape[-1]
        if grow > 0:
            self.acc = torch.cat([self.acc, self.acc.new_zeros(*self.acc.shape[:-1], grow)], -1)
            self.norm = torch.cat([self.norm, self.norm.new_zeros(grow)])
        for f in range(count):
            a = first + f * hop - self.acc_start
            self.acc[..., a : a + n_fft] += out[:, :, f]
            self.norm[a : a + n_fft] += self.window_squared
        self.synth_frame += count

    def _emit(self) -> list[Piece]:
        """Return the samples no later frame will touch (all of them once the track has ended and
        every frame is filtered), and forget what no later frame needs."""
        hop = self.settings.hop
        upto = self.synth_frame * hop  # where the next frame to filter starts
        if self.end is not None:
            last = (self.end + self.settings.n_fft // 2 - self.settings.n_fft) // hop + 1  # frames in the padded track
            upto = self.end if self.synth_frame == last else min(upto, self.end)
        pieces = []
        if upto > self.emitted:
            a = slice(self.emitted - self.acc_start, upto - self.acc_start)
            m = slice(self.emitted - self.buf_start, upto - self.buf_start)
            pieces.append((self.buf[0, :, m].clone(), self.acc[..., a] / self.norm[a]))
            self.emitted = upto
        needed = min(self.synth_frame * hop, self.emitted)  # the next frame to filter, or the first sample to return
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
