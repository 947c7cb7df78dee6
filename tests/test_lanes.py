"""Lanes: several chunks at once on their own CPU threads, with the same stems as one lane."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from stemforge import Separator
from stemforge.engine.batching import AdaptiveBatch
from stemforge.engine.lanes import Lanes, network_size, resolve_lanes
from stemforge.errors import StemforgeError

CPU = torch.device("cpu")


@pytest.fixture
def tiny_paths(msst_ref):
    return {"checkpoint": msst_ref / "mdx23c_tiny.ckpt", "config": msst_ref / "mdx23c_tiny.yaml"}


class Recorder:
    """A fake runner (2 stems: x and -x) that notes which thread ran each part, with how many torch threads."""

    def __init__(self, oom_above: int | None = None):
        self.calls, self.oom_above, self.lock = [], oom_above, threading.Lock()

    def __call__(self, chunks: torch.Tensor) -> torch.Tensor:
        if self.oom_above is not None and len(chunks) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        with self.lock:
            self.calls.append((threading.current_thread().name, torch.get_num_threads(), len(chunks)))
        return torch.stack([chunks, -chunks], 1)


def test_lanes_keep_the_order_and_run_on_their_own_threads():
    caller_threads = torch.get_num_threads()
    run = Recorder()
    lanes = Lanes(run, 2, threads=1)
    chunks = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(5, 2, 3)
    for _ in range(2):  # the first call runs its parts one by one, later ones at once
        out = lanes(chunks)
        assert torch.equal(out, torch.stack([chunks, -chunks], 1))
    assert [n for _, _, n in run.calls] == [3, 2, 3, 2]
    assert {name.startswith("stemforge-lane") for name, _, _ in run.calls} == {True}
    assert {threads for _, threads, _ in run.calls} == {1}
    assert torch.get_num_threads() == caller_threads  # the caller's own setting is untouched
    assert torch.equal(lanes(chunks[:1]), torch.stack([chunks[:1], -chunks[:1]], 1))  # fewer chunks than lanes
    lanes.close()


def test_out_of_memory_in_a_lane_halves_the_batch_and_loses_no_work():
    chunks = torch.randn(8, 2, 16)
    run = Recorder(oom_above=1)
    batch = AdaptiveBatch(Lanes(run, 2), 8)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        out = batch(chunks)
    assert torch.equal(out, torch.stack([chunks, -chunks], 1))
    assert batch.size == 2 and sum(n for _, _, n in run.calls) == 8


def test_resolve_lanes():
    assert resolve_lanes("auto", CPU, threads=2) == (2, 1)
    assert resolve_lanes("auto", CPU, threads=2, parameters=112_000_000) == (1, 2)  # big convolutions
    assert resolve_lanes("auto", CPU, threads=8) == (2, 4)
    assert resolve_lanes("auto", CPU, threads=1) == (1, 1)
    assert resolve_lanes("auto", torch.device("cuda"), threads=8) == (1, 8)
    assert resolve_lanes("3", CPU, threads=8) == (3, 2)
    for bad in ("0", "two", -1):
        with pytest.raises(StemforgeError, match="--lanes"):
            resolve_lanes(bad, CPU, threads=2)


def test_a_bag_of_small_networks_gets_lanes_like_a_small_network():
    """A bag runs its members one after another: its largest member, not its total, sets the lanes."""
    from stemforge.models import MDX23C, StemBag

    tiny = dict(stems=2, n_fft=256, hop_length=64, dim_f=128, num_scales=2, num_blocks_per_scale=1)
    small, wide = MDX23C(**tiny, num_channels=8, growth=8), MDX23C(**tiny, num_channels=16, growth=16)
    bag = StemBag([small, wide, small], [[1, 0], [1, 1], [0, 1]])
    assert network_size(bag) == network_size(wide) == sum(p.numel() for p in wide.parameters())
    assert network_size(bag) < sum(p.numel() for p in bag.parameters())
    from stemforge.separator import resolve_model

    shipped = resolve_model("default", None, None).model  # four networks of 1.6-6.3 M parameters, 18 M in all
    assert resolve_lanes("auto", CPU, threads=2, parameters=network_size(shipped)) == (2, 1)


def test_two_lanes_separate_like_one(tiny_paths, tmp_path):
    """The same stems in memory and streamed from a file (rounding of 1 vs 2 torch threads only)."""
    import soundfile as sf

    mix = (0.3 * np.random.default_rng(0).standard_normal((2, 8064 * 5 + 700))).astype(np.float32)
    one = Separator(**tiny_paths, device="cpu", precision="fp32", batch_size=1, lanes=1)  # lanes share out CPU threads
    two = Separator(**tiny_paths, device="cpu", precision="fp32", batch_size=1, lanes=2)
    assert one.lanes == 1 and two.lanes == 2 and isinstance(two.run, Lanes)
    ref = one.separate_mix(mix)
    assert np.abs(two.separate_mix(mix) - ref).max() <= 1e-5
    sf.write(tmp_path / "mix.wav", mix.T, one.sample_rate, subtype="FLOAT")
    files = {name: sep.separate_file(tmp_path / "mix.wav", tmp_path / name, subtype="FLOAT", clip="none")
             for name, sep in (("one", one), ("two", two))}
    for stem, path in files["one"].items():
        assert np.abs(sf.read(files["two"][stem])[0] - sf.read(path)[0]).max() <= 1e-5


def test_cli_rejects_a_bad_lane_count(tiny_paths, tmp_path, capsys):
    import soundfile as sf

    from stemforge.cli import main

    sf.write(tmp_path / "mix.wav", np.full((1000, 2), 0.1, np.float32), 44100)
    code = main(["separate", str(tmp_path / "mix.wav"), "--checkpoint", str(tiny_paths["checkpoint"]),
                 "--config", str(tiny_paths["config"]), "--lanes", "0", "-o", str(tmp_path / "out"), "-q"])
    assert code != 0 and "--lanes must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
