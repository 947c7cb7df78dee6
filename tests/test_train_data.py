"""Training data: MUSDB layouts found, examples reproducible, remix and augmentations doing what they say."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.errors import StemforgeError
from stemforge.train.augment import _eq_curve_db, augment_stem, equalize, varispeed
from stemforge.train.config import AugmentConfig, StemAugment
from stemforge.train.data import SegmentDataset, StepBatches
from stemforge.train.tracks import find_tracks

from .conftest import DEV_DATA
from .test_train_helpers import STEMS, make_dataset

CHUNK = 4096


def _dataset(root, augment=None, targets=STEMS, seed=0):
    augment = augment or AugmentConfig()
    tracks = find_tracks(root, STEMS, 44100, root.parent / "cache")
    return SegmentDataset(tracks, STEMS, targets, chunk=CHUNK, channels=2, augment=augment, seed=seed)


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "train", tracks=3, seconds=1.0)


def test_examples_are_a_pure_function_of_seed_and_index(data):
    a, b = _dataset(data), _dataset(data)
    assert all(torch.equal(x, y) for x, y in zip(a[7], b[7]))
    assert not torch.equal(a[7][0], a[8][0])
    assert not torch.equal(a[7][0], _dataset(data, seed=1)[7][0])


def test_mixture_is_the_sum_of_the_stems_and_target_instrument_selects(data):
    mix, stems = _dataset(data)[3]
    assert mix.shape == (2, CHUNK) and stems.shape == (4, 2, CHUNK)
    assert torch.allclose(mix, stems.sum(0), atol=1e-6)
    mix_v, vocals = _dataset(data, targets=("vocals",))[3]
    assert vocals.shape == (1, 2, CHUNK) and torch.equal(mix_v, mix) and torch.equal(vocals[0], stems[0])


def _tagged_dataset(root, tracks=3, length=20000):
    """Channel 0 = track * 10 + stem (constant), channel 1 = sample index: where a segment came from."""
    for k in range(tracks):
        (root / f"t{k}").mkdir(parents=True)
        for j, stem in enumerate(STEMS):
            audio = np.stack([np.full(length, k * 10 + j), np.arange(length)], 1).astype(np.float32)
            sf.write(root / f"t{k}" / f"{stem}.wav", audio, 44100, subtype="FLOAT")
    return root


def _origins(stems):
    """``[(track, offset)]`` of each stem of an example made from :func:`_tagged_dataset`."""
    return [(int(x[0, 0]) // 10, int(x[1, 0])) for x in stems.numpy()]


def test_without_remix_all_stems_come_from_one_place(tmp_path):
    ds = _dataset(_tagged_dataset(tmp_path / "tagged"), AugmentConfig(enable=True, remix=False))
    for i in range(10):
        origins = _origins(ds[i][1])
        assert len(set(origins)) == 1


def test_remix_draws_each_stem_from_its_own_track_and_offset(tmp_path):
    ds = _dataset(_tagged_dataset(tmp_path / "tagged"), AugmentConfig(enable=True, remix=True))
    origins = [_origins(ds[i][1]) for i in range(10)]
    assert all(len(set(o)) == 4 for o in origins)  # four different offsets
    assert any(len({track for track, _ in o}) > 1 for o in origins)  # tracks mixed across stems


def test_polarity_and_channel_swap_augmentations(data):
    plain = _dataset(data, AugmentConfig(enable=True, remix=False))
    flipped = _dataset(data, AugmentConfig(enable=True, remix=False, all=StemAugment(random_polarity=1.0)))
    swapped = _dataset(data, AugmentConfig(enable=True, remix=False, all=StemAugment(channel_shuffle=1.0)))
    _, a = plain[0]
    _, b = flipped[0]
    _, c = swapped[0]
    assert torch.equal(b, -a)
    assert torch.equal(c, a.flip(1))


def test_gain_augmentation_stays_in_range(data):
    plain = _dataset(data, AugmentConfig(enable=True, remix=False))
    louder = _dataset(data, AugmentConfig(enable=True, remix=False, loudness=True, loudness_min=2.0, loudness_max=3.0))
    for i in range(5):
        _, a = plain[i]
        _, b = louder[i]
        loud = a.abs().sum((1, 2)) > 0
        ratio = b.abs().sum((1, 2))[loud] / a.abs().sum((1, 2))[loud]
        assert ((ratio >= 2.0 - 1e-4) & (ratio <= 3.0 + 1e-4)).all()


def test_log_loudness_draws_quiet_gains_as_often_as_loud_ones():
    """-40..0 dB: in dB half the gains fall under -20 dB; uniform in amplitude only 1 in 10 does."""
    cfg = AugmentConfig(enable=True, loudness=True, loudness_min=0.01, loudness_max=1.0)
    x = np.ones((2, 8), np.float32)
    rng = np.random.default_rng(0)
    linear = np.array([augment_stem(x, rng, cfg)[0, 0] for _ in range(2000)])
    rng = np.random.default_rng(0)
    log = np.array([augment_stem(x, rng, replace(cfg, loudness_log=True))[0, 0] for _ in range(2000)])
    assert (log >= 0.01 - 1e-6).all() and (log <= 1.0 + 1e-6).all()
    assert abs(np.mean(log < 0.1) - 0.5) < 0.05
    assert abs(np.mean(linear < 0.1) - 0.09) < 0.03


def test_varispeed_plays_each_stem_at_its_own_drawn_speed(tmp_path):
    """Channel 1 holds the sample index, so its slope in an example is the stem's playback speed."""
    root = _tagged_dataset(tmp_path / "tagged")
    cfg = AugmentConfig(enable=True, remix=False, all=StemAugment(varispeed=1.0, varispeed_semitones=3.0))
    mix, stems = _dataset(root, cfg)[0]
    speeds = [float(np.median(np.diff(s[1].numpy()[100:-100]))) for s in stems]
    assert all(2 ** (-3 / 12) - 1e-3 <= v <= 2 ** (3 / 12) + 1e-3 for v in speeds)
    assert len({round(v, 3) for v in speeds}) == 4  # drawn per stem
    assert mix.shape == (2, CHUNK) and torch.allclose(mix, stems.sum(0), atol=1e-2)
    again = _dataset(root, cfg)[0]
    assert torch.equal(again[0], mix)


