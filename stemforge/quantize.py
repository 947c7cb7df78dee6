"""Int8 storage of shipped weights: a quarter of fp32's size, loaded back into the fp32 network.

Every floating weight with two or more dims (convolutions, linear layers) ``w: [out, ...]`` is stored
as ``round(w / scale)`` in int8 with one fp32 ``scale: [out, 1, ...]`` per output channel
(``max |w[o]| / 127``), under the key ``KEY + SCALE_SUFFIX``; biases and norm parameters stay as
they are (fp16 when shipped). Storage only: :func:`dequantize_int8` turns the file back into fp32
tensors when it is read, so inference runs exactly as for an fp32 checkpoint whose weights are off by
at most half a step (``scale / 2``) each.
"""

from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_scale"


def quantize_int8(state: dict[str, torch.Tensor], rest_dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The ``state`` to store: weights with >= 2 dims as int8 plus a per-output-channel scale, every
    other floating tensor in ``rest_dtype``."""
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
        elif value.ndim < 2:
            out[key] = value.to(rest_dtype)
        else:
            w = value.float()
            peak = w.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True)
            scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
            out[key] = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
            out[key + SCALE_SUFFIX] = scale
    return {k: v.contiguous() for k, v in out.items()}


def dequantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo :func:`quantize_int8`: int8 tensors with a scale become fp32 ``int8 * scale``; a state
    without scales is returned as it is."""
    if not any(k.endswith(SCALE_SUFFIX) for k in state):
        return state
    out = {}
    for key, value in state.items():
        if key.endswith(SCALE_SUFFIX) and key[: -len(SCALE_SUFFIX)] in state:
            continue
        scale = state.get(key + SCALE_SUFFIX)
        out[key] = value.float() * scale if scale is not None and value.dtype == torch.int8 else value
    return out
