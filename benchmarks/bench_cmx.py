"""CMX benchmark: one MDX23C training step (forward, L1 loss, backward, Adam) for r = 1, 2, 3, 4.

For each config and r it reports parameters, fwd+bwd FLOPs of the network
(``torch.utils.flop_counter.FlopCounterMode`` on the meta device), memory of a step, and the
median wall time of the following steps (samples/s = batch / median step time). Memory, from the
first step:

* saved activations: bytes of the distinct tensors autograd saves for backward (counted with
  ``torch.autograd.graph.saved_tensors_hooks``; weights excluded);
* peak tensors / peak non-state: ``torch.profiler`` memory profiling (every CPU allocation and
  free, categorised by the profiler): the peak of all live tensors, and the peak of live tensors
  other than weights, gradients and optimizer state (activations plus temporaries).

    python benchmarks/bench_cmx.py                      # both configs, writes benchmarks/results/cmx.md
    python benchmarks/bench_cmx.py --cases small --steps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX, Category, MemoryProfile, MemoryProfileTimeline
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stemforge.config import ModelConfig, load_config  # noqa: E402
from stemforge.models import MDX23C  # noqa: E402

CASES = {
    "musdb18": (REPO / "configs" / "mdx23c_musdb18.yaml", 1),
    "small": (REPO / "configs" / "train_mdx23c_small.yaml", 8),
}
MIB = 2**20


def with_cmx(cfg: ModelConfig, r: int) -> ModelConfig:
    return replace(cfg, audio=replace(cfg.audio, use_cmx=r > 1, cmx_reduction=r))


def count_flops(cfg: ModelConfig, batch: int) -> int:
    """fwd+bwd FLOPs of ``model.net`` (the STFT/iSTFT are FFTs, not counted) on the meta device."""
    with torch.device("meta"):
        model = MDX23C.from_config(cfg)
        frames = cfg.audio.chunk_size // cfg.audio.hop_length + 1
        spec = torch.empty(batch, cfg.audio.num_channels * 2, cfg.audio.dim_f, frames)
    with FlopCounterMode(display=False) as counter:
        model.net(spec).sum().backward()
    return counter.get_total_flops()


def make_step(cfg: ModelConfig, batch: int):
    torch.manual_seed(0)
    model = MDX23C.from_config(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, cfg.audio.num_channels, cfg.audio.chunk_size) * 0.1
    y = torch.randn(batch, len(cfg.stems), cfg.audio.num_channels, cfg.audio.chunk_size) * 0.1

    def step() -> None:
        loss = (model(x) - y).abs().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


class SavedActivations:
    """Counts the bytes of distinct storages autograd saves for backward, weights excluded."""

    def __init__(self, model: torch.nn.Module):
        self.skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.sizes: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.skip:
            self.sizes[storage.data_ptr()] = storage.nbytes()
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)


def profile_memory(step) -> tuple[int, int]:
    """Run ``step`` once under the profiler; return peak bytes of (all tensors, activations).

    Activations are everything but parameters, gradients and optimizer state (the profiler's
    ACTIVATION, TEMPORARY, AUTOGRAD_DETAIL, INPUT and unclassified tensors together, since its
    split between those varies between otherwise similar graphs).
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        step()
    timeline = MemoryProfileTimeline(MemoryProfile(prof.profiler.kineto_results))
    _, sizes = timeline._coalesce_timeline("cpu")  # per time: [0, one column per category]
    state = [_CATEGORY_TO_INDEX[c] + 1 for c in (Category.PARAMETER, Category.GRADIENT, Category.OPTIMIZER_STATE)]
    return max(sum(s) for s in sizes), max(sum(s) - sum(s[i] for i in state) for s in sizes)


def bench(name: str, path: Path, batch: int, r: int, steps: int) -> dict:
    cfg = with_cmx(load_config(path), r)
    flops = count_flops(cfg, batch)
    model, step = make_step(cfg, batch)
    params = sum(p.numel() for p in model.parameters())
    saved = SavedActivations(model)
    with saved.hooks():
        peak, act = profile_memory(step)  # also the warm-up step (allocates Adam's state)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    row = {"case": name, "batch": batch, "r": r, "params": params, "gflops": flops / 1e9, "saved": sum(saved.sizes.values()) / MIB, "peak": peak / MIB,
           "act": act / MIB, "step_s": median, "sps": batch / median, "steps": steps}
    print(row, flush=True)
    return row


def machine() -> str:
    from stemforge.engine.bench import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def table(rows: list[dict]) -> str:
    out = []
    for case in dict.fromkeys(r["case"] for r in rows):
        sub = [r for r in rows if r["case"] == case]
        base = next(r for r in sub if r["r"] == 1)
        out += [(f"\n**{case}** (`{CASES[case][0].relative_to(REPO)}`, batch {sub[0]['batch']}, "
                 f"median of {sub[0]['steps']} timed steps)\n"),
                ("| r | params | fwd+bwd GFLOP | saved activations MiB | vs r=1 | peak tensors MiB "
                 "| peak non-state MiB | vs r=1 | s/step | samples/s | speed vs r=1 |"),
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sub:
            out.append(f"| {r['r']} | {r['params'] / 1e6:.2f} M | {r['gflops']:.0f} | {r['saved']:.0f} | "
                       f"{_less(r['saved'], base['saved'])} | {r['peak']:.0f} | {r['act']:.0f} | "
                       f"{_less(r['act'], base['act'])} | {r['step_s']:.2f} | {r['sps']:.3g} | "
                       f"{r['sps'] / base['sps']:.2f}x |")
    return "\n".join(out)


def _less(value: float, base: float) -> str:
    return "—" if value == base else f"{100 * (1 - value / base):.0f}% less"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--reductions", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 2 for musdb18, 3 for small)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cmx.md"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    start = time.time()
    rows = [bench(c, *CASES[c], r, args.steps or (2 if c == "musdb18" else 3))
            for c in args.cases for r in args.reductions]
    text = "\n".join([
        "# CMX channel multiplexing: training-step cost (CPU)\n",
        f"- machine: {machine()}",
        f"- command: `{' '.join(['python', 'benchmarks/bench_cmx.py', *sys.argv[1:]])}`",
        f"- load average at start: {load:.1f} (other processes share these cores), total runtime {time.time() - start:.0f} s",
        "- step = forward, L1 loss, backward, Adam step; fp32; random input of one chunk (`audio.chunk_size`) per sample",
        ("- memory of the first step: 'saved activations' = distinct tensors autograd saves for backward "
         "(saved_tensors_hooks, weights excluded); torch.profiler memory profiling (CPU allocator events): "
         "'peak tensors' = all live tensors incl. weights, grads, Adam state, 'peak non-state' = live tensors "
         "other than weights, grads and Adam state (activations + temporaries, incl. the r-independent STFT/iSTFT/loss)"),
        "- FLOPs: FlopCounterMode over `model.net` fwd+bwd (convs, linears, matmuls; FFTs not counted)",
        table(rows), "",
    ])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
