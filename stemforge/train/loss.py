"""Training loss: L1 on the waveform, plus optional multi-resolution STFT and batch-SDR terms."""

from __future__ import annotations

import torch
from torch import nn


class MultiResolutionSTFTLoss(nn.Module):
    """Sum over resolutions of spectral convergence + L1 of log magnitudes.

    ``est, ref: [..., S]`` waveforms; ``resolutions``: ``(n_fft, hop)`` pairs (Hann windows).
    """

    def __init__(self, resolutions: tuple[tuple[int, int], ...]):
        super().__init__()
        self.resolutions = tuple(resolutions)
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        est, ref = est.reshape(-1, est.shape[-1]), ref.reshape(-1, ref.shape[-1])
        total = est.new_zeros(())
        for n_fft, hop in self.resolutions:
            window = getattr(self, f"window_{n_fft}")
            e, r = (_magnitude(x, n_fft, hop, window) for x in (est, ref))
            convergence = torch.linalg.vector_norm(r - e) / torch.linalg.vector_norm(r).clamp_min(1e-7)
            total = total + convergence + (r.log() - e.log()).abs().mean()
        return total / len(self.resolutions)


def _magnitude(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    z = torch.stft(x, n_fft, hop, window=window, center=True, return_complex=True)
    return z.abs().clamp_min(1e-7)


def negative_batch_sdr(est: torch.Tensor, ref: torch.Tensor, floor_db: float = -30.0,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Minus the SDR (dB) of each stem over the whole batch, averaged over stems (weighted by
    ``weights: [stems]`` when given).

    ``est, ref: [B, stems, C, S]``. Each stem's error energy is divided by its own reference
    energy, so a quiet stem (a hi-hat) weighs as much as a loud one, and a sparse target is not
    pulled to zero as L1 pulls it (the median of a mostly silent signal is 0). A floor of
    ``floor_db`` below the mean stem energy is added to both energies, so a stem that is silent
    in the whole batch (toms, often) asks for an output near silence without dominating the loss.
    """
    dims = (0, 2, 3)
    error = (est - ref).square().sum(dims)
    energy = ref.square().sum(dims)
    floor = (10 ** (floor_db / 10)) * energy.mean().detach() + 1e-12
    per_stem = 10 * (torch.log10(error + floor) - torch.log10(energy + floor))
    if weights is None:
        return per_stem.mean()
    return (per_stem * weights).sum() / weights.sum()


class SeparationLoss(nn.Module):
    """``l1 * mean|est - ref| + stft * MRSTFT(est, ref) + sdr * negative_batch_sdr`` for ``est, ref: [B, stems, C, S]``.

    ``sdr_weights``: one weight per stem for the batch-SDR term (None: all equal).
    """

    def __init__(self, l1: float = 1.0, stft: float = 0.0, resolutions: tuple[tuple[int, int], ...] = (),
                 sdr: float = 0.0, sdr_weights: tuple[float, ...] | None = None):
        super().__init__()
        self.l1, self.stft, self.sdr = l1, stft, sdr
        self.mrstft = MultiResolutionSTFTLoss(resolutions) if stft > 0 else None
        weights = None if sdr_weights is None else torch.tensor(sdr_weights, dtype=torch.float32)
        self.register_buffer("sdr_weights", weights, persistent=False)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        loss = est.new_zeros(())
        if self.l1 > 0:
            loss = loss + self.l1 * (est - ref).abs().mean()
        if self.mrstft is not None:
            loss = loss + self.stft * self.mrstft(est, ref)
        if self.sdr > 0:
            loss = loss + self.sdr * negative_batch_sdr(est, ref, weights=self.sdr_weights)
        return loss
