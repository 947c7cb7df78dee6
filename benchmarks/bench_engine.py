"""Engine benchmark: real-time factor and peak RSS of `stemforge separate` vs the plain per-chunk loop.

Every measurement runs in a fresh subprocess (so peak RSS is that run's own), on random-weight
checkpoints and a generated noise clip. Prints a table and writes the engine section of
BENCHMARKS.md.

    python benchmarks/bench_engine.py                       # the full set (long on 2 cores)
    python benchmarks/bench_engine.py --configs small --overlaps 2 4 --batches 1 4
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import gemm_gflops, gflop_per_chunk, model_checkpoint, replace_section  # benchmarks/common.py (this folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # name: (yaml, clip seconds)
    "musdb18": (REPO / "configs" / "mdx23c_musdb18.yaml", 12),
    "small": (REPO / "configs" / "mdx23c_small.yaml", 60),
    "default": (REPO / "stemforge" / "configs" / "default.yaml", 60),  # the shipped default-base network
}


# -- worker: one measurement in its own process ---------------------------------------------

def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import soundfile as sf
    import torch

    from stemforge.engine.runner import ChunkRunner

    import threading

    net_time, lock = [0.0, 0], threading.Lock()  # summed over lanes
    original = ChunkRunner._net

    def timed(self, spec, dtype):
        start = time.perf_counter()
        out = original(self, spec, dtype)
        with lock:
            net_time[0] += time.perf_counter() - start
            net_time[1] += spec.shape[0]
        return out

    ChunkRunner._net = timed
    start = time.perf_counter()
    if args.mode == "stemforge":
        from stemforge.cli import main

        code = main(["separate", args.wav, "-o", args.out, "--checkpoint", args.ckpt, "--config", args.config,
                     "--overlap", str(args.overlap), "--batch-size", str(args.batch), "--precision",
                     args.precision, "--device", "cpu", "--backend", args.backend, "--lanes", str(args.lanes),
                     "--threads", str(torch.get_num_threads()), "--no-soft-mask",  # the plain loop has none
                     "-q"])  # threads: the plain loop's count, not auto
        assert code == 0
    else:
        from stemforge.engine.reference import reference_separate
        from stemforge.separator import load_model

        loaded = load_model(args.ckpt, args.config)
        mix, sr = sf.read(args.wav, dtype="float32")
        model = loaded.model
        forward = model.forward

        def timed_forward(x):
            t = time.perf_counter()
            y = forward(x)
            net_time[0] += time.perf_counter() - t
            net_time[1] += x.shape[0]
            return y

        model.forward = timed_forward
        stems = reference_separate(model, np.ascontiguousarray(mix.T), loaded.config.chunk_size, args.overlap)
        out = Path(args.out) / "reference"
        out.mkdir(parents=True, exist_ok=True)
        for name, audio in zip(loaded.config.stems, stems):
            sf.write(out / f"{name}.wav", audio.T, sr, subtype="PCM_16")
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"wall": wall, "net": net_time[0], "chunks": net_time[1], "rss_mb": rss,
                      "threads": torch.get_num_threads()}))


# -- driver -----------------------------------------------------------------------------------

def prepare(name: str, tmp: Path) -> tuple[Path, Path, Path, float, float]:
    """Checkpoint (shipped, else random), noise clip, network GFLOP per chunk for config ``name``."""
    import numpy as np
    import soundfile as sf
    yaml, seconds = CONFIGS[name]
    ckpt = model_checkpoint(name, yaml, tmp)
    wav = tmp / f"{name}_{seconds}s.wav"
    rng = np.random.default_rng(0)
    sf.write(wav, (0.2 * rng.standard_normal((int(seconds * 44100), 2))).astype(np.float32), 44100)
    return yaml, ckpt, wav, seconds, gflop_per_chunk(yaml)


def measure(mode, yaml, ckpt, wav, overlap, batch, precision, tmp, repeats, backend="eager", lanes=1) -> dict:
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, __file__, "worker", "--mode", mode, "--config", str(yaml), "--ckpt", str(ckpt),
               "--wav", str(wav), "--out", str(tmp / "out"), "--overlap", str(overlap), "--batch", str(batch),
               "--precision", precision, "--backend", backend, "--lanes", str(lanes)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(res.stderr[-2000:])
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def machine() -> str:
    import torch

    from stemforge.engine.bench import cpu_name

    cpu = cpu_name()
    return (f"{cpu}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    for flag in ("--mode", "--config", "--ckpt", "--wav", "--out", "--precision", "--backend"):
        w.add_argument(flag)
    w.add_argument("--lanes", type=int, default=1)
    w.add_argument("--overlap", type=int)
    w.add_argument("--batch", type=int)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--overlaps", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--lanes", nargs="+", type=int, default=[1], help="stemforge rows for each lane count")
    parser.add_argument("--backends", nargs="+", default=["eager"], choices=("eager", "compile", "onnx"),
                        help="stemforge rows for each backend (compile and onnx first run once untimed, to "
                             "compile or export into the cache)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--grid", choices=("full", "cross"), default="full",
                        help="full: every overlap x batch; cross: overlaps at batch 1 and batches at the first overlap")
    parser.add_argument("--write", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--section", default="bench_engine", help="BENCHMARKS.md section to replace")
    args = parser.parse_args()
    if args.cmd == "worker":
        return worker(args)

    import torch

    ceiling = gemm_gflops(torch.get_num_threads())
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in args.configs:
            yaml, ckpt, wav, seconds, gflop = prepare(name, tmp)
            cells = [(o, b) for o in args.overlaps for b in args.batches]
            if args.grid == "cross":
                cells = [(o, 1) for o in args.overlaps] + [(args.overlaps[0], b) for b in args.batches if b != 1]
            refs, warmed = {}, set()
            for overlap, batch in cells:
                if overlap not in refs:
                    refs[overlap] = measure("reference", yaml, ckpt, wav, overlap, 1, "fp32", tmp, args.repeats)
                    rows.append(_row(name, seconds, "plain loop", overlap, 1, "fp32", refs[overlap], gflop, None, 1))
                    print(_fmt(rows[-1]), flush=True)
                for backend in args.backends:
                    if backend != "eager" and backend not in warmed:  # compile / export into the cache, untimed
                        measure("stemforge", yaml, ckpt, wav, overlap, batch, args.precision, tmp, 1, backend)
                        warmed.add(backend)
                    for lanes in args.lanes:
                        r = measure("stemforge", yaml, ckpt, wav, overlap, batch, args.precision, tmp,
                                    args.repeats, backend, lanes)
                        rows.append(_row(name, seconds, f"stemforge {backend}", overlap, batch, args.precision, r,
                                         gflop, refs[overlap], lanes))
                        print(_fmt(rows[-1]), flush=True)
    command = "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])
    write_section(args.write, args.section, rows, ceiling, command, args.repeats)


def _row(name, seconds, engine, overlap, batch, precision, r, gflop, ref, lanes) -> dict:
    return {"config": name, "clip_s": seconds, "engine": engine, "overlap": overlap, "batch": batch,
            "lanes": lanes, "precision": precision, "wall": r["wall"], "rtf": r["wall"] / seconds,
            "rss_mb": r["rss_mb"], "net_share": r["net"] / (r["wall"] * lanes), "gflops": gflop * r["chunks"] / r["net"] if r["net"] else 0.0,
            "speedup": ref["wall"] / r["wall"] if ref else None}


HEADER = "| config | clip | engine | overlap | batch | lanes | precision | RTF | peak RSS MB | network share | network GFLOP/s | vs plain loop |"


def _fmt(r: dict) -> str:
    speed = f"{r['speedup']:.2f}x" if r["speedup"] else "1 (itself)"
    return (f"| {r['config']} | {r['clip_s']} s | {r['engine']} | {r['overlap']} | {r['batch']} | {r['lanes']} | "
            f"{r['precision']} | "
            f"{r['rtf']:.3f} | {r['rss_mb']:.0f} | {100 * r['net_share']:.0f}% | {r['gflops']:.0f} | {speed} |")


def write_section(path: Path, key: str, rows: list[dict], ceiling: float, command: str, repeats: int) -> None:
    """Replace (or add) section ``key`` of BENCHMARKS.md."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    configs = ", ".join(dict.fromkeys(r["config"] for r in rows))
    body = "\n".join([
        begin,
        f"## Engine ({configs}): `stemforge separate` vs the plain per-chunk loop",
        "",
        f"Machine: {machine()}. Large-GEMM fp32 ceiling measured in the same run: {ceiling:.0f} GFLOP/s.",
        f"Command: `{command}` ({repeats} run(s) per cell, median; each run a fresh process).",
        "Random-weight checkpoints (default: the shipped default-base network), noise input. RTF = wall seconds / audio seconds, including model load, "
        "decode, separation and writing PCM16 WAVs. Peak RSS is the process's maxrss. Network share = time in "
        "the network / wall, and with L lanes the network time summed over the lanes / (L x wall); "
        "GFLOP/s = network FLOPs (torch FlopCounterMode) / network time (per lane).",
        "",
        HEADER,
        "|" + "|".join(["---"] * (HEADER.count("|") - 1)) + "|",
        *(_fmt(r) for r in rows),
        end,
    ])
    replace_section(path, key, body)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
