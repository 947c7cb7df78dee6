"""Start a wider MDX23C from a trained narrower one, computing the same function (``train --init --widen``).

A network with ``num_channels``/``growth`` of, say, 32/24 becomes one of 48/36 with the same number of
scales, blocks, sub-bands, stems and STFT. Every old weight keeps its place; the new channels get the
wider model's own random initialisation, and every layer that reads channels gets zero weights on the
new ones. So at step 0 the wide model's output equals the narrow one's (``tests/test_widen.py``), and
training goes on from what the narrow network had learnt, with room to learn more. The new channels'
norms start as PyTorch initialises them (weight 1, bias 0).

Where a layer reads a concatenation (a decoder level's ``[upscaled, skip]``), the old channels of
each part keep their places inside that part.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import StemforgeError
from ..models.mdx23c import MDX23C

_DECODER_INPUT = re.compile(r"decoder_blocks\.\d+\.tfc_tdf\.blocks\.0\.(tfc1\.[02]|shortcut)\.")


def widen_state_dict(narrow: dict[str, torch.Tensor], wide: MDX23C,
                     source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Return ``wide``'s state_dict with ``narrow``'s weights embedded so that both compute the same.

    ``narrow``: the state_dict of an MDX23C that differs from ``wide`` only in ``num_channels`` and
    ``growth`` (each no larger than ``wide``'s). ``wide`` supplies the initialisation of the new channels.
    """
    own = wide.state_dict()
    extra = sorted(set(narrow) ^ set(own))
    if extra:
        raise StemforgeError(f"{source}: cannot widen: its layers differ from the model's (e.g. '{extra[0]}'); "
                             "only num_channels and growth may change")
    modules = dict(wide.named_modules())
    if any(isinstance(m, nn.GroupNorm) for m in modules.values()) and any(
            narrow[k].shape != v.shape for k, v in own.items()):
        raise StemforgeError(f"{source}: cannot widen a GroupNorm network: its groups would mix old and new "
                             "channels; use InstanceNorm or BatchNorm (model.norm)")
    out = {}
    for key, new in own.items():
        old = narrow[key]
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            raise StemforgeError(f"{source}: cannot widen '{key}' from {list(old.shape)} to {list(new.shape)}; "
                                 "only num_channels and growth may grow")
        if old.shape == new.shape:
            out[key] = old.to(new.dtype, copy=True)
            continue
        module = modules[key.rsplit(".", 1)[0]]
        places = [_places(key, d, old.dim(), o, n) for d, (o, n) in enumerate(zip(old.shape, new.shape))]
        value = new.clone()
        reads = _input_dim(module)
        if reads is not None:  # the new input channels contribute nothing
            kept = torch.zeros(new.shape[reads], dtype=torch.bool)
            kept[places[reads]] = True
            value.index_fill_(reads, (~kept).nonzero().squeeze(1), 0)
        value[torch.meshgrid(*places, indexing="ij")] = old.to(value.dtype)
        out[key] = value
    return out


def _input_dim(module: nn.Module) -> int | None:
    """Which weight axis a layer reads channels from (None: it reads none, e.g. a norm)."""
    if isinstance(module, nn.ConvTranspose2d):
        return 0
    if isinstance(module, nn.Conv2d):
        return 1
    return None


def _places(key: str, dim: int, ndim: int, old: int, new: int) -> torch.Tensor:
    """Indices in the wide tensor's axis ``dim`` where the narrow tensor's ``old`` entries go."""
    reads_concat = _DECODER_INPUT.search(key) and dim == (1 if ndim > 1 else 0)  # conv: [out, in, ..]; norm: [in]
    if reads_concat:  # [upscaled, skip]: two halves of equal width
        return torch.cat([torch.arange(old // 2), new // 2 + torch.arange(old // 2)])
    return torch.arange(old)  # the final conv's [mixture, features] keeps the mixture first, so a prefix too
