"""Global SDR as on our dashboard: whole track, both channels, silent references skipped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stemforge.eval import global_sdr, mean_sdr, track_sdr


def _signal(seed=0, n=44100):
    return np.random.default_rng(seed).standard_normal((2, n)).astype(np.float32)


def test_known_error_level_gives_known_sdr():
    ref = _signal()
    assert global_sdr(ref, 0.9 * ref) == pytest.approx(20.0, abs=1e-4)  # error = 0.1 * ref
    assert global_sdr(ref, np.zeros_like(ref)) == pytest.approx(0.0, abs=1e-6)


def test_sdr_pools_both_channels_over_the_whole_track():
    ref = _signal()
    est = ref.copy()
    est[0] += 0.1 * ref[0]  # all error in one channel
    expected = 10 * math.log10((ref.astype(np.float64) ** 2).sum() / ((0.1 * ref[0].astype(np.float64)) ** 2).sum())
    assert global_sdr(ref, est) == pytest.approx(expected, abs=1e-4)


def test_silent_reference_is_skipped_and_not_averaged():
    mix = _signal(1)
    refs = np.stack([mix, 1e-4 * _signal(2)])  # second stem 80 dB below the mixture
    scores = track_sdr(refs, refs * 0.9, mix, ("a", "b"))
    assert scores["b"] is None and scores["a"] == pytest.approx(20.0, abs=1e-4)
    per_stem, overall = mean_sdr([scores, {"a": 10.0, "b": 4.0}])
    assert per_stem == {"a": pytest.approx(15.0, abs=1e-4), "b": 4.0}
    assert overall == pytest.approx(9.5, abs=1e-4)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        global_sdr(_signal(), _signal()[:, :100])
