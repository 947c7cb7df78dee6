"""Oracle separations: how well a mask could do if it knew the true stems.

The ideal ratio mask (IRM) hands every STFT bin of the mixture to the stems in proportion to their
true power, ``|S_j|^2 / sum_k |S_k|^2``: the ceiling of the soft-mask kind of separation that
stemforge's post-filter does (the "IRM2" oracle of SiSEC/museval, here on a 4096-point STFT with
hop 1024). Reported beside a model, it tells how much of the gap to perfect is the model's and how
much the mixture's. On real drum recordings the pieces overlap in time and frequency, and the mix
may hold what no piece's reference has (room sound, or, when the mix and each piece were encoded to
mp3 apart, as in the StemGMD clips, the codec noise of each), so even the oracle stays low there.
"""

from __future__ import annotations

import numpy as np
import torch

from ..engine.soft_mask import SoftMask, soft_mask

IRM = SoftMask(power=2.0, n_fft=4096)
"""The oracle's mask: true magnitudes squared, a 4096-point STFT, no gain cap (the stems sum to the mixture)."""


def ideal_ratio_mask(mix: np.ndarray, refs: np.ndarray, settings: SoftMask = IRM) -> np.ndarray:
    """``mix: [C, n]``, ``refs: [stems, C, n]`` (the true stems) -> the oracle's estimates ``[stems, C, n]``.

    The references need not sum to the mixture (real multitracks often do not): the mask is built
    from them and applied to ``mix``, as a separator would.
    """
    mix_t = torch.as_tensor(np.asarray(mix, dtype=np.float32))
    refs_t = torch.as_tensor(np.asarray(refs, dtype=np.float32))
    if refs_t.ndim != 3 or refs_t.shape[1:] != mix_t.shape:
        raise ValueError(f"refs must be [stems, *mix.shape] = [S, {', '.join(map(str, mix_t.shape))}], "
                         f"got {tuple(refs_t.shape)}")
    return soft_mask(mix_t, refs_t, settings).numpy()
