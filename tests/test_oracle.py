"""The ideal-ratio-mask oracle that eval_models.py reports beside the models: the ceiling of a mask."""

from __future__ import annotations

import numpy as np
import pytest

from stemforge.eval import global_sdr, ideal_ratio_mask

RATE = 44100


def _tone(freq: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack([np.sin(2 * np.pi * freq * t), 0.5 * np.sin(2 * np.pi * freq * t + 1.0)]).astype(np.float32)


def test_stems_apart_in_frequency_are_recovered_and_sum_to_the_mixture():
    refs = np.stack([_tone(220.0), 0.3 * _tone(6000.0)])  # [2 stems, 2 channels, n]
    mix = refs.sum(0)
    est = ideal_ratio_mask(mix, refs)
    assert est.shape == refs.shape
    assert min(global_sdr(refs[i], est[i]) for i in range(2)) > 30.0
    np.testing.assert_allclose(est.sum(0), mix, atol=1e-4)  # no gain cap: the mixture is shared out, all of it


def test_stems_that_overlap_cap_the_oracle():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2, 2 * RATE)).astype(np.float32)
    refs = np.stack([noise, 0.2 * rng.standard_normal((2, 2 * RATE)).astype(np.float32) + _tone(440.0)])
    est = ideal_ratio_mask(refs.sum(0), refs)
    quiet = global_sdr(refs[1], est[1])
    assert 0.0 < quiet < 20.0  # better than nothing, far from perfect: the two share every bin


def test_the_mask_is_applied_to_the_mixture_not_to_the_references():
    refs = np.stack([_tone(220.0), 0.3 * _tone(6000.0)])
    extra = 0.05 * np.random.default_rng(1).standard_normal(refs.shape[1:]).astype(np.float32)  # room, bleed
    mix = refs.sum(0) + extra
    est = ideal_ratio_mask(mix, refs)
    np.testing.assert_allclose(est.sum(0), mix, atol=1e-4)
    assert global_sdr(refs[0], est[0]) < global_sdr(refs[0], ideal_ratio_mask(refs.sum(0), refs)[0])


def test_references_must_match_the_mixture():
    with pytest.raises(ValueError, match=r"refs must be \[stems"):
        ideal_ratio_mask(np.zeros((2, 100), np.float32), np.zeros((2, 1, 100), np.float32))
