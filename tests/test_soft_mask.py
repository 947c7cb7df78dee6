"""The soft-mask post-filter equals a plain torch.stft/istft version, streamed or not, and is wired
into the separator, its streams and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge import Separator
from stemforge.cli import main
from stemforge.config import parse_config, read_yaml
from stemforge.engine.soft_mask import (SoftMask, SoftMaskStream, keep_estimates, mask_spectra, soft_mask,
                                        spatial_covariance, spatial_mask_spectra)
from stemforge.errors import StemforgeError


def reference(mix: torch.Tensor, stems: torch.Tensor, settings: SoftMask) -> torch.Tensor:
    """The filter as written in the module docstring, with torch's own STFT pair; with ``spatial``,
    block ``k`` of ``spatial_block`` frames takes its covariance from blocks ``k - 1`` to ``k + 1``."""
    window = torch.hann_window(settings.n_fft)
    kw = dict(n_fft=settings.n_fft, hop_length=settings.hop, window=window, center=True)
    spec = lambda x: torch.stft(x, pad_mode="constant", return_complex=True, **kw).transpose(-1, -2)  # noqa: E731
    mix_spec, stem_spec = spec(mix), torch.stack([spec(s) for s in stems])  # [C, frames, bins], [S, C, frames, bins]
    if not settings.spatial:
        masked = mask_spectra(mix_spec, stem_spec, settings)
    else:
        b = settings.spatial_block
        around = lambda t: spatial_covariance(stem_spec[:, :, max(0, t - b) : t + 2 * b])  # noqa: E731
        masked = torch.cat([spatial_mask_spectra(mix_spec[:, t : t + b], stem_spec[:, :, t : t + b], around(t),
                                                 settings) for t in range(0, mix_spec.shape[1], b)], 2)
    if settings.keep is not None:
        masked = torch.stack([(1 - k) * m + k * s for k, m, s in zip(settings.keep, masked, stem_spec)])
    return torch.stack([torch.istft(m.transpose(-1, -2), length=mix.shape[-1], **kw) for m in masked])


def _track(length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three noisy 'estimates' and a mixture that is their sum plus what none of them holds."""
    g = torch.Generator().manual_seed(seed)
    stems = torch.randn(3, 2, length, generator=g) * torch.tensor([1.0, 0.3, 0.05])[:, None, None]
    return stems.sum(0) + 0.2 * torch.randn(2, length, generator=g), stems


SETTINGS = [SoftMask(1.0, 256, None), SoftMask(1.5, 512, 2.0), SoftMask(2.0, 128, 1.0),
            SoftMask(1.25, 256, None, spatial=True, spatial_block=3),
            SoftMask(1.5, 128, 1.5, spatial=True, spatial_block=8),
            SoftMask(1.5, 128, 1.5, spatial=(0, 2), spatial_block=8),
            SoftMask(1.25, 256, None, keep=(0.3, 0.0, 1.0)),
            SoftMask(1.25, 256, None, spatial=True, spatial_block=3, keep=(0.1, 0.4, 0.2))]
IDS = ["p1", "p1.5-cap2", "p2-cap1", "spatial-3", "spatial-8-cap1.5", "spatial-2-of-3", "keep", "spatial-3-keep"]


@pytest.mark.parametrize("settings", SETTINGS, ids=IDS)
@pytest.mark.parametrize("length", [50, 511, 9_001], ids=["under-a-frame", "one-window", "long"])
def test_streamed_filter_equals_torch_stft_version(settings, length):
    mix, stems = _track(length)
    expected = reference(mix, stems, settings)
    assert (soft_mask(mix, stems, settings) - expected).abs().max() <= 1e-5
    stream, pieces, at = SoftMaskStream(settings), [], 0
    for size in np.random.default_rng(length).integers(1, 900, 100):  # ragged pieces, some under a hop
        if at >= length:
            break
        pieces += stream.push((mix[:, at : at + size], stems[..., at : at + size]))
        at += int(size)
    pieces += stream.finish()
    got_mix, got = torch.cat([m for m, _ in pieces], -1), torch.cat([s for _, s in pieces], -1)
    assert torch.equal(got_mix, mix)  # each filtered piece comes with its own stretch of the mixture
    assert got.shape == (3, 2, length) and (got - expected).abs().max() <= 1e-5


def test_whole_track_in_slices_equals_torch_stft_version():
    mix, stems = _track(300_000)  # longer than the slices soft_mask() feeds its stream
    settings = SoftMask(1.25, 1024, None)
    assert (soft_mask(mix, stems, settings) - reference(mix, stems, settings)).abs().max() <= 1e-5


