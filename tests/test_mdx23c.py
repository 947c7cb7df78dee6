"""MDX23C computes exactly what MSST's implementation computes, with the same parameter names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stemforge.checkpoint import load_weights, read_state_dict
from stemforge.config import load_config
from stemforge.errors import StemforgeError
from stemforge.models import MDX23C
from stemforge.models.mdx23c import InstanceNorm

from .conftest import REPO


def _tiny(msst_ref):
    cfg = load_config(msst_ref / "mdx23c_tiny.yaml")
    model = MDX23C.from_config(cfg).eval()
    load_weights(model, read_state_dict(msst_ref / "mdx23c_tiny.ckpt"), "ckpt", "cfg")
    return cfg, model


def test_forward_matches_msst(msst_ref):
    cfg, model = _tiny(msst_ref)
    x = torch.from_numpy(np.load(msst_ref / "mdx23c_tiny_forward_input.npy"))
    expected = np.load(msst_ref / "mdx23c_tiny_forward_output.npy")
    with torch.no_grad():
        y = model(x).numpy()
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < 1e-5


def test_instance_norm_is_torchs_instance_norm():
    """The group-norm kernel computes what nn.InstanceNorm2d(affine=True) does, gradients too, with its parameters."""
    torch.manual_seed(0)
    ours, ref = InstanceNorm(6), torch.nn.InstanceNorm2d(6, affine=True)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.normal_()
    ref.load_state_dict(ours.state_dict())
    x = (3 * torch.randn(3, 6, 10, 14) + 1).requires_grad_()
    y, y_ref = ours(x), ref(x)
    assert (y - y_ref).abs().max() < 1e-5
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, ours.weight, ours.bias], g)
    grads_ref = torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], g)
    for a, b in zip(grads, grads_ref):
        assert (a - b).abs().max() < 1e-4 * max(1.0, b.abs().max().item())


def test_tiny_checkpoint_loads_strict_with_msst_names(msst_ref):
    _, model = _tiny(msst_ref)
    meta = json.loads((msst_ref / "mdx23c_tiny_meta.json").read_text())
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == meta["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == meta["params"]


def test_musdb18_config_has_msst_state_dict_layout(msst_ref):
    cfg = load_config(REPO / "configs" / "mdx23c_musdb18.yaml")
    with torch.device("meta"):
        model = MDX23C.from_config(cfg)
    ref = json.loads((msst_ref / "mdx23c_musdb18_state_dict.json").read_text())
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"] == 111_994_368


def test_stft_split_equals_forward(msst_ref):
    """The engine runs stft / net / istft separately; together they are the forward."""
    _, model = _tiny(msst_ref)
    x = torch.randn(3, 2, 8064, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.istft(model.net(model.stft(x)), x.shape[-1]), model(x))


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "state", None])
def test_wrapped_and_prefixed_checkpoints_load(msst_ref, tmp_path, wrapper):
    cfg, model = _tiny(msst_ref)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "wrapped.ckpt"
    torch.save({wrapper: state, "epoch": 3} if wrapper else state, path)
    fresh = MDX23C.from_config(cfg)
    load_weights(fresh, read_state_dict(path), path, None)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_safetensors_checkpoint_loads(msst_ref, tmp_path):
    from safetensors.torch import save_file

    cfg, model = _tiny(msst_ref)
    path = tmp_path / "m.safetensors"
    save_file(model.state_dict(), str(path))
    fresh = MDX23C.from_config(cfg)
    load_weights(fresh, read_state_dict(path), path, None)
    assert torch.equal(fresh.first_conv.weight, model.first_conv.weight)


def test_pickle_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": Evil()}, path)
    with pytest.raises(StemforgeError, match="pickle"):
        read_state_dict(path)


def test_checkpoint_config_mismatch_is_clear(msst_ref, tmp_path):
    cfg = load_config(REPO / "configs" / "mdx23c_musdb18.yaml")
    model = MDX23C.from_config(cfg)
    with pytest.raises(StemforgeError, match=r"does not match.*--config"):
        load_weights(model, read_state_dict(msst_ref / "mdx23c_tiny.ckpt"), msst_ref / "mdx23c_tiny.ckpt", "x.yaml")


def test_truncated_checkpoint_is_clear(msst_ref, tmp_path):
    data = (msst_ref / "mdx23c_tiny.ckpt").read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StemforgeError, match="cut.ckpt"):
        read_state_dict(path)


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(StemforgeError, match="not found"):
        read_state_dict(tmp_path / "nope.ckpt")
