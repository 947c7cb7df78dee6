"""scripts/scale_stems.py: the quiet-level validation view of MODELS.md (step 7)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "scale_stems.py"
spec = importlib.util.spec_from_file_location("scale_stems", SCRIPT)
scale_stems = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale_stems)


def test_scaled_stems_sum_to_the_new_mixture(tmp_path):
    rng = np.random.default_rng(0)
    stems = {name: (0.1 * rng.standard_normal((1000, 2))).astype(np.float32) for name in ("kick", "hihat")}
    for song in ("a", "b"):
        (tmp_path / "src" / song).mkdir(parents=True)
        for name, audio in stems.items():
            sf.write(tmp_path / "src" / song / f"{name}.wav", audio, 44100, subtype="FLOAT")
    assert scale_stems.main([str(tmp_path / "src"), str(tmp_path / "dst"), "--stems", "kick", "hihat",
                             "--gain", "hihat=0.1"]) == 0
    for song in ("a", "b"):
        out = {name: sf.read(tmp_path / "dst" / song / f"{name}.wav", dtype="float32")[0]
               for name in ("kick", "hihat", "mixture")}
        np.testing.assert_allclose(out["hihat"], 0.1 * stems["hihat"], rtol=1e-6)
        np.testing.assert_array_equal(out["kick"], stems["kick"])
        np.testing.assert_allclose(out["mixture"], out["kick"] + out["hihat"], atol=1e-7)


def test_mp3_codes_the_mixture_and_leaves_the_stems_clean(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    stems = {"kick": np.stack([np.sin(2 * np.pi * 80 * t)] * 2, 1), "hihat": 0.1 * np.stack(
        [np.sin(2 * np.pi * 9000 * t), np.cos(2 * np.pi * 9000 * t)], 1)}
    (tmp_path / "src" / "a").mkdir(parents=True)
    for name, audio in stems.items():
        sf.write(tmp_path / "src" / "a" / f"{name}.wav", 0.5 * audio.astype(np.float32), rate, subtype="FLOAT")
    assert scale_stems.main([str(tmp_path / "src"), str(tmp_path / "dst"), "--stems", "kick", "hihat",
                             "--mp3", "64"]) == 0
    out = {name: sf.read(tmp_path / "dst" / "a" / f"{name}.wav", dtype="float32")[0]
           for name in ("kick", "hihat", "mixture")}
    clean = out["kick"] + out["hihat"]
    np.testing.assert_array_equal(out["hihat"], 0.5 * stems["hihat"].astype(np.float32))
    assert out["mixture"].shape == clean.shape and not np.allclose(out["mixture"], clean, atol=1e-3)
    snr = 10 * np.log10((clean ** 2).sum() / ((out["mixture"] - clean) ** 2).sum())
    assert 5 < snr < 60  # coded, aligned, and still the same music
    with pytest.raises(SystemExit, match="32..320 kbps"):
        scale_stems.main([str(tmp_path / "src"), str(tmp_path / "x"), "--stems", "kick", "--mp3", "16"])


def test_a_gain_for_an_unknown_stem_is_refused():
    with pytest.raises(SystemExit, match="STEM one of kick, hihat"):
        scale_stems.parse_gains(["snare=0.5"], ["kick", "hihat"])
