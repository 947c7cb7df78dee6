"""Folder evaluation scores what it separates with global SDR and skips silent stems."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import soundfile as sf

from stemforge.eval.evaluate import evaluate_folder
from stemforge.eval.metrics import global_sdr


class Oracle:
    """A stand-in separator that returns the true stems, or the mixture for every stem."""

    def __init__(self, folder, stems, perfect):
        self.folder, self.stems, self.perfect = folder, stems, perfect
        self.sample_rate, self.config = 44100, SimpleNamespace(audio=SimpleNamespace(num_channels=2))
        self.calls = 0

    def separate_mix(self, mix):
        track = sorted(p for p in self.folder.iterdir())[self.calls]
        self.calls += 1
        if not self.perfect:
            return np.stack([mix] * len(self.stems))
        return np.stack([sf.read(track / f"{s}.wav", dtype="float32")[0].T for s in self.stems])


def _corpus(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        d = tmp_path / f"t{i}"
        d.mkdir()
        a = 0.3 * rng.standard_normal((4410, 2)).astype(np.float32)
        b = 0.1 * rng.standard_normal((4410, 2)).astype(np.float32) if i == 0 else np.zeros((4410, 2), np.float32)
        for name, x in (("a", a), ("b", b), ("mixture", a + b)):
            sf.write(d / f"{name}.wav", x, 44100, subtype="FLOAT")
    return tmp_path


def test_perfect_separation_scores_high_and_silent_stems_are_skipped(tmp_path):
    folder = _corpus(tmp_path)
    per_track, stems, mean = evaluate_folder(Oracle(folder, ("a", "b"), perfect=True), folder)
    assert per_track["t1"]["b"] is None  # silent reference in t1
    assert stems["a"] > 100 and stems["b"] > 100 and mean > 100


def test_mixture_as_estimate_baseline_matches_direct_sdr(tmp_path):
    folder = _corpus(tmp_path)
    per_track, stems, _ = evaluate_folder(Oracle(folder, ("a", "b"), perfect=False), folder)
    a, _ = sf.read(folder / "t0" / "a.wav", dtype="float32")
    mix, _ = sf.read(folder / "t0" / "mixture.wav", dtype="float32")
    assert abs(per_track["t0"]["a"] - global_sdr(a.T, mix.T)) < 1e-4
