"""Backends x precisions, per-stage time shares, and the engine vs the plain per-chunk loop.

Every backend/precision cell runs in a fresh process on a random-weight checkpoint: start-up
(load + export/compile + one warm-up chunk), median seconds per chunk (whole runner and network
only), network GFLOP/s (FlopCounterMode FLOPs / network time) against a measured large-GEMM
GFLOP/s at the same thread count, and peak RSS. ``compile`` runs twice on one fresh inductor cache
dir: cold (compiles) and warm (loads the cached graph). The stage table times a streaming
``separate_file`` of a generated clip; decode and encode run on background threads, so the wall
time is below the sum of the stages.

    python benchmarks/bench_backends.py                                  # small config only
    python benchmarks/bench_backends.py --configs small musdb18 --musdb-chunks 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import gemm_gflops, gflop_per_chunk, model_checkpoint  # benchmarks/common.py (this folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("backends", "stages", "plain", "waste", "batch")
TITLES = {"backends": "Backends, precision", "stages": "Stages", "plain": "Engine vs the plain loop",
          "waste": "Waste removed", "batch": "Batch size"}
CONFIGS = {"small": REPO / "configs" / "mdx23c_small.yaml", "musdb18": REPO / "configs" / "mdx23c_musdb18.yaml",
           "default": REPO / "stemforge" / "configs" / "default.yaml"}  # default: the shipped default-base network


# -- workers (each in its own process) ---------------------------------------------------------

def cell(args) -> dict:
    """Start-up, seconds per chunk and network share for one backend x precision."""
    import resource

    import torch

    from stemforge.separator import Separator

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    sep = Separator(checkpoint=args.ckpt, config=args.config, backend=args.backend, precision=args.precision,
                    device="cpu", batch_size=1)
    x = 0.1 * torch.randn(1, 2, sep.config.chunk_size)
    sep.runner(x)
    startup = time.perf_counter() - start
    net_times, backend = [], sep.runner.backend

    def timed(spec, dtype):
        t = time.perf_counter()
        out = backend(spec, dtype)
        net_times.append(time.perf_counter() - t)
        return out

    sep.runner.backend = timed
    chunk_times = []
    for _ in range(args.chunks):
        t = time.perf_counter()
        sep.runner(x)
        chunk_times.append(time.perf_counter() - t)
    return {"startup_s": startup, "chunk_s": statistics.median(chunk_times), "net_s": statistics.median(net_times),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def stages(args) -> dict:
    """Seconds per stage of a streaming separate_file (decode, STFT, network, iSTFT, overlap-add, encode)."""
    import torch

    from stemforge.audio.stream import AudioReader, StemWriter
    from stemforge.engine.streaming import OverlapAddStream
    from stemforge.separator import Separator

    torch.set_num_threads(args.threads)
    spent = defaultdict(float)

    def timed(fn, key):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        return wrapper

    def timed_iter(items, key):
        it = iter(items)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                spent[key] += time.perf_counter() - t
                return
            spent[key] += time.perf_counter() - t
            yield item

    original_iter = AudioReader.__iter__
    AudioReader.__iter__ = lambda self: timed_iter(original_iter(self), "decode")
    StemWriter.write = timed(StemWriter.write, "encode")
    StemWriter.commit = timed(StemWriter.commit, "encode")
    OverlapAddStream.push = timed(OverlapAddStream.push, "engine")
    OverlapAddStream.finish = timed(OverlapAddStream.finish, "engine")
    sep = Separator(checkpoint=args.ckpt, config=args.config, precision="fp32", device="cpu", batch_size=1,
                    soft_mask=False, lanes=1)  # one lane: stages run one after another, adding up to the wall
    sep.loaded.model.stft = timed(sep.loaded.model.stft, "STFT")
    sep.runner.backend = timed(sep.runner.backend, "network")
    sep.runner.istft = timed(sep.runner.istft, "iSTFT")
    sep.runner(torch.zeros(1, 2, sep.config.chunk_size))
    spent.clear()
    start = time.perf_counter()
    sep.separate_file(args.wav, Path(args.out))
    wall = time.perf_counter() - start
    spent["overlap-add"] = spent.pop("engine") - spent["STFT"] - spent["network"] - spent["iSTFT"]
    return {"wall_s": wall, **spent}


# -- driver ------------------------------------------------------------------------------------

def spawn(mode: str, env: dict | None = None, **kw) -> dict:
    cmd = [sys.executable, __file__, mode] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def backend_rows(args, tmp: Path) -> list[str]:
    rows = []
    for name in args.configs:
        config = CONFIGS[name]
        ckpt = model_checkpoint(name, config, tmp)
        gflop = gflop_per_chunk(config)
        chunks = args.musdb_chunks if name == "musdb18" else args.chunks
        for backend in args.backends:
            if backend == "compile" and name not in args.compile_configs:
                continue
            for precision in args.precisions:
                if backend == "onnx" and precision != "fp32":
                    continue
                env = dict(os.environ, STEMFORGE_CACHE=str(tmp / "cache"),
                           TORCHINDUCTOR_CACHE_DIR=str(tmp / f"inductor-{name}-{precision}"))
                kw = dict(ckpt=ckpt, config=config, backend=backend, precision=precision, chunks=chunks,
                          threads=args.threads)
                r = spawn("cell", env, **kw)
                start = f"{r['startup_s']:.1f}"
                if backend == "compile":  # second start on the now warm cache
                    start = f"{start} cold / {spawn('cell', env, **kw)['startup_s']:.1f} warm"
                rows.append(f"| {name} | {backend} | {precision} | {start} | {r['chunk_s']:.3f} | {r['net_s']:.3f} | "
                            f"{gflop / r['net_s']:.0f} | {r['rss_mb']:.0f} |")
                print(rows[-1], flush=True)
    return rows


def stage_rows(args, tmp: Path) -> list[str]:
    import numpy as np
    import soundfile as sf

    ckpt = model_checkpoint(args.model, CONFIGS[args.model], tmp)
    wav = tmp / "clip.wav"
    sf.write(wav, (0.2 * np.random.default_rng(0).standard_normal((int(args.stage_seconds * 44100), 2))), 44100)
    runs = [spawn("stages", ckpt=ckpt, config=CONFIGS[args.model], wav=wav, out=tmp / f"stages{i}", threads=args.threads)
            for i in range(args.repeats)]
    r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}  # per-stage medians of fresh processes
    wall = r.pop("wall_s")
    total = sum(r.values())
    rows = [f"| {k} | {v:.2f} | {100 * v / total:.1f}% |" for k, v in r.items()]
    rows.append(f"| sum of stages | {total:.2f} | 100% |")
    rows.append(f"| wall (decode/encode on threads) | {wall:.2f} | {100 * wall / total:.1f}% |")
    return rows


def plain_loop_rows(args) -> list[str]:
    """The engine (batch 1, eager fp32 and onnx) vs reference_separate at overlap 4, in this process."""
    import numpy as np
    import torch

    from stemforge.engine.reference import reference_separate
    from stemforge.separator import Separator

    torch.set_num_threads(args.threads)
    mix = (0.2 * np.random.default_rng(0).standard_normal((2, int(args.plain_seconds * 44100)))).astype(np.float32)
    times, outs = defaultdict(list), {}
    with tempfile.TemporaryDirectory() as d:
        os.environ["STEMFORGE_CACHE"] = d
        ckpt = model_checkpoint(args.model, CONFIGS[args.model], Path(d))
        seps = {b: Separator(checkpoint=ckpt, config=CONFIGS[args.model], precision="fp32", device="cpu", batch_size=1,
                             soft_mask=False, overlap=4, backend=b) for b in ("eager", "onnx")}
        for sep in seps.values():
            sep.separate_mix(mix[:, :44100])  # warm-up
        for _ in range(args.repeats):
            for b, sep in seps.items():
                t = time.perf_counter()
                outs[b] = sep.separate_mix(mix)
                times[b].append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = reference_separate(seps["eager"].loaded.model, mix, seps["eager"].config.chunk_size, 4)
            times["plain"].append(time.perf_counter() - t)
    plain = statistics.median(times["plain"])
    rows = [f"| plain loop | {args.plain_seconds:g} s | {plain:.2f} | 1 (itself) | 0 |"]
    for b in seps:
        t = statistics.median(times[b])
        rows.append(f"| engine, {b} | {args.plain_seconds:g} s | {t:.2f} | {plain / t:.2f}x | "
                    f"{np.abs(outs[b] - ref).max():.1e} |")
    return rows


def waste_rows(args) -> list[str]:
    """Before/after per chunk (small, eager fp32, batch 1): torch.istft vs the engine's iSTFT, and 2 threads
    vs the auto thread count (they differ only while other processes keep cores busy)."""
    import torch

    from stemforge.engine.device import auto_threads
    from stemforge.separator import Separator

    with tempfile.TemporaryDirectory() as d:
        ckpt = model_checkpoint(args.model, CONFIGS[args.model], Path(d))
        sep = Separator(checkpoint=ckpt, config=CONFIGS[args.model], precision="fp32", device="cpu", batch_size=1)
    x = 0.1 * torch.randn(1, 2, sep.config.chunk_size)
    spec = sep.loaded.model.net(sep.loaded.model.stft(x)).detach()

    def median_s(fn, n=args.chunks) -> float:
        fn()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        before = median_s(lambda: sep.loaded.model.istft(spec, sep.config.chunk_size))
        after = median_s(lambda: sep.runner.istft(spec, sep.config.chunk_size))
    rows = [f"| iSTFT per chunk ({args.threads} thread(s)) | torch.istft {1e3 * before:.1f} ms | "
            f"engine iSTFT {1e3 * after:.1f} ms | {before / after:.1f}x |"]
    auto = auto_threads()
    torch.set_num_threads(2)
    two = median_s(lambda: sep.runner(x))
    torch.set_num_threads(auto)
    mine = median_s(lambda: sep.runner(x))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    rows.append(f"| runner per chunk, load {load} | 2 threads {two:.3f} s | auto = {auto} thread(s) {mine:.3f} s | "
                f"{two / mine:.1f}x |")
    torch.set_num_threads(args.threads)
    return rows


def batch_rows(args) -> list[str]:
    """Seconds per chunk and measured activation peak per batch size (small, eager fp32)."""
    import torch

    from stemforge.engine.peak_memory import peak_bytes
    from stemforge.separator import Separator

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        ckpt = model_checkpoint(args.model, CONFIGS[args.model], Path(d))
        sep = Separator(checkpoint=ckpt, config=CONFIGS[args.model], precision="fp32", device="cpu", batch_size=1)
    rows = []
    for batch in args.batch_sizes:
        x = 0.1 * torch.randn(batch, 2, sep.config.chunk_size)
        sep.runner(x)
        times = []
        for _ in range(max(1, args.chunks // batch)):
            t = time.perf_counter()
            sep.runner(x)
            times.append(time.perf_counter() - t)
        peak = peak_bytes(lambda: sep.runner(x), sep.device) / 2**20
        rows.append(f"| {batch} | {statistics.median(times) / batch:.3f} | {peak:.0f} |")
        print(rows[-1], flush=True)
    return rows


def machine(threads: int) -> str:
    import torch

    from stemforge.engine.bench import cpu_name

    cpu = cpu_name()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {threads} torch thread(s), load average {load} at the start, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="driver", choices=("driver", "cell", "stages"))
    parser.add_argument("--configs", nargs="+", default=["small"], choices=list(CONFIGS))
    parser.add_argument("--backends", nargs="+", default=["eager", "compile", "onnx"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--compile-configs", nargs="+", default=["small"],
                        help="configs to compile (the 112M one takes many minutes cold)")
    parser.add_argument("--chunks", type=int, default=5, help="timed chunks per cell (small config)")
    parser.add_argument("--musdb-chunks", type=int, default=2, help="timed chunks per cell (112M config)")
    parser.add_argument("--stage-seconds", type=float, default=30)
    parser.add_argument("--plain-seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: stemforge's auto)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--model", default="small", choices=list(CONFIGS),
                        help="config of the stages, plain, waste and batch sections (default: small)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--write", type=Path, default=REPO / "benchmarks" / "results" / "backends.md")
    for flag in ("--ckpt", "--config", "--backend", "--precision", "--wav", "--out"):
        parser.add_argument(flag)
    args = parser.parse_args()
    if args.threads is None:
        from stemforge.engine.device import auto_threads

        args.threads = auto_threads()
    if args.mode != "driver":
        print(json.dumps((cell if args.mode == "cell" else stages)(args)))
        return
    head = machine(args.threads)
    gemm = gemm_gflops(args.threads)
    command = "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])
    text = ["# " + "; ".join(TITLES[s] for s in args.sections), "",
            f"Machine: {head}. Large-GEMM fp32 (2048^2 matmul, best of 10) at that thread count: {gemm:.0f} GFLOP/s.",
            f"Command: `{command}`. Random weights (default: the shipped default-base network); medians of {args.chunks} chunks (small) / {args.musdb_chunks} "
            "(musdb18) unless said otherwise."]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "backends" in args.sections:
            text += ["", "## Network backends (batch 1, one chunk per call)", "",
                     "| config | backend | precision | start-up s | s/chunk (STFT+net+iSTFT) | s/chunk network | "
                     "network GFLOP/s | peak RSS MiB |", "|---|---|---|---|---|---|---|---|", *backend_rows(args, tmp)]
        if "stages" in args.sections:
            text += ["", f"## Stages of a streaming `separate_file` ({args.model}, eager fp32, one lane, the config's overlap, {args.stage_seconds:g} s clip, median of {args.repeats})",
                     "", "| stage | seconds | share |", "|---|---|---|", *stage_rows(args, tmp)]
    if "plain" in args.sections:
        text += ["", f"## Engine vs the plain per-chunk loop ({args.model}, overlap 4, fp32, batch 1, median of {args.repeats})",
                 "", "| engine | clip | seconds | speed-up | max abs diff vs plain loop |", "|---|---|---|---|---|",
                 *plain_loop_rows(args)]
    if "waste" in args.sections:
        text += ["", f"## Waste removed ({args.model}, eager fp32, batch 1, medians)", "",
                 "| what | before | after | gain |", "|---|---|---|---|", *waste_rows(args)]
    if "batch" in args.sections:
        text += ["", f"## Batch size on the CPU ({args.model}, eager fp32)", "",
                 "| batch | s per chunk | activation peak MiB |", "|---|---|---|", *batch_rows(args)]
    text = "\n".join(text + [""])
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
