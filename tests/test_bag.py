"""Bags of networks (Demucs's per-stem weighted bags): each stem is the weighted mean of the members'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stemforge import registry
from stemforge.errors import StemforgeError
from stemforge.registry import BagMember, ModelEntry
from stemforge.separator import Separator, load_bag, load_model, random_checkpoint

from .conftest import DEV_DATA

CONFIG = Path(registry.PACKAGE_DIR) / "configs" / "default.yaml"
STEMS = ("vocals", "bass", "drums", "other")


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    """Two random-weight checkpoints of the shipped default network."""
    folder = tmp_path_factory.mktemp("bag")
    return [random_checkpoint(CONFIG, folder / f"m{seed}.safetensors", seed=seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def mix() -> np.ndarray:
    return 0.1 * np.random.default_rng(0).standard_normal((2, 150_000)).astype(np.float32)


def _entry(name: str, **kw) -> ModelEntry:
    values = dict(name=name, architecture="mdx23c", config=str(CONFIG), url=None, weights=None, sha256=None,
                  size=1000, licence="test", stems=STEMS, description="test", sample_rate=44100)
    values.update(kw)
    return ModelEntry(**values)


def _bag_of(members: list[Path], config: Path = CONFIG) -> dict[str, ModelEntry]:
    """Bag "ab": vocals and drums from network a, bass from b, other from both (weights 1 and 1)."""
    return {"a": _entry("a", weights=str(members[0]), config=str(config)),
            "b": _entry("b", weights=str(members[1]), config=str(config)),
            "ab": _entry("ab", architecture="bag", config=None, size=None,
                         members=(BagMember("a", {"vocals": 1, "drums": 2, "other": 1}),
                                  BagMember("b", {"bass": 3, "other": 1})))}


def test_a_registered_bag_mixes_its_members_estimates_per_stem(members, mix, monkeypatch):
    """vocals and drums from member a, bass from b, other the mean of both: as separating with each."""
    entries = _bag_of(members)
    monkeypatch.setattr(registry, "load_registry", lambda path=None: entries)
    # the soft mask of the shipped config works on the bag's output, so it is off to compare the members
    bag = Separator("ab", batch_size=2, soft_mask=False).separate(mix)
    a, b = (Separator(name, batch_size=2, soft_mask=False).separate(mix) for name in ("a", "b"))
    expected = {"vocals": a["vocals"], "bass": b["bass"], "drums": a["drums"], "other": (a["other"] + b["other"]) / 2}
    for stem in STEMS:
        np.testing.assert_allclose(bag[stem], expected[stem], atol=2e-5, err_msg=stem)
        assert np.abs(bag[stem]).max() > 1e-3  # random networks: not silent, so the check has teeth
    row = registry.format_table([entries["ab"]]).splitlines()[1].split()
    assert row[:2] == ["ab", "bag"] and row[3] == "0" and row[-1] == "shipped"  # 2 x 1000 bytes, both in the package
    with pytest.raises(StemforgeError, match="bag of a, b"):
        registry.fetch_model("ab")


@pytest.mark.parametrize("normalize", [False, True])
def test_the_post_filter_on_the_members_raw_estimates_is_the_bag_as_users_run_it(members, mix, normalize,
                                                                                   monkeypatch, tmp_path):
    """benchmarks/compare_member.py's shortcut: each member run once without the soft mask, the raw
    estimates mixed with the bag's weights, then :meth:`Separator.post_filter`, give the stems of the
    bag with its soft mask (also with MSST's input normalization, which the filter must undo alike)."""
    config = CONFIG
    if normalize:
        config = tmp_path / "normalized.yaml"
        config.write_text(CONFIG.read_text().replace("inference:\n", "inference:\n  normalize: true\n"))
    entries = _bag_of(members, config)
    monkeypatch.setattr(registry, "load_registry", lambda path=None: entries)
    bag = Separator("ab", batch_size=2)
    assert bag.soft_mask is not None and bag.config.inference.normalize == normalize
    mix = mix + 0.05  # a mean the normalization takes out
    raw = [Separator(name, batch_size=2, soft_mask=False).separate_mix(mix) for name in ("a", "b")]
    weights = np.array(registry.bag_weights(entries["ab"]), dtype=np.float32)
    weights /= weights.sum(0)
    mixed = sum(w[:, None, None] * r for w, r in zip(weights, raw))
    filtered = bag.post_filter(mix, mixed)
    np.testing.assert_allclose(filtered, bag.separate_mix(mix), atol=2e-5)
    assert np.abs(filtered - mixed).max() > 1e-3  # the filter changed the stems: the check has teeth


def test_compare_member_takes_a_wider_candidate_with_its_config(members, monkeypatch, tmp_path):
    """benchmarks/compare_member.py --candidate-config: a wider network stands in for a member; one whose
    config separates otherwise (here: another overlap) is refused, as a bag would refuse it."""
    import torch

    compare_member = _compare_member(monkeypatch)
    monkeypatch.setattr(registry, "load_registry", lambda path=None: _bag_of(members))
    wide = tmp_path / "wide.yaml"
    wide.write_text(CONFIG.read_text().replace("num_channels: 32", "num_channels: 40"))
    ckpt = random_checkpoint(wide, tmp_path / "wide.safetensors", seed=3)
    threads = str(torch.get_num_threads())
    nets = compare_member.load_networks("ab", [("b", ckpt, wide)], threads)
    (index, net), = nets.candidates
    assert index == 1 and net.loaded.model.first_conv.weight.shape[0] == 40
    with pytest.raises(StemforgeError, match="wide.safetensors"):  # the member's own network cannot hold it
        compare_member.load_networks("ab", [("b", ckpt, None)], threads)
    other = tmp_path / "other.yaml"
    other.write_text(wide.read_text().replace("num_overlap: 2", "num_overlap: 4"))
    with pytest.raises(StemforgeError, match="another inference"):
        compare_member.load_networks("ab", [("b", ckpt, other)], threads)


def test_compare_member_reads_a_stem_mp4_stream_by_stream_beside_folders(monkeypatch, tmp_path):
    """benchmarks/compare_member.py --views: a MUSDB18 ``.stem.mp4`` is a song whose input is its mixture
    stream and whose references are its stem streams; a folder view is read as before."""
    import argparse

    from stemforge.audio import load_audio, save_audio

    clip = DEV_DATA / "Music Delta - 80s Rock.stem.mp4"
    if not clip.is_file():
        pytest.skip("MUSDB sample not available")
    compare_member = _compare_member(monkeypatch)
    song = tmp_path / "view" / "song"
    song.mkdir(parents=True)
    for name in ("mixture", *STEMS):
        save_audio(song / f"{name}.wav", np.zeros((2, 1000), np.float32), 44100)
    args = argparse.Namespace(views=[clip, song.parent], songs=None, stemgmd=None, stems=STEMS, input="drums.wav")
    (mp4_set, ((name, source, refs),)), (folder_set, folder_songs) = compare_member.inputs(args)
    assert mp4_set == name == "Music Delta - 80s Rock" and source == (clip, 0)
    assert {s: a.stream for s, a in refs.items()} == {"vocals": 4, "bass": 2, "drums": 1, "other": 3}
    vocals = load_audio(refs["vocals"].path, 44100, stream=refs["vocals"].stream)
    assert not np.allclose(vocals, load_audio(clip, 44100)[:, : vocals.shape[1]], atol=1e-3)  # not the mixture
    assert folder_set == "view" and folder_songs == [("song", (song / "mixture.wav", 0),
                                                      {s: (song / f"{s}.wav", 0) for s in STEMS})]
    args.stems = ("vocals", "kick")
    with pytest.raises(SystemExit, match="has no stem kick"):
        compare_member.inputs(args)


def _compare_member(monkeypatch):
    """benchmarks/compare_member.py as a module."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_member.py"
    spec = importlib.util.spec_from_file_location("compare_member", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compare_member", module)  # for its dataclass
    spec.loader.exec_module(module)
    return module


def test_bag_members_must_separate_alike(members, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(CONFIG.read_text().replace("num_overlap: 2", "num_overlap: 4"))
    with pytest.raises(StemforgeError, match="another inference"):
        load_bag("x", [load_model(members[0], CONFIG), load_model(members[1], other)], [[1] * 4, [1] * 4])
    with pytest.raises(StemforgeError, match="positive weight for every stem"):
        load_bag("x", [load_model(m, CONFIG) for m in members], [[1, 1, 1, 0], [1, 1, 1, 0]])


def _registry(tmp_path, bag: dict) -> Path:
    network = {"name": "net", "architecture": "mdx23c", "config": "configs/net.yaml", "url": None,
               "weights": "weights/net.safetensors", "sha256": "a" * 64, "size": 10, "licence": "MIT",
               "stems": ["a", "b"], "description": "test", "sample_rate": 44100}
    item = {"name": "bag", "architecture": "bag", "config": None, "url": None, "weights": None, "sha256": None,
            "size": None, "licence": "MIT", "stems": ["a", "b"], "description": "test", "sample_rate": 44100,
            "members": [{"model": "net", "weights": {"a": 1, "b": 1}}]}
    item.update(bag)
    path = tmp_path / "registry.json"
    path.write_text(json.dumps([network, {**network, "name": "bag2", "architecture": "bag", "config": None,
                                          "weights": None, "sha256": None, "size": None,
                                          "members": [{"model": "net", "weights": {"a": 1, "b": 1}}]}, item]))
    return path


def test_registry_reads_a_bag(tmp_path):
    entry = registry.load_registry(_registry(tmp_path, {}))["bag"]
    assert entry.is_bag and not entry.shipped and entry.members == (BagMember("net", {"a": 1.0, "b": 1.0}),)
    assert registry.bag_weights(entry) == [[1.0, 1.0]]


@pytest.mark.parametrize("change, message", [
    ({"members": [{"model": "nope", "weights": {"a": 1, "b": 1}}]}, "'nope', which is not in the registry"),
    ({"members": [{"model": "bag2", "weights": {"a": 1, "b": 1}}]}, "which is a bag itself"),
    ({"members": [{"model": "net", "weights": {"a": 1}}]}, "no member has a weight > 0 for b"),
    ({"members": [{"model": "net", "weights": {"a": 1, "b": 1, "c": 1}}]}, "unknown stem"),
    ({"members": [{"model": "net", "weights": {"a": -1, "b": 1}}]}, "WEIGHT >= 0"),
    ({"members": []}, "non-empty list"),
    ({"stems": ["b", "a"]}, "not the bag.s stems"),
    ({"sample_rate": 48000}, "at 44100 Hz, not the bag.s stems a, b in that order at 48000 Hz"),
    ({"weights": "weights/x.safetensors"}, "'weights' must be null in a bag"),
    ({"architecture": "mdx23c"}, "'architecture' must be 'bag'"),
])
def test_bad_bags_name_the_problem(tmp_path, change, message):
    with pytest.raises(StemforgeError, match=message):
        registry.load_registry(_registry(tmp_path, change))


@pytest.mark.parametrize("backend", ["onnx", pytest.param("compile", marks=pytest.mark.slow)])  # inductor: ~1 min
def test_a_bag_runs_on_the_other_backends_as_in_eager(backend, msst_ref, tmp_path, monkeypatch):
    """The bag is one network to the backends: ONNX Runtime and torch.compile give eager's stems."""
    config = msst_ref / "mdx23c_tiny.yaml"
    files = [random_checkpoint(config, tmp_path / f"t{seed}.safetensors", seed=seed) for seed in (1, 2)]
    stems = load_model(files[0], config).config.stems
    entries = {f"t{i}": _entry(f"t{i}", config=str(config), weights=str(f), stems=stems) for i, f in enumerate(files)}
    entries["bag"] = _entry("bag", architecture="bag", config=None, stems=stems,
                            members=(BagMember("t0", {stems[0]: 1}), BagMember("t1", {s: 1 for s in stems[1:]})))
    monkeypatch.setattr(registry, "load_registry", lambda path=None: entries)
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path / "cache"))
    mix = 0.3 * np.random.default_rng(0).standard_normal((2, 30_000)).astype(np.float32)
    eager = Separator("bag", precision="fp32", batch_size=2).separate_mix(mix)
    other = Separator("bag", precision="fp32", batch_size=2, backend=backend).separate_mix(mix)
    assert np.abs(eager).max() > 1e-3
    assert np.abs(other - eager).max() <= 1e-4
