"""Int8 storage of shipped weights (`ship_model.py --store int8`): under a third of the fp32 file, read
back as fp32 by every loader, and separating as the fp32 weights do."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file

from stemforge.checkpoint import read_state_dict
from stemforge.eval import global_sdr
from stemforge.quantize import SCALE_SUFFIX, dequantize_int8, quantize_int8
from stemforge.separator import Separator, random_checkpoint

from .test_train_helpers import tiny_config


def test_int8_weights_are_within_half_a_step_of_their_group():
    torch.manual_seed(0)
    # a row of large and a row of small weights, and one row with both: its small ones keep their own step
    weight = torch.randn(3, 8, 3, 3) * torch.tensor([1.0, 1e-3, 1e-3]).view(3, 1, 1, 1)
    weight[2, 0] *= 1e3
    state = {"conv.weight": weight, "conv.bias": torch.randn(3), "dead.weight": torch.zeros(2, 3),
             "steps": torch.tensor(7)}
    stored = quantize_int8(state, group=32)
    assert stored["conv.weight"].dtype == torch.int8 and stored["conv.bias"].dtype == torch.float16
    assert stored["steps"].dtype == torch.int64
    back = dequantize_int8(stored)
    assert set(back) == set(state) and all(v.dtype != torch.int8 for v in back.values())
    scale = stored["conv.weight" + SCALE_SUFFIX]  # [3, 3]: 72 values per row, in groups of 32
    assert scale.shape == (3, 3)
    step = scale.repeat_interleave(32, dim=1)[:, :72].reshape(weight.shape)
    assert ((back["conv.weight"] - weight).abs() <= step / 2 + 1e-9).all()
    rows = stored["conv.weight"].reshape(3, -1).float()
    assert [rows[:, i:i + 32].abs().amax(dim=1).tolist() for i in (0, 32, 64)] == [[127.0] * 3] * 3  # full range
    small = weight[2, 4:]  # not rounded to 0 by the big ones of their row (one scale per row would)
    assert (back["conv.weight"][2, 4:] - small).abs().max() < 0.02 * small.abs().max()
    assert torch.equal(back["dead.weight"], state["dead.weight"])
    assert dequantize_int8(state) is state  # no int8 in it: nothing to undo


def test_an_int8_checkpoint_separates_like_its_fp32_weights(tmp_path):
    config = tiny_config(tmp_path)
    fp32 = random_checkpoint(config, tmp_path / "w.safetensors", seed=1)
    int8 = tmp_path / "w8.safetensors"
    save_file(quantize_int8(read_state_dict(fp32)), str(int8))
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size

    mix = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1)
    stems = [Separator(checkpoint=c, config=config, precision="fp32", batch_size=1).separate_mix(mix)
             for c in (fp32, int8)]
    assert read_state_dict(int8).keys() == read_state_dict(fp32).keys()
    for ref, est in zip(*stems):  # [stems, channels, samples]
        assert not np.array_equal(ref, est)  # the int8 weights are not the fp32 ones ...
        assert global_sdr(ref, est) > 30  # ... yet give the same stems to within 30 dB
