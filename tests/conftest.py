"""Shared fixtures: paths to ../shared and small generated models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stemforge.engine.device import set_threads

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MSST_REF = SHARED / "reference" / "msst"
DEV_DATA = SHARED / "data" / "dev"


@pytest.fixture
def msst_ref() -> Path:
    if not MSST_REF.is_dir():
        pytest.skip(f"MSST reference outputs not found at {MSST_REF}")
    return MSST_REF


@pytest.fixture(scope="session", autouse=True)
def threads():
    """As many torch threads as idle cores: on a shared machine oversubscription slows tests 10x."""
    before = torch.get_num_threads()
    set_threads("auto")
    yield
    torch.set_num_threads(before)