def test_varispeed_shifts_pitch_by_the_drawn_semitones():
    rate, semitones = 44100, 2.0
    speed = 2 ** (semitones / 12)
    t = np.arange(round(rate * speed)) / rate
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    out = varispeed(tone, rate)
    spectrum = np.abs(np.fft.rfft(out[0] * np.hanning(rate)))
    assert out.shape == (2, rate) and abs(np.argmax(spectrum) - 440 * speed) <= 1


def test_seven_band_eq_changes_the_spectrum_within_its_gain_range():
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(enable=True, all=StemAugment(seven_band_parametric_eq=1.0,
                                                     seven_band_parametric_eq_min_gain_db=-6.0,
                                                     seven_band_parametric_eq_max_gain_db=6.0))
    curves = np.array([_eq_curve_db(rng, cfg, 8192, 44100) for _ in range(50)])
    assert np.ptp(curves, axis=1).min() > 1.0  # every draw colours the sound
    assert np.abs(curves).max() < 7 * 6.0  # at most the sum of the seven bands
    flat = replace(cfg, all=replace(cfg.all, seven_band_parametric_eq_min_gain_db=0.0,
                                    seven_band_parametric_eq_max_gain_db=0.0))
    noise = rng.standard_normal((2, 4096)).astype(np.float32)
    assert np.allclose(augment_stem(noise, rng, flat), noise, atol=1e-5)
    tone = np.sin(2 * np.pi * 1000 * np.arange(4096) / 44100).astype(np.float32)[None]
    louder = equalize(tone, np.full(4097, 20 * np.log10(2.0)))  # +6 dB everywhere, zero phase
    assert np.allclose(louder, 2 * tone, atol=1e-4)


def test_timbre_augmentations_off_leave_the_examples_unchanged(data):
    """A draw is made only for an augmentation that is on: old configs see the same examples."""
    cfg = AugmentConfig(enable=True, loudness=True, all=StemAugment(random_polarity=0.5, channel_shuffle=0.5))
    off = replace(cfg, all=replace(cfg.all, varispeed_semitones=5.0, seven_band_parametric_eq_max_gain_db=12.0))
    on = replace(cfg, all=replace(cfg.all, varispeed=0.5, seven_band_parametric_eq=0.5))
    assert torch.equal(_dataset(data, cfg)[5][1], _dataset(data, off)[5][1])
    assert not torch.equal(_dataset(data, cfg)[5][1], _dataset(data, on)[5][1])


