"""Int8 storage of shipped weights: under a third of fp32's size, loaded back into the fp32 network.

Every floating weight with two or more dims (convolutions, linear layers) ``w: [out, ...]`` is seen
as rows ``[out, n]`` (``n`` = the rest flattened), cut into groups of ``GROUP`` consecutive values;
each group is stored as ``round(w / scale)`` in int8 with one fp32 ``scale`` (``max |w| / 127`` over
the group), all scales of a weight in ``scale: [out, ceil(n / GROUP)]`` under ``KEY + SCALE_SUFFIX``,
and the group size under ``GROUP_KEY``.
One scale per whole output channel would be smaller still, but a channel that mixes large and small
weights (a widened layer does) then rounds its small ones away. Biases and norm parameters stay as
they are (fp16 when shipped). Storage only: :func:`dequantize_int8` turns the file back into fp32
tensors when it is read, so inference runs exactly as for an fp32 checkpoint whose weights are each
off by at most half their group's step (``scale / 2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCALE_SUFFIX = ".int8_scale"
GROUP_KEY = "stemforge.int8_group"
GROUP = 32


def quantize_int8(state: dict[str, torch.Tensor], rest_dtype: torch.dtype = torch.float16,
                  group: int = GROUP) -> dict[str, torch.Tensor]:
    """The ``state`` to store: weights with >= 2 dims as int8 plus a scale per group of ``group``
    values of a row, every other floating tensor in ``rest_dtype``."""
    out = {GROUP_KEY: torch.tensor(group)}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
        elif value.ndim < 2:
            out[key] = value.to(rest_dtype)
        else:
            groups = _groups(value.float(), group)  # [out, n_groups, group]
            peak = groups.abs().amax(dim=-1)
            scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))  # [out, n_groups]
            q = torch.round(groups / scale[..., None]).clamp(-127, 127).to(torch.int8)
            out[key] = _ungroup(q, value.shape)
            out[key + SCALE_SUFFIX] = scale
    return {k: v.contiguous() for k, v in out.items()}


def stored_state(state: dict[str, torch.Tensor], store: str, group: int = GROUP) -> dict[str, torch.Tensor]:
    """The tensors a weights file holds for ``store``: ``fp32`` or ``fp16`` (every tensor cast), or
    ``int8`` (:func:`quantize_int8` with a scale per ``group`` values, the rest fp16)."""
    if store == "int8":
        return quantize_int8(state, group=group)
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[store]
    return {k: v.to(dtype).contiguous() for k, v in state.items()}


def dequantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo :func:`quantize_int8`: int8 tensors with a scale become fp32 ``int8 * scale``; a state
    that :func:`quantize_int8` did not write (no ``GROUP_KEY``) is returned as it is."""
    if GROUP_KEY not in state:
        return state
    group = int(state[GROUP_KEY])
    out = {}
    for key, value in state.items():
        if key == GROUP_KEY or key.endswith(SCALE_SUFFIX) and key[: -len(SCALE_SUFFIX)] in state:
            continue
        scale = state.get(key + SCALE_SUFFIX)
        if scale is not None and value.dtype == torch.int8:
            value = _ungroup(_groups(value.float(), group) * scale[..., None], value.shape)
        out[key] = value
    return out


def _groups(w: torch.Tensor, group: int) -> torch.Tensor:
    """``w: [out, ...]`` -> ``[out, ceil(n / group), group]``, the rows zero-padded to whole groups."""
    rows = w.reshape(w.shape[0], -1)
    rows = F.pad(rows, (0, -rows.shape[1] % group))
    return rows.reshape(w.shape[0], -1, group)


def _ungroup(groups: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`_groups`: ``[out, n_groups, group]`` -> ``shape``."""
    n = shape[1:].numel()
    return groups.reshape(shape[0], -1)[:, :n].reshape(shape)
