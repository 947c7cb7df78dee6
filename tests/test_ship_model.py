"""scripts/ship_model.py: a training run into the package (weights, store, registry entry), in a
throw-away copy of the package layout so the shipped registry is never touched."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import stemforge.registry as registry
from stemforge.checkpoint import read_state_dict
from stemforge.registry import sha256sum
from stemforge.separator import Separator
from stemforge.train.cli import main as train

from .test_train_helpers import make_dataset, tiny_config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_model.py"
spec = importlib.util.spec_from_file_location("ship_model", SCRIPT)
ship_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ship_model)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(config, run, valid)``: a tiny model trained 2 epochs of 2 steps, and one validation song."""
    tmp = tmp_path_factory.mktemp("ship")
    data = make_dataset(tmp / "train", tracks=2, seconds=1.5)
    valid = make_dataset(tmp / "valid", tracks=1, seconds=1.0, seed=9)
    config = tiny_config(tmp, **{"training.num_steps": 2, "training.num_epochs": 2})
    assert train(["--config", str(config), "--data", str(data), "--valid", str(valid),
                  "--results", str(tmp / "run"), "--device", "cpu"]) == 0
    return config, tmp / "run", valid


@pytest.fixture
def package(tmp_path, monkeypatch, trained):
    """An empty package (configs/tiny.yaml, weights/, registry.json) that ship_model and the registry use."""
    pkg = tmp_path / "pkg"
    (pkg / "configs").mkdir(parents=True)
    (pkg / "weights").mkdir()
    shutil.copy(trained[0], pkg / "configs" / "tiny.yaml")
    (pkg / "registry.json").write_text("[]\n")
    for module, name, value in ((ship_model, "PACKAGE", pkg), (ship_model, "REGISTRY_PATH", pkg / "registry.json"),
                                (registry, "PACKAGE_DIR", pkg), (registry, "REGISTRY_PATH", pkg / "registry.json")):
        monkeypatch.setattr(module, name, value)
    return pkg


def ship(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["ship_model.py", "--name", "tiny", "--description", "a test", *args])
    ship_model.main()


def entry(pkg: Path) -> dict:
    (only,) = json.loads((pkg / "registry.json").read_text())
    return only


def test_auto_ships_the_best_scoring_weights_and_separate_finds_them_by_name(package, trained, monkeypatch, capsys):
    _, run, valid = trained
    ship(monkeypatch, "--run", str(run), "--weights", "auto", "--valid", str(valid))
    best = capsys.readouterr().out.split("best: the ")[1].split()[0]
    assert best in ("last", "raw")  # nothing shipped yet to keep
    weights = package / "weights" / "tiny.safetensors"
    shipped, chosen = load_file(weights), ship_model.read_weights(run, best)[1]
    assert shipped.keys() == chosen.keys() and all(torch.equal(shipped[k], chosen[k].float()) for k in chosen)
    registered = entry(package)
    assert registered["description"] == "a test" and registered["config"] == "configs/tiny.yaml"
    assert registered["sha256"] == sha256sum(weights) and registered["size"] == weights.stat().st_size

    mix = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1
    separator = Separator("tiny", precision="fp32")
    stems = separator.separate_mix(mix)
    assert list(separator.stems) == entry(package)["stems"]
    assert stems.shape == (len(separator.stems), *mix.shape)


def test_auto_keeps_the_shipped_weights_when_the_run_scores_lower(package, trained, monkeypatch, capsys):
    _, run, valid = trained
    ship(monkeypatch, "--run", str(run), "--weights", "raw")
    before = (package / "weights" / "tiny.safetensors").read_bytes()
    scores = iter([1.0, 2.0, 3.0])  # last, raw, then the shipped weights: the shipped score highest
    monkeypatch.setattr(ship_model, "score", lambda model, cfg, valid: dict.fromkeys(cfg.stems, next(scores)))
    ship(monkeypatch, "--run", str(run), "--weights", "auto", "--valid", str(valid))
    assert "kept the shipped tiny" in capsys.readouterr().out
    assert (package / "weights" / "tiny.safetensors").read_bytes() == before


@pytest.mark.parametrize("store, dtype", [("fp16", torch.float16), ("int8", torch.int8)])
def test_shipped_weights_are_stored_again_smaller_and_load_as_before(package, trained, monkeypatch, store, dtype):
    _, run, _ = trained
    ship(monkeypatch, "--run", str(run), "--weights", "last")
    weights = package / "weights" / "tiny.safetensors"
    fp32, size = read_state_dict(weights), weights.stat().st_size
    ship(monkeypatch, "--weights", "shipped", "--store", store)  # the config comes from the registry entry
    assert weights.stat().st_size < 0.6 * size and entry(package)["sha256"] == sha256sum(weights)
    assert any(t.dtype == dtype for t in load_file(weights).values())
    again = read_state_dict(weights)
    for key, value in fp32.items():
        step = value.abs().max().item() / (127 if store == "int8" else 1000) + 1e-6
        assert torch.allclose(again[key].float(), value, atol=step), key


def test_a_registry_write_waits_for_the_one_under_way(package, trained, monkeypatch):
    """Two ship_model runs at once: the second read-change-write starts only after the first has written,
    so neither entry is lost."""
    ship(monkeypatch, "--run", str(trained[1]), "--weights", "last")
    other = {**entry(package), "name": "tiny-2"}
    with ship_model.registry_lock():  # the first run, between its read and its write
        writer = threading.Thread(target=ship_model.write_entry, args=(other,))
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive(), "the second write did not wait for the lock"
        assert [e["name"] for e in json.loads((package / "registry.json").read_text())] == ["tiny"]
    writer.join(timeout=10)
    assert [e["name"] for e in json.loads((package / "registry.json").read_text())] == ["tiny-2", "tiny"]
