"""What a run writes to ``--results`` and how it is read back for ``--resume``.

* ``last.ckpt`` / ``best.ckpt``: a bare ``state_dict`` with MSST's parameter names (the EMA
  weights when ``training.ema_momentum > 0``), for ``stemforge separate --checkpoint`` and MSST;
* ``resume.pt``: everything exact resumption needs: raw model weights, optimizer, grad scaler,
  EMA, scheduler, RNG states, step and best score. Only tensors and plain Python values, so it
  loads with ``weights_only=True``;
* ``config.yaml``: the training YAML, for ``stemforge separate --config``.

Files are written to a temporary name and renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio.encode import atomic_write
from ..errors import StemforgeError


@dataclass(frozen=True)
class RunFiles:
    root: Path

    @property
    def last(self) -> Path:
        return self.root / "last.ckpt"

    @property
    def best(self) -> Path:
        return self.root / "best.ckpt"

    @property
    def resume(self) -> Path:
        return self.root / "resume.pt"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through a temp file renamed into place (removed if the save fails)."""
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """A bare state_dict on the CPU (no prefixes, no wrapper)."""
    atomic_save({k: v.detach().cpu().clone() for k, v in state.items()}, path)


def load_resume(path: Path) -> dict:
    if not path.is_file():
        raise StemforgeError(f"nothing to resume: '{path}' does not exist; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one message
        raise StemforgeError(f"could not read resume state '{path}': {exc}") from None


def rng_state() -> dict:
    """Global RNG states of torch, CUDA, numpy and Python as tensors and plain values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, tuple) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