def test_mp3_compression_reaches_the_mixture_and_not_the_targets(data):
    cfg = AugmentConfig(enable=True, loudness=True, all=StemAugment(random_polarity=0.5))
    mp3 = replace(cfg, mp3_compression_on_mixture=1.0, mp3_compression_on_mixture_bitrate_min=96,
                  mp3_compression_on_mixture_bitrate_max=128)
    clean_mix, clean_targets = _dataset(data, cfg)[5]
    mix, targets = _dataset(data, mp3)[5]
    assert torch.equal(targets, clean_targets)  # the same stems, drawn before the codec
    error = 10 * torch.log10(clean_mix.square().sum() / (mix - clean_mix).square().sum())
    assert 5.0 < float(error) < 50.0  # codec noise: there, and far below the music
    assert torch.equal(_dataset(data, mp3)[5][0], mix)  # drawn from the example's own generator
    off = replace(cfg, mp3_compression_on_mixture_bitrate_min=64)  # probability 0: no draw at all
    assert all(torch.equal(x, y) for x, y in zip(_dataset(data, off)[5], (clean_mix, clean_targets)))


def test_ranks_draw_disjoint_examples_like_distributed_sampler():
    per_rank = [list(StepBatches(0, 5, batch=3, accum=2, rank=r, world=2)) for r in range(2)]
    flat = [{i for b in batches for i in b} for batches in per_rank]
    assert not flat[0] & flat[1] and flat[0] | flat[1] == set(range(5 * 2 * 2 * 3))
    resumed = list(StepBatches(3, 5, batch=3, accum=2, rank=1, world=2))
    assert resumed == per_rank[1][3 * 2:]


def test_missing_stem_file_is_named(tmp_path):
    root = make_dataset(tmp_path / "d", tracks=1, seconds=0.2)
    (root / "track_0" / "drums.wav").unlink()
    with pytest.raises(StemforgeError, match=r"track_0.*drums.wav"):
        find_tracks(root, STEMS, 44100, tmp_path / "cache")


def test_empty_folder_explains_the_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StemforgeError, match="MUSDB18"):
        find_tracks(tmp_path / "empty", STEMS, 44100, tmp_path / "cache")


def test_stem_mp4_tracks_are_decoded_once(tmp_path):
    clip = DEV_DATA / "Music Delta - 80s Rock.stem.mp4"
    if not clip.is_file():
        pytest.skip("MUSDB sample not available")
    root = tmp_path / "musdb"
    root.mkdir()
    (root / clip.name).symlink_to(clip)
    tracks = find_tracks(root, STEMS, 44100, tmp_path / "cache")
    assert [t.name for t in tracks] == ["Music Delta - 80s Rock"] and 6 * 44100 < tracks[0].length < 8 * 44100
    vocals = tracks[0].read("vocals", 44100, 1000)
    assert vocals.shape == (2, 1000) and vocals.dtype == np.float32
    mtime = tracks[0].files["vocals"].stat().st_mtime
    assert find_tracks(root, STEMS, 44100, tmp_path / "cache")[0].files["vocals"].stat().st_mtime == mtime


def test_min_mean_abs_redraws_silent_segments_of_a_sparse_stem(tmp_path):
    """audio.min_mean_abs: a stem that plays in a fifth of each track (toms) is in (almost) every example."""
    root = tmp_path / "sparse"
    length, plays = 40_000, slice(30_000, 38_000)
    rng = np.random.default_rng(0)
    for k in range(2):
        (root / f"t{k}").mkdir(parents=True)
        for stem in STEMS:
            audio = 0.1 * rng.standard_normal((length, 2)).astype(np.float32)
            if stem == "bass":
                audio[: plays.start] = audio[plays.stop :] = 0.0
            sf.write(root / f"t{k}" / f"{stem}.wav", audio, 44100, subtype="FLOAT")
    tracks = find_tracks(root, STEMS, 44100, tmp_path / "cache")
    augment = AugmentConfig(enable=True, remix=True)
    bass = STEMS.index("bass")

    def present(min_mean_abs: float) -> float:
        ds = SegmentDataset(tracks, STEMS, STEMS, chunk=CHUNK, channels=2, augment=augment, seed=0,
                            min_mean_abs=min_mean_abs)
        return np.mean([float(ds[i][1][bass].abs().mean()) >= 1e-3 for i in range(200)])

    assert present(0.0) < 0.4  # drawn anywhere: mostly silence
    assert present(1e-3) > 0.9  # redrawn up to 10 times while silent
