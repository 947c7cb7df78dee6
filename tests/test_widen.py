"""`train --init --widen`: a wider MDX23C starts computing exactly what the narrow one did, then trains."""

from __future__ import annotations

import pytest
import torch

from stemforge.config import load_config
from stemforge.errors import StemforgeError
from stemforge.models import MDX23C
from stemforge.train.cli import main
from stemforge.train.widen import widen_state_dict

from .test_train_helpers import make_dataset, tiny_config

TINY = {"stems": 4, "n_fft": 512, "hop_length": 128, "dim_f": 256, "num_subbands": 4, "num_scales": 2,
        "bottleneck_factor": 2}


def _pair(**kw):
    torch.manual_seed(0)
    narrow = MDX23C(**TINY, num_channels=8, growth=8, **kw).eval()
    for p in narrow.parameters():  # not the default init: norms with weights other than 1 and 0
        p.data.normal_(0, 0.3)
    torch.manual_seed(1)
    wide = MDX23C(**TINY, num_channels=12, growth=10, **kw).eval()
    return narrow, wide


@pytest.mark.parametrize("kw", [{}, {"cmx": 2, "num_blocks_per_scale": 2}, {"norm": "BatchNorm", "act": "elu1.0"}],
                         ids=["plain", "cmx-two-blocks", "batchnorm"])
def test_widened_network_computes_what_the_narrow_one_did(kw):
    narrow, wide = _pair(**kw)
    wide.load_state_dict(widen_state_dict(narrow.state_dict(), wide))
    mix = torch.randn(2, 2, 8064, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = narrow(mix), wide(mix)
    assert sum(p.numel() for p in wide.parameters()) > 1.5 * sum(p.numel() for p in narrow.parameters())
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_what_cannot_be_widened_is_refused_by_name():
    narrow, wide = _pair()
    with pytest.raises(StemforgeError, match="only num_channels and growth may grow"):
        widen_state_dict(wide.state_dict(), narrow, "big.ckpt")  # narrowing
    deeper = MDX23C(**{**TINY, "num_scales": 3}, num_channels=12, growth=10)
    with pytest.raises(StemforgeError, match="big.ckpt.*layers differ"):
        widen_state_dict(narrow.state_dict(), deeper, "big.ckpt")
    grouped = MDX23C(**TINY, num_channels=12, growth=12, norm="GroupNorm4")
    with pytest.raises(StemforgeError, match="GroupNorm"):
        widen_state_dict(MDX23C(**TINY, num_channels=8, growth=8, norm="GroupNorm4").state_dict(), grouped)


def test_train_widen_starts_from_the_narrow_weights_and_trains_the_new_channels(tmp_path, capsys):
    data = make_dataset(tmp_path / "train", tracks=2, seconds=1.5)
    config = tiny_config(tmp_path, **{"training.num_steps": 1, "training.num_epochs": 1, "training.ema_momentum": 0})
    narrow = MDX23C.from_config(load_config(config)).state_dict()
    init = tmp_path / "narrow.ckpt"
    torch.save(narrow, init)
    results = tmp_path / "wide"
    with pytest.warns(UserWarning, match="no --valid data"):
        assert main(["--config", str(config), "--data", str(data), "--results", str(results), "--device", "cpu",
                     "--init", str(init), "--widen", "--set", "model.num_channels=12", "model.growth=10"]) == 0
    trained = torch.load(results / "last.ckpt", weights_only=True)
    lr = 1e-3
    reader = "encoder_blocks.0.tfc_tdf.blocks.0.tfc2.2.weight"  # a conv reading 8 -> 12 channels
    assert trained[reader].shape[1] == 12
    # the old weights sit where they were, moved by one AdamW step; the old outputs' weights on the new
    # inputs (zero at the start) trained
    assert (trained[reader][:8, :8] - narrow[reader]).abs().max() <= 3 * lr
    assert (trained[reader][:8, 8:].abs() > 0).all()

    assert main(["--config", str(config), "--data", str(data), "--results", str(tmp_path / "x"), "--device", "cpu",
                 "--widen"]) == 2
    assert "--init" in capsys.readouterr().err
