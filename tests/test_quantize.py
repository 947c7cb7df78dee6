"""Int8 storage of shipped weights (`ship_model.py --store int8`): a quarter of the fp32 file, read
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


def test_int8_weights_are_within_half_a_step_per_output_channel():
    torch.manual_seed(0)
    state = {"conv.weight": torch.randn(6, 4, 3, 3) * torch.logspace(-3, 0, 6).view(6, 1, 1, 1),
             "conv.bias": torch.randn(6), "dead.weight": torch.zeros(2, 3), "steps": torch.tensor(7)}
    stored = quantize_int8(state)
    assert stored["conv.weight"].dtype == torch.int8 and stored["conv.bias"].dtype == torch.float16
    assert stored["steps"].dtype == torch.int64
    back = dequantize_int8(stored)
    assert set(back) == set(state) and all(v.dtype != torch.int8 for v in back.values())
    scale = stored["conv.weight" + SCALE_SUFFIX]  # [6, 1, 1, 1]: each output channel its own step
    assert ((back["conv.weight"] - state["conv.weight"]).abs() <= scale / 2 + 1e-8).all()
    assert (stored["conv.weight"].abs().amax(dim=(1, 2, 3)) == 127).all()  # the full range per channel
    assert torch.equal(back["dead.weight"], state["dead.weight"])
    assert dequantize_int8(state) is state  # no scales: nothing to undo


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
