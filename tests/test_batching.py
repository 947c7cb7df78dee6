"""Auto batch size from measured memory, and halving the batch on out-of-memory without losing work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemforge.engine import ChunkRunner, separate_tensor
from stemforge.engine import batching
from stemforge.engine.batching import AdaptiveBatch, auto_batch_size, batch_cap, chunk_memory, fit_batch, is_oom
from stemforge.engine.streaming import separate_stream

CPU = torch.device("cpu")


class OomAbove:
    """A fake runner (3 stems = 3 gains of the input) that runs out of memory above ``limit`` chunks."""

    def __init__(self, limit: int, error: Exception):
        self.limit, self.error, self.sizes = limit, error, []

    def __call__(self, chunks: torch.Tensor) -> torch.Tensor:
        if len(chunks) > self.limit:
            raise self.error
        self.sizes.append(len(chunks))
        return chunks[:, None] * torch.tensor([0.5, 1.0, 2.0])[None, :, None, None]


ERRORS = {
    "torch": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "cpu": RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes"),
    "onnxruntime": type("RuntimeException", (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})(
        "Failed to allocate memory for requested buffer of size 123"),
}


@pytest.mark.parametrize("kind", list(ERRORS))
def test_oom_halves_the_batch_and_loses_no_work(kind):
    mix = np.random.default_rng(0).standard_normal((2, 20_000)).astype(np.float32)
    kw = dict(chunk=1000, overlap=4, num_stems=3)
    ref = separate_tensor(OomAbove(99, ERRORS[kind]), mix, batch_size=1, **kw)
    run = OomAbove(2, ERRORS[kind])
    with pytest.warns(RuntimeWarning, match="out of memory"):
        out = separate_tensor(run, mix, batch_size=8, **kw)
    assert torch.equal(out, ref)
    assert max(run.sizes) == 2 and sum(run.sizes) == 83  # every chunk ran exactly once


def test_oom_in_streaming_mode_keeps_the_same_chunks():
    mix = np.random.default_rng(1).standard_normal((2, 9_000)).astype(np.float32)
    kw = dict(chunk=1000, overlap=2, num_stems=3, channels=2)
    ref = torch.cat([s for _, s in separate_stream(OomAbove(99, ERRORS["torch"]), [mix], batch_size=1, **kw)], -1)
    run = OomAbove(1, ERRORS["torch"])
    with pytest.warns(RuntimeWarning):
        out = torch.cat([s for _, s in separate_stream(run, [mix[:, :4000], mix[:, 4000:]], batch_size=4, **kw)], -1)
    assert torch.equal(out, ref) and set(run.sizes) == {1}


def test_single_chunk_oom_and_other_errors_propagate():
    with pytest.raises(torch.OutOfMemoryError):
        AdaptiveBatch(OomAbove(0, ERRORS["torch"]), 4)(torch.zeros(1, 2, 10))
    with pytest.raises(ValueError):
        AdaptiveBatch(OomAbove(0, ValueError("shape")), 4)(torch.zeros(3, 2, 10))


def test_is_oom_recognises_allocators_only():
    assert all(is_oom(e) for e in ERRORS.values()) and is_oom(MemoryError())
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) and not is_oom(ValueError("memory"))


@pytest.fixture(scope="module")
def tiny_runner():
    from stemforge.separator import load_model

    from .conftest import MSST_REF

    if not MSST_REF.is_dir():
        pytest.skip("MSST reference missing")
    loaded = load_model(MSST_REF / "mdx23c_tiny.ckpt", MSST_REF / "mdx23c_tiny.yaml")
    return ChunkRunner(loaded.model, CPU), loaded.config.chunk_size


def test_measured_chunk_memory_is_linear_in_batch(tiny_runner):
    from stemforge.engine.peak_memory import peak_bytes

    run, chunk = tiny_runner
    fixed, per_chunk = chunk_memory(run, chunk, 2, CPU)
    # the output alone is 4 stems x 2 channels x chunk fp32; activations come on top
    assert per_chunk > 4 * 2 * chunk * 4
    four = peak_bytes(lambda: run(torch.zeros(4, 2, chunk)), CPU)
    assert abs(four - (fixed + 4 * per_chunk)) <= 0.1 * four


def test_auto_batch_fits_free_memory_and_cap(tiny_runner, monkeypatch):
    run, chunk = tiny_runner
    fixed, per_chunk = chunk_memory(run, chunk, 2, CPU)
    monkeypatch.setattr(batching, "available_memory", lambda device: 2 * (fixed + 3 * per_chunk + 1))
    assert auto_batch_size(run, chunk, 2, CPU, cap=32) == 3  # half the free memory holds 3 chunks
    assert auto_batch_size(run, chunk, 2, CPU, cap=2) == 2
    assert fit_batch(fixed, per_chunk, free=0, cap=8) == 1  # never below one


def test_cpu_cap_follows_threads():
    assert batch_cap(CPU, threads=2) == 1 and batch_cap(CPU, threads=16) == 4
    assert batch_cap(torch.device("cuda"), threads=2) == 32
