"""Running the network on a batch of chunks with selective precision."""

from __future__ import annotations

import warnings

import torch

from .backends import EagerNet
from .precision import precision_name
from .spectral import InverseSTFT


class ChunkRunner:
    """Callable ``chunks: [B, C, chunk] -> stems: [B, stems, C, chunk]`` (fp32 in, fp32 out).

    The STFT and iSTFT run in fp32 in PyTorch; only ``model.net`` runs, through ``backend``
    (default :class:`~stemforge.engine.backends.EagerNet`), at ``dtype``. If a reduced-precision
    batch comes out non-finite, that batch is recomputed in fp32 and a warning is issued once.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype = torch.float32,
                 backend=None):
        self.model = model.to(device).eval()
        self.device = device
        self.dtype = dtype
        self.backend = backend or EagerNet(self.model, device)
        self.istft = InverseSTFT.for_model(self.model)
        self._warned = False

    @torch.inference_mode()
    def __call__(self, chunks: torch.Tensor) -> torch.Tensor:
        chunks = chunks.to(self.device, torch.float32, non_blocking=True)
        spec = self.model.stft(chunks)
        out = self._net(spec, self.dtype)
        if self.dtype != torch.float32 and not torch.isfinite(out).all():
            if not self._warned:
                warnings.warn(
                    f"non-finite network output in {precision_name(self.dtype)}; recomputing such batches in fp32",
                    RuntimeWarning, stacklevel=2,
                )
                self._warned = True
            out = self._net(spec, torch.float32)
        return self.istft(out, chunks.shape[-1])

    def _net(self, spec: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.backend(spec, dtype)
