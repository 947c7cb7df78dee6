"""Freed memory is kept for reuse: a large buffer allocated again does not page-fault again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource, torch
from stemforge.engine.allocator import keep_freed_memory
kept = keep_freed_memory()
def faults_of_one_buffer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB: above glibc's largest mmap threshold (32 MiB)
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_buffer()
print(json.dumps({"kept": kept, "faults": min(faults_of_one_buffer() for _ in range(6))}))
"""


def _run(keep: str) -> dict:
    env = dict(os.environ, STEMFORGE_KEEP_FREED_MEMORY=keep)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_a_reallocated_large_buffer_is_not_faulted_again():
    kept, default = _run("1"), _run("0")
    assert kept["kept"] and not default["kept"]
    assert default["faults"] > 10_000  # 64 MiB of 4 KiB pages mapped again and zero-filled
    assert kept["faults"] < 1_000  # (the fewest of 6 tries: the kernel sometimes reclaims a page range)
