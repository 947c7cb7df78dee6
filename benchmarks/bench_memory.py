"""Peak memory vs track length: the in-memory path (decode all, separate, write) vs streaming.

Each run is ``stemforge separate`` in a fresh process (peak RSS = that process's ru_maxrss) on a
generated PCM16 WAV of each length. Target: streaming peak RSS for 30 minutes <= 1.3x that for
1 minute; the in-memory path grows with the track.

    python benchmarks/bench_memory.py --write benchmarks/results/memory.md   # MSST tiny model, 1 and 30 min
    python benchmarks/bench_memory.py --config configs/mdx23c_small.yaml --minutes 1 10
    python benchmarks/bench_memory.py --model default --minutes 1 10 --modes streaming --extra=--drum-kit \
        --write benchmarks/results/memory_drumkit_bags.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = REPO.parent / "shared" / "reference" / "msst"


def worker(argv: list[str]) -> None:
    import resource

    from stemforge.cli import main

    start = time.perf_counter()
    code = main(argv)
    print(json.dumps({"code": code, "wall_s": time.perf_counter() - start,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def make_wav(path: Path, minutes: float, rate: int = 44100) -> Path:
    """Noise with a slow envelope, written block by block (the driver stays small too)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    total, block = int(minutes * 60 * rate), 10 * rate
    with sf.SoundFile(path, "w", rate, 2, "PCM_16") as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            env = 0.1 + 0.1 * np.sin(2 * np.pi * (start + np.arange(n)) / (7 * rate))[:, None]
            f.write((env * rng.standard_normal((n, 2))).astype(np.float32))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", nargs="+", type=float, default=[1, 30])
    parser.add_argument("--config", type=Path, help="model config (default: the MSST tiny reference model)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: random weights for --config)")
    parser.add_argument("-n", "--model", help="a registered model (e.g. default, a bag) instead of --config")
    parser.add_argument("--modes", nargs="+", default=["in-memory", "streaming"], choices=("in-memory", "streaming"))
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--extra", default="", help="more `stemforge separate` flags, e.g. '--overlap 2'")
    parser.add_argument("--write", type=Path, help="also write the table to this file (e.g. benchmarks/results/"
                        "memory.md, which BENCHMARKS.md and the README quote); without it, only print")
    parser.add_argument("--worker", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker)

    rows, peaks = [], {}
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        config, ckpt = args.config, args.checkpoint
        if args.model:
            if config or ckpt:
                parser.error("give --model or --config/--checkpoint, not both")
            source = ["-n", args.model]
        else:
            if config is None:
                config, ckpt = TINY / "mdx23c_tiny.yaml", TINY / "mdx23c_tiny.ckpt"
            elif ckpt is None:
                from stemforge.separator import random_checkpoint

                ckpt = random_checkpoint(config, tmp / "model.ckpt")
            source = ["--checkpoint", str(ckpt), "--config", str(config)]
        for minutes in args.minutes:
            wav = make_wav(tmp / f"in_{minutes:g}min.wav", minutes)
            for mode in args.modes:
                argv = ["separate", str(wav), "-o", str(tmp / "out"), *source, "-q", "--threads", args.threads,
                        *args.extra.split()]
                if mode == "in-memory":
                    argv.append("--in-memory")
                res = subprocess.run([sys.executable, __file__, "--worker", *argv], capture_output=True, text=True)
                if res.returncode:
                    raise RuntimeError(res.stderr[-3000:])
                r = json.loads(res.stdout.strip().splitlines()[-1])
                peaks[mode, minutes] = r["rss_mb"]
                rows.append(f"| {mode} | {minutes:g} min | {r['rss_mb']:.0f} | {r['wall_s']:.1f} | "
                            f"{r['wall_s'] / (60 * minutes):.3f} |")
                print(rows[-1], flush=True)
    lo, hi = min(args.minutes), max(args.minutes)
    ratios = [f"{mode}: peak RSS {hi:g} min / {lo:g} min = {peaks[mode, hi] / peaks[mode, lo]:.2f}x"
              for mode in args.modes if (mode, lo) in peaks and (mode, hi) in peaks and hi != lo]
    import torch

    command = "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])
    text = "\n".join([
        "# Memory vs track length" + (f" (`stemforge separate {args.extra}`)" if args.extra else ""), "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, load average {load} at the start "
        f"(wall times depend on it; peak RSS does not). Command: `{command}`.",
        (f"Model: the registered `{args.model}`" if args.model else
         f"Model: {config} ({'random weights' if args.checkpoint is None and args.config else ckpt.name})") + "; input: "
        "generated PCM16 stereo WAV at 44.1 kHz; output: one PCM16 WAV per stem (clip mode rescale, so streaming also "
        "spills float32 stems to disk). One run per cell, each `stemforge separate` in a fresh process; "
        "peak RSS = its ru_maxrss.", "",
        "| path | input | peak RSS MiB | wall s | RTF |", "|---|---|---|---|---|", *rows, "",
        *(f"- {r}" for r in ratios), "",
    ])
    print(text)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)


if __name__ == "__main__":
    main()
