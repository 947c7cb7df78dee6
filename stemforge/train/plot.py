"""``stemforge plot-training RESULTS``: loss and validation SDR curves from ``log.jsonl`` to a PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from ..errors import StemforgeError
from .log import read_log


def plot_training(results: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``RESULTS/log.jsonl`` to ``out`` (default ``RESULTS/training.png``); returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = Path(results)
    log = results / "log.jsonl"
    if not log.is_file():
        raise StemforgeError(f"no training log at '{log}'; pass the --results folder of a run")
    records = read_log(log)
    steps = [r for r in records if "loss" in r]
    valids = [r for r in records if r.get("kind") == "valid"]
    fig, (ax_loss, ax_sdr) = plt.subplots(2, 1, figsize=(9, 7), constrained_layout=True)
    _plot_loss(ax_loss, steps)
    _plot_sdr(ax_sdr, valids)
    out = Path(out) if out else results / "training.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_loss(ax, steps: list[dict]) -> None:
    import numpy as np

    x = np.array([r["step"] for r in steps])
    y = np.array([r["loss"] for r in steps])
    ax.plot(x, y, lw=0.6, alpha=0.4, label="loss")
    if len(y) >= 10:
        k = max(5, len(y) // 50)
        ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="training loss", title="Training loss")
    ax.grid(alpha=0.3)
    ax.legend()


def _plot_sdr(ax, valids: list[dict]) -> None:
    import numpy as np

    x = [r["step"] for r in valids]
    for stem in dict.fromkeys(k for r in valids for k in r["sdr"]):
        ax.plot(x, [r["sdr"].get(stem, np.nan) for r in valids], marker=".", label=stem)
    if valids:
        ax.plot(x, [r["mean_sdr"] for r in valids], color="k", lw=2, marker="o", label="mean")
    ax.set(xlabel="step", ylabel="global SDR (dB)", title="Validation SDR")
    ax.grid(alpha=0.3)
    if valids:
        ax.legend(ncol=3)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``plot-training`` on the main CLI's subparsers."""
    parser = subparsers.add_parser("plot-training", help="plot loss and SDR curves of a training run")
    parser.add_argument("results", help="the --results folder of a run")
    parser.add_argument("-o", "--output", default=None, help="PNG path (default RESULTS/training.png)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        print(plot_training(args.results, args.output))
    except StemforgeError as exc:
        print(f"stemforge plot-training: error: {exc}", file=sys.stderr)
        return 2
    return 0
