"""A bag of networks: each stem is a weighted mean of the members' estimates of it.

Demucs's ``BagOfModels`` with per-source weights (``htdemucs_ft``): a member fine-tuned for some
stems contributes only those. Here the members share one STFT front end and output the same stems,
so the bag computes one STFT, runs every member's ``net`` on it, mixes their output spectrograms
per stem and leaves one iSTFT to the caller (the iSTFT is linear, so mixing spectrograms equals
mixing waveforms). To the engine a bag is one more network with ``stft``, ``net`` and ``istft``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import StemforgeError

SHARED = ("n_fft", "hop_length", "dim_f", "audio_channels", "num_stems")
"""What every member must have in common: the STFT it reads and the stems it writes."""


class StemBag(nn.Module):
    """Several networks on one spectrogram, mixed per stem.

    Args:
        members: networks with ``stft``, ``net`` and ``istft`` (e.g. :class:`~stemforge.models.MDX23C`)
            sharing :data:`SHARED`.
        weights: ``[members, stems]``, each >= 0, every stem with a positive weight somewhere; stem
            ``s`` of the bag is ``sum_m weights[m, s] * member_m[s] / sum_m weights[m, s]``.
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[Sequence[float]]):
        super().__init__()
        if not members:
            raise StemforgeError("a bag needs at least one member network")
        first = members[0]
        for i, member in enumerate(members[1:], 1):
            for attr in SHARED:
                if getattr(member, attr) != getattr(first, attr):
                    raise StemforgeError(f"bag member {i} has {attr}={getattr(member, attr)} but member 0 has "
                                         f"{getattr(first, attr)}: members must share the STFT and the stems")
        w = torch.as_tensor(weights, dtype=torch.float32)
        if w.shape != (len(members), first.num_stems):
            raise StemforgeError(f"bag weights must be [members, stems] = [{len(members)}, {first.num_stems}], "
                                 f"got {list(w.shape)}")
        if (w < 0).any() or not (w.sum(0) > 0).all():
            raise StemforgeError("bag weights must be >= 0, with a positive weight for every stem")
        self.members = nn.ModuleList(members)
        # not in the state_dict: the weights come from the registry, each member's file stays its own checkpoint
        self.register_buffer("stem_weights", w / w.sum(0), persistent=False)
        for attr in SHARED:
            setattr(self, attr, getattr(first, attr))

    @property
    def window(self) -> torch.Tensor:
        return self.members[0].window

    def stft(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: [B, C, S] -> spec: [B, C*2, dim_f, frames]``, the members' shared front end."""
        return self.members[0].stft(mix)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``spec: [B, stems, C*2, dim_f, frames] -> [B, stems, C, length]``."""
        return self.members[0].istft(spec, length)

    def net(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec: [B, C*2, dim_f, frames] -> [B, stems, C*2, dim_f, frames]`` in fp32: the weighted
        sum of the members' outputs (each may run under autocast; the sum is accumulated in fp32)."""
        out = None
        for member, weights in zip(self.members, self.stem_weights):
            y = member.net(spec).float()  # a copy only if the member ran in bf16/fp16
            w = weights.view(1, -1, 1, 1, 1)
            out = y.mul_(w) if out is None else out.addcmul_(y, w)  # in place: no third spectrogram-sized buffer
            del y
        return out

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: [B, C, S] -> stems: [B, stems, C, S]``."""
        return self.istft(self.net(self.stft(mix)), mix.shape[-1])
