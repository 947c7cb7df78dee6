"""``stemforge bench``: how fast and how lean separation is on this machine, in about 30 seconds.

Each backend x precision separates the same generated clip with a registered model (the shipped
``default`` unless ``--model`` names another) or a random-weight model of ``--config``, in a fresh
process (so peak RSS is that run's own), streaming from a WAV to WAVs as ``stemforge separate`` does.
Reported: start-up (model load, export or compile, one warm-up chunk), the real-time factor of the
separation itself (seconds per second of audio), peak RSS and, on a GPU, peak GPU memory (the
allocator's high-water mark: what the GPU holds for tensors, which RSS does not see).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

def run(seconds: float = 10.0, backends=("eager", "onnx"), precisions=("fp32", "bf16"), config=None,
        device: str = "cpu", threads: str = "auto", model: str = "default") -> list[dict]:
    """Measure every backend x precision (ONNX: fp32 only) and print a Markdown table."""
    import numpy as np
    import soundfile as sf

    from ..separator import random_checkpoint
    from .backends import cache_dir
    from .device import set_threads

    n_threads = set_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if config is None:  # the worker loads the registered model by name
            source, config, name = model, "", f"{model} (registered)"
        else:
            source, name = random_checkpoint(config, tmp / "bench.ckpt"), f"{config} (random weights)"
        wav = tmp / "clip.wav"
        noise = 0.2 * np.random.default_rng(0).standard_normal((int(seconds * 44100), 2))
        sf.write(wav, noise.astype(np.float32), 44100)
        env = dict(os.environ, STEMFORGE_CACHE=str(tmp / "cache"),
                   TORCHINDUCTOR_CACHE_DIR=os.environ.get("TORCHINDUCTOR_CACHE_DIR", str(cache_dir("inductor"))))
        print(f"# stemforge bench: {machine(n_threads)}\n# {seconds:g} s clip, config {name}, device {device}\n")
        print(HEADER)
        print("|---" * COLUMNS + "|")
        for backend in backends:
            for precision in precisions:
                if backend == "onnx" and precision != "fp32":
                    continue
                args = [str(source), str(config), str(wav), str(tmp / backend), backend, precision, device, str(n_threads)]
                res = subprocess.run([sys.executable, "-m", "stemforge.engine.bench", *args],
                                     capture_output=True, text=True, env=env)
                if res.returncode:
                    print(f"| {backend} | {precision} | | failed: {res.stderr.strip().splitlines()[-1][:80]} |"
                          + " |" * (COLUMNS - 4))
                    continue
                row = dict(json.loads(res.stdout.strip().splitlines()[-1]), backend=backend, precision=precision)
                row["rtf"] = row["separate_s"] / seconds
                rows.append(row)
                print(_fmt(row), flush=True)
    return rows


HEADER = ("| backend | precision | lanes | start-up s | RTF (separation s / audio s) | peak RSS MiB "
          "| peak GPU MiB |")
COLUMNS = HEADER.count("|") - 1


def _fmt(r: dict) -> str:
    gpu = "-" if r["gpu_mb"] is None else f"{r['gpu_mb']:.0f}"
    return (f"| {r['backend']} | {r['precision']} | {r['lanes']} | {r['startup_s']:.1f} | {r['rtf']:.3f} | "
            f"{r['rss_mb']:.0f} | {gpu} |")


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (elsewhere ``platform.processor()``, or ``?``)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"


def machine(threads: int) -> str:
    import torch

    return f"{cpu_name()}, {threads} torch thread(s), Python {platform.python_version()}, torch {torch.__version__}"


def worker(source: str, config: str, wav: str, out: str, backend: str, precision: str, device: str,
           threads: str) -> dict:
    """One measurement (run in its own process): ``source`` is a checkpoint with its ``config``, or a
    registered model's name when ``config`` is empty. ``gpu_mb`` is None off CUDA."""
    import torch

    from ..separator import Separator

    torch.set_num_threads(int(threads))
    start = time.perf_counter()
    model = dict(checkpoint=source, config=config) if config else dict(model=source)
    sep = Separator(**model, backend=backend, precision=precision, device=device)
    sep.runner(torch.zeros(sep.batch_size, sep.config.audio.num_channels, sep.config.chunk_size))  # compiles here
    loaded = time.perf_counter()
    sep.separate_file(wav, Path(out) / "run")
    done = time.perf_counter()
    on_gpu = sep.device.type == "cuda"
    return {"startup_s": loaded - start, "separate_s": done - loaded, "lanes": sep.lanes,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "gpu_mb": torch.cuda.max_memory_allocated(sep.device) / 2**20 if on_gpu else None}


if __name__ == "__main__":
    print(json.dumps(worker(*sys.argv[1:])))