@pytest.mark.parametrize("settings", [SoftMask(1.0, 512), SoftMask(1.0, 512, spatial=True, spatial_block=4)],
                         ids=["ratio", "spatial"])
def test_stream_holds_little_whatever_the_length(settings):
    stream = SoftMaskStream(settings)
    mix, stems = _track(4_000)
    held = 4_000 + settings.n_fft + (2 * settings.spatial_block * settings.hop if settings.spatial else 0)
    for _ in range(50):
        stream.push((mix, stems))
        assert stream.buf.shape[-1] <= held and stream.acc.shape[-1] <= held and len(stream.pending) <= 1


def _panned(length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three noise sources, each panned to its own place, their mixture, and estimates that let a
    fifth of every other source through: ``(mix [2, n], truth [3, 2, n], estimates [3, 2, n])``."""
    g = torch.Generator().manual_seed(seed)
    sources = torch.randn(3, 1, length, generator=g)
    pans = torch.tensor([[1.0, 0.1], [0.7, 0.7], [0.1, 1.0]])[..., None]  # left, centre, right
    truth = sources * pans
    leak = 0.2 * (truth.sum(0, keepdim=True) - truth)
    return truth.sum(0), truth, truth + leak


def test_spatial_filter_uses_where_each_stem_sits_in_the_stereo_image():
    from stemforge.eval.metrics import global_sdr

    mix, truth, estimates = _panned(40_000)
    ratio = soft_mask(mix, estimates, SoftMask(1.0, 512, None))
    spatial = soft_mask(mix, estimates, SoftMask(1.0, 512, None, spatial=True, spatial_block=16))
    sdr = lambda est: np.mean([global_sdr(t.numpy(), e.numpy()) for t, e in zip(truth, est)])  # noqa: E731
    assert sdr(spatial) > sdr(ratio) + 1.5  # noise has no spectral cue to share by, only its pan (6.9 vs 4.6 dB)
    assert (spatial.sum(0) - mix).abs().max() <= 1e-4 * mix.abs().max()  # and the stems still sum to the mixture


def test_spatial_filter_is_the_ratio_mask_on_one_channel_and_matches_the_formula():
    g = torch.Generator().manual_seed(2)
    mix = torch.randn(2, 6, 9, generator=g, dtype=torch.complex64)
    stems = torch.randn(3, 2, 6, 9, generator=g, dtype=torch.complex64)
    settings = SoftMask(1.5, 16, None, spatial=True)
    mono = spatial_mask_spectra(mix[:1], stems[:, :1], spatial_covariance(stems[:, :1]), settings)
    torch.testing.assert_close(mono, mask_spectra(mix[:1], stems[:, :1], settings), rtol=1e-5, atol=1e-6)
    # stereo, bin by bin: Y_j = w_j R_j (sum_k w_k R_k)^-1 X
    got = spatial_mask_spectra(mix, stems, spatial_covariance(stems), settings).numpy()
    s, x = stems.numpy().astype(np.complex128), mix.numpy().astype(np.complex128)
    v = (np.abs(s) ** 2).mean(1)  # [S, frames, bins]
    r = np.einsum("sctb,sdtb->sbcd", s, s.conj()) / v.sum(1)[..., None, None]
    w = v ** 0.75
    for t in range(6):
        for b in range(9):
            inverse = np.linalg.inv(np.einsum("s,scd->cd", w[:, t, b], r[:, b]))
            want = np.einsum("s,scd,de,e->sc", w[:, t, b], r[:, b], inverse, x[:, t, b])
            np.testing.assert_allclose(got[:, :, t, b], want, rtol=1e-4, atol=1e-5)
    # naming stems: those take the spatial filter, the rest the ratio mask over all stems
    some = spatial_mask_spectra(mix, stems, spatial_covariance(stems), SoftMask(1.5, 16, None, spatial=(1,)))
    torch.testing.assert_close(some[1], torch.from_numpy(got[1]))
    torch.testing.assert_close(some[[0, 2]], mask_spectra(mix, stems, settings)[[0, 2]])


def test_without_a_cap_the_stems_sum_to_the_mixture():
    mix, stems = _track(20_000)
    out = soft_mask(mix, stems, SoftMask(1.25, 1024, None))
    assert (out.sum(0) - mix).abs().max() <= 1e-4 * mix.abs().max()
    assert (stems.sum(0) - mix).abs().max() > 0.5  # the estimates alone did not


def test_cap_keeps_every_bin_under_max_gain_times_the_estimate():
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(2, 40, 33, generator=g, dtype=torch.complex64)
    stems = torch.randn(3, 2, 40, 33, generator=g, dtype=torch.complex64) * 0.1
    free = mask_spectra(mix, stems, SoftMask(1.5, 64, None))
    capped = mask_spectra(mix, stems, SoftMask(1.5, 64, 2.0))
    assert (capped.abs() <= 2.0 * stems.abs() * (1 + 1e-5)).all()
    assert (capped.abs() <= free.abs() * (1 + 1e-5)).all() and (free.abs() > 2.0 * stems.abs()).any()
    # the mixture's phase, not the estimate's
    torch.testing.assert_close(torch.angle(capped[capped.abs() > 0]), torch.angle(mix.expand_as(capped)[capped.abs() > 0]))


@pytest.mark.parametrize("spatial", [False, True], ids=["ratio", "spatial"])
def test_keep_blends_the_filtered_stems_with_the_networks(spatial):
    mix, stems = _track(20_000, seed=3)
    plain = SoftMask(1.25, 512, None, spatial=spatial, spatial_block=4)
    filtered = soft_mask(mix, stems, plain)
    kept = soft_mask(mix, stems, SoftMask(1.25, 512, None, spatial=spatial, spatial_block=4, keep=(0.0, 0.25, 1.0)))
    assert torch.equal(kept[0], filtered[0])  # keep 0: the filter's stem, untouched
    assert (kept[1] - (0.75 * filtered[1] + 0.25 * stems[1])).abs().max() <= 1e-5  # the blend of the signals
    assert (kept[2] - stems[2]).abs().max() <= 1e-5  # keep 1: the network's estimate back
    assert keep_estimates(filtered, stems, plain) is filtered  # nothing kept: no work


def test_bad_settings_name_the_key(tmp_path, msst_ref):
    data = read_yaml(msst_ref / "mdx23c_tiny.yaml")
    for key, value, message in [("soft_mask_power", 0, "soft_mask_power must be > 0"),
                                ("soft_mask_n_fft", 1000.5, "soft_mask_n_fft"),
                                ("soft_mask_max_gain", 0.5, "soft_mask_max_gain must be >= 1"),
                                ("soft_mask_spatial_block", 0, "soft_mask_spatial_block must be at least 1"),
                                ("soft_mask_spatial", ["vocals", "kazoo"], r"soft_mask_spatial names \['kazoo'\]"),
                                ("soft_mask_spatial", "yes", "soft_mask_spatial must be true, false or a list"),
                                ("soft_mask_keep", 1.5, "soft_mask_keep must be between 0 and 1"),
                                ("soft_mask_keep", {"vocals": -0.1}, "soft_mask_keep must be between 0 and 1"),
                                ("soft_mask_keep", {"kazoo": 0.2}, r"soft_mask_keep names \['kazoo'\]"),
                                ("soft_mask_keep", "some", "soft_mask_keep must be a number or a mapping")]:
        bad = {**data, "inference": {**(data.get("inference") or {}), key: value}}
        with pytest.raises(StemforgeError, match=f"bad.yaml: inference.{message}"):
            parse_config(bad, "bad.yaml")


MASKED = {"": SoftMask(1.5, 1024, 2.0), "true": SoftMask(1.5, 1024, 2.0, spatial=True, spatial_block=5),
          "[drums, vocals]": SoftMask(1.5, 1024, 2.0, spatial=(2, 0), spatial_block=5)}


@pytest.fixture(params=list(MASKED), ids=["ratio", "spatial", "spatial-some"])
def masked_config(request, tmp_path, msst_ref):
    config = tmp_path / "masked.yaml"
    spatial = f"\n  soft_mask_spatial: {request.param}\n  soft_mask_spatial_block: 5" if request.param else ""
    config.write_text((msst_ref / "mdx23c_tiny.yaml").read_text().replace(
        "inference:", "inference:\n  soft_mask: true\n  soft_mask_power: 1.5\n  soft_mask_n_fft: 1024\n  soft_mask_max_gain: 2.0"
        + spatial))
    return config, MASKED[request.param]


def test_separator_filters_what_the_network_gives(masked_config, msst_ref):
    masked_config, settings = masked_config
    common = dict(checkpoint=msst_ref / "mdx23c_tiny.ckpt", precision="fp32", batch_size=2)
    on = Separator(config=masked_config, **common)
    off = Separator(config=masked_config, soft_mask=False, **common)
    assert on.soft_mask == settings and off.soft_mask is None
    assert Separator(config=msst_ref / "mdx23c_tiny.yaml", **common).soft_mask is None  # MSST configs: off
    mix = (0.3 * np.random.default_rng(0).standard_normal((2, 30_000))).astype(np.float32)
    raw = torch.from_numpy(off.separate_mix(mix))
    expected = soft_mask(torch.from_numpy(mix), raw, on.soft_mask)
    assert np.abs(on.separate_mix(mix) - expected.numpy()).max() <= 1e-5


def test_cli_streams_the_filter_like_in_memory_and_turns_it_off(tmp_path, masked_config, msst_ref):
    masked_config, settings = masked_config
    song = tmp_path / "song.wav"
    sf.write(song, (0.3 * np.random.default_rng(3).standard_normal((60_000, 2))).astype(np.float32), 44100)
    common = [str(song), "--checkpoint", str(msst_ref / "mdx23c_tiny.ckpt"), "--config", str(masked_config),
              "--float32", "--precision", "fp32", "--batch-size", "2", "-q"]
    for name, extra in [("s", []), ("m", ["--in-memory"]), ("off", ["--no-soft-mask"])]:
        assert main(["separate", "-o", str(tmp_path / name), *common, *extra]) == 0
    read = lambda d, s: sf.read(tmp_path / d / "mdx23c_tiny" / "song" / f"{s}.wav", dtype="float32")[0].T  # noqa: E731
    stems = ["vocals", "bass", "drums", "other"]
    for stem in stems:
        assert np.abs(read("s", stem) - read("m", stem)).max() <= 1e-5
    off = torch.from_numpy(np.stack([read("off", s) for s in stems]))
    mix = torch.from_numpy(sf.read(song, dtype="float32")[0].T.copy())
    expected = soft_mask(mix, off, settings)
    assert np.abs(np.stack([read("s", s) for s in stems]) - expected.numpy()).max() <= 1e-5


def test_validation_with_the_soft_mask_scores_what_users_get(tmp_path):
    """`ship_model.py` scores a bag through training's validation with the config's soft mask: the same
    stems as `Separator` with its soft mask, so a bag is reported as it will be heard."""
    from stemforge.eval import track_sdr
    from stemforge.separator import random_checkpoint
    from stemforge.train.tracks import find_tracks
    from stemforge.train.validate import Separation, validate

    from .test_train_helpers import STEMS, make_dataset, tiny_config

    config = tiny_config(tmp_path, **{"inference.soft_mask": True, "inference.soft_mask_power": 1.5,
                                      "inference.soft_mask_n_fft": 1024})
    sep = Separator(checkpoint=random_checkpoint(config, tmp_path / "w.ckpt", seed=3), config=config,
                    device="cpu", precision="fp32", batch_size=1, lanes=1)  # validate() below runs on the CPU
    tracks = find_tracks(make_dataset(tmp_path / "songs", tracks=2, seconds=1.0), STEMS, 44100, tmp_path / "cache")
    how = Separation(sep.config.chunk_size, sep.overlap, 1, torch.device("cpu"), soft_mask=sep.soft_mask)
    masked, _ = validate(sep.loaded.model, tracks, STEMS, STEMS, how)
    plain, _ = validate(sep.loaded.model, tracks, STEMS, STEMS, Separation(sep.config.chunk_size, sep.overlap, 1,
                                                                           torch.device("cpu")))
    expected = []
    for track in tracks:
        mix = track.read("mixture", 0, track.length, 2)
        refs = np.stack([track.read(s, 0, track.length, 2) for s in STEMS])
        expected.append(track_sdr(refs, sep.separate_mix(mix), mix, STEMS))
    for stem in STEMS:
        assert masked[stem] == pytest.approx(np.mean([e[stem] for e in expected]), abs=1e-3)
    assert masked != pytest.approx(plain, abs=1e-2)  # the mask did change the stems


def test_cli_names_the_mask_it_runs():
    from stemforge.cli import _describe_mask

    stems = ("kick", "snare", "toms", "hihat", "cymbals")
    assert _describe_mask(None, stems) == "off" and _describe_mask(SoftMask(), stems) == "on"
    assert _describe_mask(SoftMask(spatial=True), stems) == "on (spatial)"
    assert _describe_mask(SoftMask(spatial=(2, 3, 4)), stems) == "on (spatial: toms, hihat, cymbals)"
    assert (_describe_mask(SoftMask(spatial=True, keep=(0.1, 0.0, 0.4, 0.0, 0.0)), stems)
            == "on (spatial); keeps kick 0.1, toms 0.4")
