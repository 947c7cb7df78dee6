"""Staging: batches reach the device through one reused (CUDA: pinned) host buffer, intact."""

from __future__ import annotations

import pytest
import torch

from stemforge.engine.staging import Staging


def test_cpu_upload_reuses_one_buffer_and_refuses_overflow():
    staging = Staging(3, 2, 16, "cpu")
    a, b = torch.randn(3, 2, 16), torch.randn(2, 2, 16)
    first = staging.upload(a)
    assert torch.equal(first, a) and first.data_ptr() == staging.buffer.data_ptr()
    second = staging.upload(b.transpose(0, 1).contiguous().transpose(0, 1))  # any layout in
    assert torch.equal(second, b) and second.data_ptr() == staging.buffer.data_ptr()
    with pytest.raises(ValueError, match="do not fit"):
        staging.upload(torch.randn(4, 2, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uploads_from_pinned_memory_and_never_overwrite_a_pending_copy():
    staging = Staging(4, 2, 1 << 16, "cuda")
    assert staging.buffer.is_pinned()
    batches = [torch.full((4, 2, 1 << 16), float(i)) for i in range(20)]
    outs = [staging.upload(x) for x in batches]  # each write waits for the previous copy
    torch.cuda.synchronize()
    assert all(bool((o == i).all()) for i, o in enumerate(outs))
