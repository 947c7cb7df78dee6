"""`stemforge train` end to end on a tiny model: checkpoints, log, plot, exact resume, CMX, DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from stemforge.checkpoint import load_weights, read_state_dict
from stemforge.config import load_config
from stemforge.engine import ChunkRunner, separate_tensor
from stemforge.errors import StemforgeError
from stemforge.models import MDX23C
from stemforge.train.cli import main
from stemforge.train.log import read_log
from stemforge.train.config import load_setup
from stemforge.train.loop import cosine_lr, train
from stemforge.train.plot import plot_training

from .test_train_helpers import make_dataset, tiny_config

STEPS = {"training.num_steps": 2, "training.num_epochs": 2, "training.save_every": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root / "train", tracks=2, seconds=1.5), make_dataset(root / "valid", tracks=1, seconds=1.0, seed=9)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    """One uninterrupted CLI run: 2 epochs of 2 steps, validation each epoch."""
    tmp = tmp_path_factory.mktemp("run")
    config = tiny_config(tmp, **STEPS)
    results = tmp / "results"
    assert main(["--config", str(config), "--data", str(data[0]), "--valid", str(data[1]),
                 "--results", str(results), "--device", "cpu"]) == 0
    return config, results


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_run_writes_plain_checkpoints_that_separate_loads(run, data):
    _, results = run
    assert {p.name for p in results.iterdir()} >= {"last.ckpt", "best.ckpt", "resume.pt", "log.jsonl", "config.yaml"}
    state = _weights(results / "best.ckpt")
    assert not any(k.startswith(("module.", "_orig_mod.", "model.")) for k in state)
    cfg = load_config(results / "config.yaml")
    model = MDX23C.from_config(cfg)
    load_weights(model, read_state_dict(results / "best.ckpt"), results / "best.ckpt", results / "config.yaml")
    mix = torch.randn(2, 20000, generator=torch.Generator().manual_seed(0)) * 0.1
    out = separate_tensor(ChunkRunner(model, torch.device("cpu")), mix, chunk=cfg.chunk_size, overlap=2, num_stems=4)
    assert out.shape == (4, 2, 20000) and torch.isfinite(out).all()


def test_log_has_every_step_and_every_validation(run):
    records = read_log(run[1] / "log.jsonl")
    steps = [r for r in records if "loss" in r]
    valids = [r for r in records if r.get("kind") == "valid"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 for r in steps)
    assert [r["step"] for r in valids] == [2, 4] and all(r["full"] for r in valids)
    assert set(valids[0]["sdr"]) == {"vocals", "bass", "drums", "other"}
    best = max(r["mean_sdr"] for r in valids)
    state = _weights(run[1] / "best.ckpt")
    best_step = next(r["step"] for r in valids if r["mean_sdr"] == best)
    assert (best_step == 4) == all(torch.equal(v, _weights(run[1] / "last.ckpt")[k]) for k, v in state.items())


def test_plot_training_draws_a_png(run, tmp_path):
    png = plot_training(run[1], tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_resume_after_a_kill_matches_the_uninterrupted_run(run, data, tmp_path):
    config, reference = run
    results = tmp_path / "results"
    train(config, data[0], results, valid=data[1], device="cpu", stop_after=3)  # "killed" after step 3
    state = torch.load(results / "resume.pt", weights_only=True)
    assert state["step"] == 2  # the step-3 state was never saved; the epoch-1 end (after validation) was
    train(config, data[0], results, valid=data[1], device="cpu", resume=True)
    for name in ("last.ckpt", "best.ckpt"):
        a, b = _weights(reference / name), _weights(results / name)
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert read_log(results / "log.jsonl") == read_log(reference / "log.jsonl")  # no duplicated steps


def test_cosine_schedule_takes_over_a_resumed_plateau_run(data, tmp_path):
    assert cosine_lr(0, 8, 1e-3, 1e-5) == 1e-3 and cosine_lr(8, 8, 1e-3, 1e-5) == 1e-5
    assert cosine_lr(4, 8, 1e-3, 0.0) == pytest.approx(5e-4)
    plateau = tiny_config(tmp_path, "plateau.yaml", **STEPS)
    results = tmp_path / "results"
    train(plateau, data[0], results, valid=data[1], device="cpu", stop_after=3)  # resumes at step 2
    cosine = tiny_config(tmp_path, "cosine.yaml", **STEPS, **{"training.scheduler": "cosine", "training.lr_min": 1e-5})
    lr = load_setup(cosine).training.lr
    with pytest.warns(UserWarning, match="config that differs"):
        train(cosine, data[0], results, valid=data[1], device="cpu", resume=True)
    logged = [r["lr"] for r in read_log(results / "log.jsonl") if "loss" in r]
    assert logged[:2] == [lr, lr]  # the plateau epoch
    assert logged[2:] == pytest.approx([cosine_lr(2, 4, lr, 1e-5), cosine_lr(3, 4, lr, 1e-5)])
    assert logged[2] < lr


def test_existing_run_is_not_overwritten_and_resume_needs_a_run(run, data, tmp_path, capsys):
    config, results = run
    args = ["--config", str(config), "--data", str(data[0]), "--results"]
    assert main(args + [str(results)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + [str(tmp_path / "new"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_init_fine_tunes_from_given_weights_in_a_new_run(data, tmp_path, capsys):
    short = tiny_config(tmp_path, **{"training.num_steps": 2, "training.num_epochs": 1})
    torch.manual_seed(123)  # weights unlike those the run's own seed would draw
    start = MDX23C.from_config(load_config(short)).state_dict()
    init = tmp_path / "start.ckpt"
    torch.save(start, init)
    results = tmp_path / "tuned"
    assert main(["--config", str(short), "--data", str(data[0]), "--valid", str(data[1]), "--results", str(results),
                 "--device", "cpu", "--init", str(init)]) == 0
    state = torch.load(results / "resume.pt", weights_only=True)
    assert state["step"] == 2  # a new run: its own step count
    lr = load_setup(short).training.lr
    seeded = train(short, data[0], tmp_path / "fresh", valid=data[1], device="cpu", stop_after=1).state_dict()
    for weights in (state["model"], _weights(results / "last.ckpt")):  # raw and EMA
        # two AdamW steps move a weight by about lr each: the run went on from `init`
        assert max((weights[k] - start[k]).abs().max().item() for k in start) <= 3 * lr
        assert max((weights[k] - seeded[k]).abs().max().item() for k in start) > 30 * lr

    args = ["--config", str(short), "--data", str(data[0]), "--device", "cpu", "--init", str(init)]
    assert main(args + ["--results", str(results), "--resume"]) == 2
    assert "pass one of them" in capsys.readouterr().err
    other = tiny_config(tmp_path, "other.yaml", **{"model.num_channels": 16})
    assert main(["--config", str(other), "--data", str(data[0]), "--device", "cpu",
                 "--results", str(tmp_path / "bad"), "--init", str(init)]) == 2
    err = capsys.readouterr().err
    assert "start.ckpt" in err and "does not match" in err


def test_set_overrides_the_config_of_a_run_and_its_saved_config_yaml(data, tmp_path):
    config = tiny_config(tmp_path, **STEPS)
    results = tmp_path / "results"
    with pytest.warns(UserWarning, match="no --valid data"):
        assert main(["--config", str(config), "--data", str(data[0]), "--results", str(results), "--device", "cpu",
                     "--set", "training.num_epochs=1", "training.num_steps=1", "training.lr=2e-3"]) == 0
    steps = [r for r in read_log(results / "log.jsonl") if "loss" in r]
    assert [r["lr"] for r in steps] == [2e-3]  # one step at the overridden lr
    saved = load_setup(results / "config.yaml")
    assert (saved.training.num_epochs, saved.training.num_steps, saved.training.lr) == (1, 1, 2e-3)


def test_cmx_model_trains_separates_and_records_r(data, tmp_path):
    config = tiny_config(tmp_path, **{"training.num_steps": 2, "training.num_epochs": 1, "training.lr": 3e-3,
                                      "training.fast_valid_segments": 1, "training.fast_valid_seconds": 0.5})
    raw = yaml.safe_load(config.read_text())
    raw["audio"].update(use_cmx=True, cmx_reduction=2)
    config.write_text(yaml.safe_dump(raw))
    results = tmp_path / "cmx"
    model = train(config, data[0], results, valid=data[1], device="cpu")
    assert model.cmx == 2
    state = read_state_dict(results / "last.ckpt")
    assert int(state["cmx_reduction"]) == 2
    valids = [r for r in read_log(results / "log.jsonl") if r.get("kind") == "valid"]
    assert [r["full"] for r in valids] == [False, True]  # fast validation per epoch, full at the end
    cfg = load_config(results / "config.yaml")
    fresh = MDX23C.from_config(cfg)
    fresh.load_state_dict(state)
    out = separate_tensor(ChunkRunner(fresh, torch.device("cpu")), torch.randn(2, 9000) * 0.1,
                          chunk=cfg.chunk_size, overlap=2, num_stems=4)
    assert out.shape == (4, 2, 9000) and torch.isfinite(out).all()
    with pytest.raises(StemforgeError, match="CMX reduction r=2"):
        MDX23C.from_config(load_config(tiny_config(tmp_path, "plain.yaml"))).load_state_dict(state)


def _ddp_worker(rank: int, world: int, port: int, config: str, data: str, results: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    model = train(config, data, results, device="cpu")
    torch.save(model.state_dict(), f"{results}/rank{rank}.pt")


def test_ddp_two_processes_keep_identical_weights(data, tmp_path):
    config = tiny_config(tmp_path, **{"training.num_steps": 2, "training.num_epochs": 1})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = tmp_path / "ddp"
    results.mkdir()
    mp.spawn(_ddp_worker, args=(2, port, str(config), str(data[0]), str(results)), nprocs=2, join=True)
    a, b = _weights(results / "rank0.pt"), _weights(results / "rank1.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = MDX23C.from_config(load_config(config)).state_dict()  # same seed: the starting weights
    assert any(not torch.equal(a[k], init[k]) for k in a)  # and they did train
    assert len(read_log(results / "log.jsonl")) == 2  # rank 0 logs each step once
    assert json.loads((results / "log.jsonl").read_text().splitlines()[0])["step"] == 1


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_trains_and_fp16_saves_its_grad_scaler(data, tmp_path, dtype):
    config = tiny_config(tmp_path, **{"training.num_steps": 1, "training.num_epochs": 1, "training.use_amp": True,
                                      "training.amp_dtype": dtype, "training.gradient_accumulation_steps": 1})
    with pytest.warns(UserWarning, match="no --valid"):
        model = train(config, data[0], tmp_path / "amp", device="cpu")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    scaler = torch.load(tmp_path / "amp" / "resume.pt", weights_only=True)["scaler"]
    assert ("scale" in scaler) == (dtype == "fp16")


def test_python_m_stemforge_train_is_the_torchrun_entry_point():
    out = subprocess.run([sys.executable, "-m", "stemforge.train", "--help"], capture_output=True, text=True, check=True)
    assert "--resume" in out.stdout and "torchrun" in out.stdout
