"""The batched overlap-add engine equals a plain per-chunk loop, and MSST mode equals MSST."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemforge.checkpoint import load_weights, read_state_dict
from stemforge.config import load_config
from stemforge.engine import ChunkRunner, separate_tensor
from stemforge.engine.msst import separate_msst
from stemforge.engine.overlap_add import plan_chunks
from stemforge.engine.reference import reference_separate
from stemforge.models import MDX23C

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(request):
    from .conftest import MSST_REF

    if not MSST_REF.is_dir():
        pytest.skip("MSST reference missing")
    cfg = load_config(MSST_REF / "mdx23c_tiny.yaml")
    model = MDX23C.from_config(cfg).eval()
    load_weights(model, read_state_dict(MSST_REF / "mdx23c_tiny.ckpt"), "ckpt", "cfg")
    return cfg, model


def _mix(length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((2, length))).astype(np.float32)


def _engine(model, mix, chunk, overlap, batch):
    return separate_tensor(ChunkRunner(model, CPU), mix, chunk=chunk, overlap=overlap,
                           batch_size=batch, num_stems=model.num_stems).numpy()


@pytest.mark.parametrize("length", [3000, 8064, 8064 * 5 + 1234], ids=["short", "one-chunk", "ragged"])
@pytest.mark.parametrize("overlap", [1, 2, 4])
def test_engine_equals_plain_loop(tiny, length, overlap):
    cfg, model = tiny
    mix = _mix(length)
    fast = _engine(model, mix, cfg.chunk_size, overlap, batch=3)
    ref = reference_separate(model, mix, cfg.chunk_size, overlap)
    assert fast.shape == (4, 2, length)
    assert np.abs(fast - ref).max() < 1e-5


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(1, 3 * 8064), overlap=st.integers(1, 8), batch=st.integers(1, 5))
def test_engine_property_any_length_overlap_batch(tiny, length, overlap, batch):
    cfg, model = tiny
    mix = _mix(length, seed=length)
    fast = _engine(model, mix, cfg.chunk_size, overlap, batch)
    assert fast.shape == (4, 2, length) and np.isfinite(fast).all()
    assert np.abs(fast - reference_separate(model, mix, cfg.chunk_size, overlap)).max() < 1e-5


@given(length=st.integers(1, 10**6), chunk=st.integers(1, 5000), overlap=st.integers(1, 16))
def test_plan_covers_every_sample_equally(length, chunk, overlap):
    plan = plan_chunks(length, chunk, overlap)
    assert plan.pad_left == chunk - plan.hop
    assert plan.pad_right >= plan.pad_left
    assert plan.padded_length == (plan.num_chunks - 1) * plan.hop + chunk
    # the first and last real sample lie at least `border` samples inside the chunk grid
    assert plan.pad_left + length + plan.pad_left <= plan.padded_length


def test_batch_size_does_not_change_result(tiny):
    cfg, model = tiny
    mix = _mix(8064 * 3 + 17)
    outs = [_engine(model, mix, cfg.chunk_size, 4, b) for b in (1, 2, 8)]
    assert np.abs(outs[0] - outs[1]).max() < 1e-5 and np.abs(outs[0] - outs[2]).max() < 1e-5


def test_msst_mode_reproduces_msst_demix(tiny):
    from .conftest import MSST_REF

    cfg, model = tiny
    mix = np.load(MSST_REF / "mdx23c_tiny_demix_input.npy")
    expected = np.load(MSST_REF / "mdx23c_tiny_demix_output.npz")
    out = separate_msst(ChunkRunner(model, CPU), mix, chunk=cfg.chunk_size, overlap=cfg.inference.num_overlap,
                        batch_size=cfg.inference.batch_size, num_stems=4).numpy()
    for i, stem in enumerate(cfg.stems):
        assert np.abs(out[i] - expected[stem]).max() < 1e-5, stem


def test_progress_callback_counts_chunks(tiny):
    cfg, model = tiny
    seen = []
    separate_tensor(ChunkRunner(model, CPU), _mix(8064 * 2), chunk=cfg.chunk_size, overlap=2, batch_size=2,
                    num_stems=4, progress=lambda done, total: seen.append((done, total)))
    total = plan_chunks(8064 * 2, cfg.chunk_size, 2).num_chunks
    assert seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bf16_network_stays_close_to_fp32(tiny):
    cfg, model = tiny
    mix = _mix(8064 * 2)
    fp32 = separate_tensor(ChunkRunner(model, CPU), mix, chunk=cfg.chunk_size, overlap=2, batch_size=2, num_stems=4)
    bf16 = separate_tensor(ChunkRunner(model, CPU, torch.bfloat16), mix, chunk=cfg.chunk_size, overlap=2,
                           batch_size=2, num_stems=4)
    assert bf16.dtype == torch.float32
    err = (bf16 - fp32).pow(2).sum() / fp32.pow(2).sum()
    assert 0 < err < 1e-2  # reduced precision was really used, and stays close


def test_non_finite_reduced_precision_batch_is_rerun_in_fp32(tiny):
    cfg, model = tiny

    class Overflowing(torch.nn.Module):
        """Wraps the model so its network overflows whenever it runs under fp16 autocast."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.num_stems = inner, inner.num_stems
            self.stft, self.istft = inner.stft, inner.istft

        def net(self, spec):
            out = self.inner.net(spec)
            return out * 1e6 if torch.is_autocast_enabled("cpu") else out

    mix = _mix(8064)
    run = ChunkRunner(Overflowing(model), CPU, torch.float16)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = separate_tensor(run, mix, chunk=cfg.chunk_size, overlap=2, batch_size=1, num_stems=4)
    ref = separate_tensor(ChunkRunner(model, CPU), mix, chunk=cfg.chunk_size, overlap=2, batch_size=1, num_stems=4)
    assert torch.isfinite(out).all() and (out - ref).abs().max() < 1e-5


def test_auto_precision_takes_bf16_only_where_it_was_measured_faster():
    from stemforge.engine.precision import bf16_pays_off

    def cpuinfo(vendor, flags):
        return f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu sse2 avx2 {flags}\n\n"

    assert bf16_pays_off(cpuinfo("GenuineIntel", "avx512f avx512_bf16 amx_bf16 amx_tile"))  # Sapphire Rapids
    assert not bf16_pays_off(cpuinfo("GenuineIntel", "avx512f avx512_bf16"))  # slower in bf16 there
    assert bf16_pays_off(cpuinfo("AuthenticAMD", "avx512f avx512_bf16"))  # Zen 4: 1.31x
    assert not bf16_pays_off(cpuinfo("AuthenticAMD", "avx2 fma"))  # Zen 3: no bf16 units
    assert not bf16_pays_off("")
