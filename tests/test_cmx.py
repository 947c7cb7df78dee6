"""CMX channel multiplexing: lossless folding, any geometry, r recorded in checkpoints."""

from __future__ import annotations

import pytest
import torch

from stemforge.config import load_config
from stemforge.errors import StemforgeError
from stemforge.models import MDX23C
from stemforge.models.cmx import depth_to_space, space_to_depth

TINY = {"stems": 4, "n_fft": 512, "hop_length": 128, "dim_f": 256, "num_subbands": 4, "num_scales": 2,
        "num_channels": 8, "growth": 8, "bottleneck_factor": 2, "num_blocks_per_scale": 1}


@pytest.mark.parametrize("r", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 3, 17, 29), (2, 16, 64, 65), (3, 1, 5, 3)])
def test_round_trip_is_bit_exact_on_odd_sizes(r, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(r))
    folded = space_to_depth(x, r)
    fp, tp = -(-shape[2] // r), -(-shape[3] // r)
    assert folded.shape == (shape[0], shape[1] * r * r, fp, tp)
    assert torch.equal(depth_to_space(folded, r, shape[2:]), x)


def test_round_trip_with_unet_multiples_is_exact():
    x = torch.randn(2, 4, 63, 61, generator=torch.Generator().manual_seed(0))
    folded = space_to_depth(x, 3, (3 * 4, 3 * 8))
    assert folded.shape[-2:] == (72 // 3, 72 // 3)
    assert torch.equal(depth_to_space(folded, 3, (63, 61)), x)


def test_cmx_r1_is_the_msst_network_bit_for_bit():
    torch.manual_seed(0)
    plain = MDX23C(**TINY)
    torch.manual_seed(0)
    cmx1 = MDX23C(**TINY, cmx=1)
    x = torch.randn(2, 2, 8064, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain(x), cmx1(x))
    assert list(cmx1.state_dict()) == list(plain.state_dict())  # r=1 keeps MSST's layout


@pytest.mark.parametrize("r", [2, 3, 4])
def test_any_geometry_works_with_cmx(r):
    """Odd n_fft, dim_f, hop and chunk: no 'must be divisible' errors, output shape = input shape."""
    model = MDX23C(**{**TINY, "n_fft": 500, "dim_f": 250, "hop_length": 117}, cmx=r)
    x = torch.randn(2, 2, 7001, generator=torch.Generator().manual_seed(r))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 4, 2, 7001) and torch.isfinite(y).all()


def test_cmx_shrinks_the_unet_input():
    plain, cmx2 = MDX23C(**TINY), MDX23C(**TINY, cmx=2)
    spec = plain.stft(torch.zeros(1, 2, 8064))
    seen = {}
    for name, m in (("plain", plain), ("cmx2", cmx2)):
        m.first_conv.register_forward_hook(lambda mod, i, o, name=name: seen.__setitem__(name, o.shape))
        with torch.no_grad():
            m.net(spec)
    assert seen["cmx2"][-2:].numel() * 4 == seen["plain"][-2:].numel()


def test_checkpoint_records_r_and_refuses_other_r():
    state = MDX23C(**TINY, cmx=2).state_dict()
    assert int(state["cmx_reduction"]) == 2
    for other in (None, 1, 3):
        with pytest.raises(StemforgeError, match=r"trained with CMX reduction r=2 but the model is built with r="):
            MDX23C(**TINY, cmx=other).load_state_dict(state)
    plain_state = MDX23C(**TINY).state_dict()
    with pytest.raises(StemforgeError, match=r"r=1 but the model is built with r=4"):
        MDX23C(**TINY, cmx=4).load_state_dict(plain_state)
    MDX23C(**TINY, cmx=2).load_state_dict(state)  # same r loads strict


def test_msst_checkpoint_still_loads_strict(msst_ref):
    from stemforge.checkpoint import load_weights, read_state_dict

    cfg = load_config(msst_ref / "mdx23c_tiny.yaml")
    for model in (MDX23C.from_config(cfg), MDX23C(**TINY, cmx=1)):
        load_weights(model, read_state_dict(msst_ref / "mdx23c_tiny.ckpt"), "ckpt", "cfg")


def test_reduction_out_of_range_is_refused():
    with pytest.raises(StemforgeError, match="1..4"):
        MDX23C(**TINY, cmx=5)
