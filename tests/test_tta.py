"""Test-time augmentation equals separating the mirrored songs and averaging, streamed or not."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from stemforge import Separator
from stemforge.cli import main
from stemforge.engine.tta import Mirrored


def _song(channels: int = 2, length: int = 40_000, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal((channels, length))).astype(np.float32)


def test_tta_is_the_mean_over_the_mirrored_songs(msst_ref):
    common = dict(checkpoint=msst_ref / "mdx23c_tiny.ckpt", config=msst_ref / "mdx23c_tiny.yaml",
                  precision="fp32", batch_size=2, soft_mask=False)
    plain, tta = Separator(**common), Separator(**common, tta=True)
    mix = _song()
    swapped = plain.separate_mix(mix[::-1].copy())[:, ::-1]  # [stems, channels, samples], channels back
    expected = (plain.separate_mix(mix) + swapped - plain.separate_mix(-mix)) / 3
    got = tta.separate_mix(mix)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(got - plain.separate_mix(mix)).max() > 1e-3  # this network is not mirror-exact: TTA changes the stems


def test_mirror_exact_network_is_unchanged_and_mono_runs_twice():
    calls = []

    def symmetric(chunks: torch.Tensor) -> torch.Tensor:  # odd in the input, blind to channel order
        calls.append(chunks.shape)
        both = chunks + chunks.flip(1)
        return torch.stack([chunks, 0.5 * both, torch.sin(chunks)], 1)

    for channels, passes in [(2, 3), (1, 2)]:
        x = torch.randn(3, channels, 100, generator=torch.Generator().manual_seed(channels))
        expected = symmetric(x)
        calls.clear()
        torch.testing.assert_close(Mirrored(symmetric)(x), expected)
        assert len(calls) == passes


def test_cli_tta_streams_like_in_memory(tmp_path, msst_ref):
    song = tmp_path / "song.wav"
    sf.write(song, _song(seed=3).T, 44100)
    ckpt, config = msst_ref / "mdx23c_tiny.ckpt", msst_ref / "mdx23c_tiny.yaml"
    assert main(["separate", str(song), "-o", str(tmp_path), "--checkpoint", str(ckpt), "--config", str(config),
                 "--float32", "--precision", "fp32", "--batch-size", "2", "--clip-mode", "none", "-q", "--tta"]) == 0
    sep = Separator(checkpoint=ckpt, config=config, precision="fp32", batch_size=2, tta=True)
    expected = sep.separate(sf.read(song, dtype="float32")[0].T.copy())
    for stem, audio in expected.items():
        written = sf.read(tmp_path / "mdx23c_tiny" / "song" / f"{stem}.wav", dtype="float32")[0].T
        assert np.abs(written - audio).max() <= 1e-5
