"""Two CPU fast paths on the shipped bags, each against what it replaced, in one process.

* the instance norm: ``nn.InstanceNorm2d`` (``instance_norm``: ``batch_norm`` on a reshaped copy) against
  stemforge's :class:`~stemforge.models.mdx23c.InstanceNorm` (PyTorch's group-norm kernel, one group per
  channel: the same parameters and result);
* lanes for a bag: one lane (what ``--lanes auto`` gave a bag whose members add up to 10 M parameters or
  more) against two (``auto`` now judges a bag by its largest member, the network one call runs).

Each row separates the same clip with ``Separator.separate_mix`` (fp32, the config's overlap, soft mask
on, batch auto); the rows take turns, ``--repeats`` times, and the median real-time factor is reported
with its ratio to the first row. The stems of every row are compared with the first row's.

    python benchmarks/bench_cpu_paths.py --models default drums --seconds 30 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import cpu_label, replace_section
from stemforge import Separator
from stemforge.models.mdx23c import InstanceNorm

ROWS = (("nn.InstanceNorm2d", 1), ("group-norm kernel", 1), ("group-norm kernel", 2))


def plain_instance_norm(model: nn.Module) -> nn.Module:
    """``model`` with every stemforge :class:`InstanceNorm` swapped for ``nn.InstanceNorm2d`` (same weights)."""
    for name, child in model.named_children():
        if isinstance(child, InstanceNorm):
            plain = nn.InstanceNorm2d(child.num_features, eps=child.eps, affine=True)
            plain.load_state_dict(child.state_dict())
            setattr(model, name, plain)
        else:
            plain_instance_norm(child)
    return model


def measure(model: str, seconds: float, repeats: int) -> list[dict]:
    mix = (0.2 * np.random.default_rng(0).standard_normal((2, int(seconds * 44100)))).astype(np.float32)
    seps = []
    for norm, lanes in ROWS:
        sep = Separator(model, device="cpu", precision="fp32", lanes=lanes)
        if norm == "nn.InstanceNorm2d":
            plain_instance_norm(sep.loaded.model)
        sep.separate_mix(mix[:, : 4 * 44100])  # warm-up
        seps.append(sep)
    times: list[list[float]] = [[] for _ in ROWS]
    outs = [None] * len(ROWS)
    for _ in range(repeats):
        for i, sep in enumerate(seps):
            t = time.perf_counter()
            outs[i] = sep.separate_mix(mix)
            times[i].append((time.perf_counter() - t) / seconds)
    base = statistics.median(times[0])
    return [dict(model=model, norm=norm, lanes=lanes, rtf=statistics.median(t), ratio=base / statistics.median(t),
                 diff=float(np.abs(out - outs[0]).max()), peak=float(np.abs(outs[0]).max()))
            for (norm, lanes), t, out in zip(ROWS, times, outs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["default", "drums"])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", type=Path, default=Path(__file__).resolve().parent.parent / "BENCHMARKS.md")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = [row for model in args.models for row in measure(model, args.seconds, args.repeats)]
    lines = [
        "### CPU fast paths: the instance norm kernel and lanes for a bag (fp32, overlap 2, soft mask on)",
        "",
        f"Machine: {cpu_label()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}. Command: "
        f"`python benchmarks/bench_cpu_paths.py --models {' '.join(args.models)} --seconds {args.seconds:g} "
        f"--repeats {args.repeats}` ({args.seconds:g} s clip, median of {args.repeats}, rows taking turns).",
        "",
        "| model | instance norm | lanes | real-time factor | speed-up | max abs diff of the stems (peak) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['norm']} | {r['lanes']} | {r['rtf']:.3f} | {r['ratio']:.2f}x | "
              f"{r['diff']:.1e} ({r['peak']:.2f}) |" for r in rows]
    lines += ["", "The last row of each model is what `stemforge separate` runs now (`--lanes auto`); the first is what "
              "it ran before. The stems differ by float rounding only."]
    table = "\n".join(lines)
    print(table)
    replace_section(args.write, "cpu_paths", f"<!-- cpu_paths:begin -->\n## CPU fast paths\n\n{table}\n<!-- cpu_paths:end -->")


if __name__ == "__main__":
    main()
