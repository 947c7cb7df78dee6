"""Helpers shared by the benchmark scripts: FLOP counts, the GEMM ceiling, the CPU and its vector units, BENCHMARKS.md sections."""

from __future__ import annotations

import time
from pathlib import Path


def gflop_per_chunk(config: Path) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from stemforge.config import load_config
    from stemforge.models import MDX23C

    cfg = load_config(config)
    with torch.device("meta"):
        model = MDX23C.from_config(cfg)
    spec = torch.empty(1, 2 * cfg.audio.num_channels, cfg.audio.dim_f, cfg.chunk_size // cfg.audio.hop_length + 1,
                       device="meta")
    with FlopCounterMode(display=False) as counter:
        model.net(spec)
    return counter.get_total_flops() / 1e9


def gemm_gflops(threads: int) -> float:
    """Large-GEMM fp32 ceiling at ``threads``: the best of 10 2048^2 matmuls (a ceiling, so not the median)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048)
    a @ a
    times = []
    for _ in range(10):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * 2048**3 / min(times) / 1e9


def cpu_label() -> str:
    """``stemforge.engine.bench.cpu_name()`` with the CPU's widest vector units (what fp32 and bf16
    convolutions run on), e.g. ``AMD EPYC (AVX2, no AVX-512)``."""
    from stemforge.engine.bench import cpu_name
    from stemforge.engine.precision import cpu_flags

    try:
        flags = cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags = set()
    units = [label for flag, label in (("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX"))
             if flag in flags] or (["AVX2, no AVX-512"] if "avx2" in flags else [])
    return f"{cpu_name()} ({', '.join(units)})" if units else cpu_name()


def replace_section(path: Path, key: str, body: str) -> None:
    """Replace the ``<!-- key:begin -->...<!-- key:end -->`` block of ``path`` by ``body`` (or append it)."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text:
        text = text[: text.index(begin)] + body + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text)


SHIPPED = {"default": "default-base"}
"""Benchmark config name -> the shipped network it times. The engine benchmarks time one network: the
``default`` bag's one-network sibling (the network that was ``default`` before the bag)."""


def model_checkpoint(name: str, config: Path, tmp: Path) -> Path:
    """The shipped weights of ``SHIPPED[name]``; a random-weight checkpoint of ``config`` otherwise."""
    if name in SHIPPED:
        from stemforge import registry

        return registry.fetch_model(SHIPPED[name], progress=False)[0]
    from stemforge.separator import random_checkpoint

    return random_checkpoint(config, tmp / f"{name}.ckpt")
