"""Training YAMLs: MSST's configs load, typos are named, unimplemented MSST keys warn once."""

from __future__ import annotations

import subprocess
import warnings

import pytest
import yaml

from stemforge.errors import StemforgeError
from stemforge.train.config import load_setup

from .conftest import REPO
from .test_train_helpers import tiny_config

MSST_REPO = REPO.parent / ".mirror" / "ZFTurbo+Music-Source-Separation-Training" / "repo"


def test_tiny_config_values_reach_the_dataclasses(tmp_path):
    setup = load_setup(tiny_config(tmp_path))
    assert setup.training.optimizer == "adamw" and setup.training.gradient_accumulation_steps == 2
    assert setup.training.stft_resolutions == ((256, 64), (128, 32))
    assert setup.augment.mixup_probs == (0.3,) and setup.augment.all.random_polarity == 0.5
    assert setup.model.stems == ("vocals", "bass", "drums", "other")


def test_sdr_weights_are_read_as_floats_and_need_the_sdr_term(tmp_path):
    path = _edit(tmp_path, "training", "sdr_weights", {"bass": 3, "other": "0.5"})
    with pytest.raises(StemforgeError, match="set training.loss_sdr > 0"):
        load_setup(path)
    data = yaml.safe_load(path.read_text())
    data["training"]["loss_sdr"] = 1.0
    path.write_text(yaml.safe_dump(data))
    assert load_setup(path).training.sdr_weights == {"bass": 3.0, "other": 0.5}


@pytest.mark.parametrize("name", ["mdx23c_musdb18.yaml", "train_mdx23c_musdb18.yaml", "train_mdx23c_small.yaml",
                                  "drums_finetune_kits.yaml", "drums_finetune_balance.yaml"])
def test_repo_configs_load(name):
    setup = load_setup(REPO / "configs" / name)
    assert setup.training.batch_size >= 1


def test_msst_reference_config_loads_and_warns_once_about_ignored_keys(msst_ref):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup = load_setup(msst_ref / "mdx23c_tiny.yaml")
        load_setup(msst_ref / "mdx23c_tiny.yaml")
    messages = [str(w.message) for w in caught if "ignored:" in str(w.message)]
    assert len(messages) == 1
    assert "training.q" in messages[0] and "training.coarse_loss_clip" in messages[0]
    assert setup.training.ema_momentum == 0.999 and setup.augment.mixup_probs == (0.2, 0.02)


def test_msst_musdb18_config_with_all_augmentations_loads(tmp_path):
    if not MSST_REPO.is_dir():
        pytest.skip("MSST mirror not available")
    text = subprocess.run(["git", "-C", str(MSST_REPO), "show", "HEAD:configs/config_musdb18_mdx23c.yaml"],
                          capture_output=True, text=True, check=True).stdout
    path = tmp_path / "msst.yaml"
    path.write_text(text)
    with pytest.warns(UserWarning, match=r"ignored: .*pedalboard\*"):
        setup = load_setup(path)
    assert setup.augment.all.channel_shuffle == 0.5 and setup.augment.all.random_inverse == 0.1


def _edit(tmp_path, section, key, value):
    path = tiny_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data[section][key] = value
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("section,key,hint", [
    ("training", "gradient_acumulation_steps", "training.gradient_accumulation_steps"),
    ("augmentations", "loudnes", "augmentations.loudness"),
])
def test_unknown_key_names_the_closest_valid_one(tmp_path, section, key, hint):
    with pytest.raises(StemforgeError, match=rf"unknown key '{section}.{key}'.*did you mean '{hint}'"):
        load_setup(_edit(tmp_path, section, key, 1))


@pytest.mark.parametrize("key,value,match", [
    ("optimizer", "prodigy", "use adam or adamw"),
    ("lr", "fast", "training.lr' must be float"),
    ("batch_size", 0, ">= 1"),
    ("scheduler", "linear", "ReduceLROnPlateau, cosine or constant"),
    ("lr_min", 1.0, "lr_min must be in"),
    ("sdr_weights", {"cymbals": 2.0}, "'cymbals' is not a trained stem"),
    ("sdr_weights", {"bass": -1}, "weight of 'bass' must be >= 0"),
    ("sdr_weights", {"vocals": 0, "bass": 0, "drums": 0, "other": 0}, "at least one stem"),
    ("sdr_weights", [1, 2], "sdr_weights' must be dict"),
])
def test_bad_training_values_are_explained(tmp_path, key, value, match):
    with pytest.raises(StemforgeError, match=match):
        load_setup(_edit(tmp_path, "training", key, value))


@pytest.mark.parametrize("values,match", [
    ({"varispeed": 1.5}, "augmentations.all.varispeed must be a probability"),
    ({"varispeed_semitones": 24}, "varispeed_semitones must be in 0..12"),
    ({"seven_band_parametric_eq_min_gain_db": 6, "seven_band_parametric_eq_max_gain_db": -6}, "min_gain_db must be <="),
])
def test_bad_timbre_augmentations_are_explained(tmp_path, values, match):
    path = tiny_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["augmentations"].setdefault("all", {}).update(values)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StemforgeError, match=match):
        load_setup(path)


def test_timbre_augmentations_load_with_msst_eq_keys(tmp_path):
    path = tiny_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["augmentations"]["all"] = {"varispeed": 0.5, "varispeed_semitones": 3, "seven_band_parametric_eq": 0.25,
                                    "seven_band_parametric_eq_min_gain_db": -9, "seven_band_parametric_eq_max_gain_db": 9}
    path.write_text(yaml.safe_dump(data))
    setup = load_setup(path, ["augmentations.all.varispeed=0.3"])
    assert setup.augment.all.varispeed == 0.3 and setup.augment.all.varispeed_semitones == 3.0
    assert setup.augment.all.seven_band_parametric_eq == 0.25


