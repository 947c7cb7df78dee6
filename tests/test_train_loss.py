"""The training losses: the batch-SDR term is the SDR the evaluation reports, and it trains."""

from __future__ import annotations

import pytest
import torch

from stemforge.eval import global_sdr
from stemforge.train.loss import SeparationLoss, negative_batch_sdr


def test_batch_sdr_is_minus_the_global_sdr_of_each_stem_averaged():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 2, 2, 1000, generator=g)
    est = ref + 0.1 * torch.randn(3, 2, 2, 1000, generator=g) * torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    per_stem = [global_sdr(ref[:, s], est[:, s]) for s in range(2)]
    assert negative_batch_sdr(est, ref, floor_db=-200).item() == pytest.approx(-sum(per_stem) / 2, abs=1e-4)
    assert negative_batch_sdr(est, ref).item() == pytest.approx(-sum(per_stem) / 2, abs=1.0)  # the -30 dB floor


def test_batch_sdr_weighs_a_quiet_stem_like_a_loud_one():
    ref = torch.randn(2, 2, 2, 500, generator=torch.Generator().manual_seed(1))
    est = 0.5 * ref
    quiet = ref * torch.tensor([1.0, 0.1]).view(1, 2, 1, 1)  # second stem 20 dB down; L1 would weigh it 10x less
    assert negative_batch_sdr(0.5 * quiet, quiet).item() == pytest.approx(negative_batch_sdr(est, ref).item(), abs=0.5)


def test_a_stem_silent_in_the_whole_batch_does_not_dominate():
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 2, 2, 500, generator=g)
    ref[:, 1] = 0.0  # no toms in this batch
    est = ref.clone()
    est[:, 1] = 1e-3 * torch.randn(2, 2, 500, generator=g)  # faint noise where silence is expected
    est[:, 0] = 0.9 * ref[:, 0]
    assert -20 < negative_batch_sdr(est, ref).item() < 0  # the good stem (20 dB) still counts
    assert negative_batch_sdr(est, ref, floor_db=-200).item() > 30  # with no floor the faint noise dominates


def test_batch_sdr_does_not_reward_silence_on_sparse_targets():
    """L1's optimum for a mostly-zero target is zero output; the SDR term prefers the target."""
    ref = torch.zeros(1, 1, 1, 1000)
    ref[..., ::100] = 1.0  # clicks
    silent, half = torch.zeros_like(ref), 0.5 * ref
    assert negative_batch_sdr(half, ref) < negative_batch_sdr(silent, ref)
    loss = SeparationLoss(l1=0.0, sdr=1.0)
    assert loss(half, ref) < loss(silent, ref)


def test_terms_add_with_their_weights():
    g = torch.Generator().manual_seed(2)
    ref, est = torch.randn(2, 4, 2, 800, generator=g), torch.randn(2, 4, 2, 800, generator=g)
    both = SeparationLoss(l1=2.0, sdr=0.5)(est, ref)
    assert both.item() == pytest.approx(2 * (est - ref).abs().mean().item() + 0.5 * negative_batch_sdr(est, ref).item(), rel=1e-5)


def test_sdr_weights_weigh_each_stem():
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 3, 2, 800, generator=g)
    est = ref + torch.randn(2, 3, 2, 800, generator=g) * torch.tensor([0.1, 0.5, 1.0]).view(1, 3, 1, 1)
    per_stem = [negative_batch_sdr(est[:, [k]], ref[:, [k]], floor_db=-200).item() for k in range(3)]
    weights = torch.tensor([1.0, 0.0, 3.0])
    weighted = negative_batch_sdr(est, ref, floor_db=-200, weights=weights).item()
    assert weighted == pytest.approx((per_stem[0] + 3 * per_stem[2]) / 4, rel=1e-5)
    assert negative_batch_sdr(est, ref, floor_db=-200).item() == pytest.approx(sum(per_stem) / 3, rel=1e-5)
    loss = SeparationLoss(l1=0.0, sdr=1.0, sdr_weights=(1.0, 0.0, 3.0))
    assert loss(est, ref).item() == pytest.approx(negative_batch_sdr(est, ref, weights=weights).item(), rel=1e-5)
