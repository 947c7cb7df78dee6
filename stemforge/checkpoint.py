"""Loading checkpoints safely: no pickle execution, clear errors on mismatch."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from .errors import StemforgeError
from .quantize import dequantize_int8

_WRAPPER_KEYS = ("state_dict", "model", "state", "model_state_dict")
_PREFIXES = ("module.", "_orig_mod.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a bare state_dict from ``.ckpt``/``.pt``/``.pth`` (torch, weights only) or ``.safetensors``.

    Accepts the usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``, ``{"state": ...}``) and strips
    the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes. Weights stored in int8
    (:mod:`stemforge.quantize`) come back as fp32.
    """
    path = Path(path)
    if not path.is_file():
        raise StemforgeError(f"checkpoint not found: '{path}'; check the path or use -n NAME for a registered model")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise StemforgeError(f"could not read safetensors checkpoint '{path}': {exc}") from None
        obj = dequantize_int8(obj)
    else:
        obj = _torch_load(path)
    return _unwrap(obj, path)


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise StemforgeError(
            f"refusing to load '{path}': it needs pickle code execution to load ({str(exc).splitlines()[0]}). "
            "Only weights are loaded, never code. If you trust the file, re-save it as a plain state_dict: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'clean.ckpt')"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise StemforgeError(f"could not read checkpoint '{path}' (truncated or not a torch file?): {exc}") from None


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not _is_tensor_dict(obj):
        raise StemforgeError(
            f"'{path}' holds no state_dict (expected a dict of tensors, or one under 'state_dict', 'model' or 'state')"
        )
    out = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _is_tensor_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], ckpt: str | Path, config: str | Path | None) -> None:
    """``model.load_state_dict(state, strict=True)`` with one readable error on any mismatch."""
    check = getattr(model, "check_state_dict", None)
    if check is not None:
        check(state, f"checkpoint '{ckpt}'")  # e.g. trained with another CMX reduction
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[0]})")
        cfg = f" built from config '{config}'" if config else ""
        raise StemforgeError(
            f"checkpoint '{ckpt}' does not match the model{cfg}: {'; '.join(parts)}. "
            "Pass the YAML the checkpoint was trained with (--config)."
        )
    model.load_state_dict(state, strict=True)