def test_msst_mp3_compression_keys_load(tmp_path):
    path = tiny_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["augmentations"].update({"mp3_compression_on_mixture": 0.01, "mp3_compression_on_mixture_bitrate_min": 32,
                                  "mp3_compression_on_mixture_bitrate_max": 320,
                                  "mp3_compression_on_mixture_backend": "lameenc"})
    path.write_text(yaml.safe_dump(data))
    setup = load_setup(path, ["augmentations.mp3_compression_on_mixture=0.5"])
    assert setup.augment.mp3_compression_on_mixture == 0.5
    aug = setup.augment
    assert (aug.mp3_compression_on_mixture_bitrate_min, aug.mp3_compression_on_mixture_bitrate_max) == (32, 320)


@pytest.mark.parametrize("values,match", [
    ({"loudness_min": 2.0, "loudness_max": 1.0}, "loudness_min must be >= 0 and <= loudness_max"),
    ({"loudness_log": True, "loudness_min": 0.0}, "loudness_log draws the gain in dB, so loudness_min must be > 0"),
    ({"mp3_compression_on_mixture": 2}, "mp3_compression_on_mixture must be a probability"),
    ({"mp3_compression_on_mixture_bitrate_min": 16}, "32 <= min <= max <= 320"),
    ({"mp3_compression_on_mixture_bitrate_min": 256, "mp3_compression_on_mixture_bitrate_max": 128}, "min <= max"),
])
def test_bad_augmentation_ranges_are_explained(tmp_path, values, match):
    path = tiny_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["augmentations"].update(values)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StemforgeError, match=match):
        load_setup(path)


def test_set_overrides_equal_the_edited_yaml_and_the_merged_text_reloads(tmp_path):
    base = tiny_config(tmp_path)
    overrides = ["training.lr=5e-4", "training.loss_sdr=1", "training.sdr_weights.other=2",
                 "augmentations.all.random_polarity=0"]
    setup = load_setup(base, overrides)
    data = yaml.safe_load(base.read_text())
    data["training"].update(lr=5e-4, loss_sdr=1.0, sdr_weights={"other": 2.0})
    data["augmentations"]["all"]["random_polarity"] = 0.0
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data))
    assert setup.training == load_setup(edited).training and setup.augment == load_setup(edited).augment
    assert setup.training.lr == 5e-4 and setup.augment.all.random_polarity == 0.0
    assert setup.text.startswith("# tiny.yaml with --set training.lr=5e-4 ")
    merged = tmp_path / "merged.yaml"  # what a run writes as its config.yaml
    merged.write_text(setup.text)
    assert load_setup(merged).training == setup.training and load_setup(merged).model.stems == setup.model.stems
    assert load_setup(base).text == base.read_text()  # no overrides: the file as written, comments kept


@pytest.mark.parametrize("item,match", [
    ("training.lr", "expected SECTION.KEY=VALUE"),
    ("lr=1e-4", "expected SECTION.KEY=VALUE"),
    ("trainig.lr=1e-4", "did you mean 'training'"),
    ("training.lerning_rate=1e-4", "unknown key 'training.lerning_rate'"),
    ("training.lr.max=1", "'training.lr' in config .* is not a mapping"),
    ("training.lr=[1", "not valid YAML"),
])
def test_bad_set_overrides_are_explained(tmp_path, item, match):
    with pytest.raises(StemforgeError, match=match):
        load_setup(tiny_config(tmp_path), [item])


def test_string_lr_like_1e_minus_4_is_accepted(tmp_path):
    assert load_setup(_edit(tmp_path, "training", "lr", "1e-4")).training.lr == 1e-4


def test_cmx_reduction_out_of_range_is_refused(tmp_path):
    path = tiny_config(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["audio"].update(use_cmx=True, cmx_reduction=5)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StemforgeError, match="cmx_reduction must be an integer in 1..4"):
        load_setup(path)


@pytest.mark.parametrize("name, ships_with", [
    ("drums_finetune_kits.yaml", "drums.yaml"), ("drums_finetune_balance.yaml", "drums.yaml"),
    ("drums_finetune_toms_cymbals.yaml", "drums.yaml"), ("drums_finetune_hihat.yaml", "drums.yaml"),
    ("default_finetune_kits.yaml", "default.yaml"), ("default_finetune_bass_other.yaml", "default.yaml"),
    ("drums_finetune_hihat_quiet.yaml", "drums.yaml"), ("drums_finetune_toms_cymbals_quiet.yaml", "drums.yaml"),
    ("drums_finetune_hihat_quieter.yaml", "drums.yaml"), ("drums_finetune_cymbals_quiet.yaml", "drums.yaml"),
    ("drums_finetune_toms_quiet.yaml", "drums.yaml"), ("default_finetune_bass.yaml", "default.yaml"),
    ("default_finetune_drums.yaml", "default.yaml"), ("default_finetune_other.yaml", "default.yaml"),
    ("default_finetune_vocals.yaml", "default.yaml"),
])
def test_fine_tuning_configs_build_the_shipped_network(name, ships_with):
    """Their weights ship with a config in stemforge/configs/, so the copies may differ only in training."""
    from stemforge.config import load_config

    shipped, tuned = load_config(REPO / "stemforge" / "configs" / ships_with), load_config(REPO / "configs" / name)
    for part in ("audio", "model", "instruments", "target_instrument", "inference"):
        assert getattr(tuned, part) == getattr(shipped, part), part
