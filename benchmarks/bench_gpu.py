"""GPU benchmark: the shipped models on CUDA, per backend and precision.

For each (model, backend, precision) it reports
- agreement: SDR (dB) of the CUDA output against the same model in fp32 on this machine's CPU, on the
  bundled 15 s example (how far the GPU path, bf16/fp16 above all, moves the result);
- real-time factor of ``Separator.separate_file`` (decode, network, soft mask, encode: what
  ``stemforge separate`` does) on the example repeated to each ``--minutes`` length, median of
  ``--repeats`` runs after one warm-up;
- peak GPU memory (``torch.cuda.max_memory_allocated``) of that call for each length: bounded memory
  means the long input peaks no higher than the short one (one untimed run on the shortest length
  first, so cuDNN's tuning of each new shape is neither timed nor counted);
- the batch size ``--batch-size auto`` picked;
- start-up: building the ``Separator`` and its first separation, the 15 s example (loading the
  weights, cuDNN's tuning, compilation with ``--backends compile``).

Needs a CUDA GPU. Writes ``benchmarks/results/gpu.md`` (or ``--write``) with the GPU and command.

    python benchmarks/bench_gpu.py
    python benchmarks/bench_gpu.py --models default-base --precisions fp32 bf16 --minutes 1 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemforge.eval.metrics import global_sdr

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "example.flac"


def long_input(tmp: Path, mix: np.ndarray, rate: int, minutes: float) -> Path:
    """The example ``mix [channels, samples]`` repeated to ``minutes``, as a 16-bit wav in ``tmp``."""
    repeats = int(np.ceil(minutes * 60 * rate / mix.shape[1]))
    audio = np.tile(mix, (1, repeats))[:, : int(minutes * 60 * rate)]
    path = tmp / f"input_{minutes:g}min.wav"
    sf.write(path, audio.T, rate, subtype="PCM_16")
    return path


def time_file(sep, path: Path, out: Path, repeats: int) -> tuple[float, int]:
    """Median seconds of ``sep.separate_file(path)`` over ``repeats`` runs, and the peak GPU bytes."""
    times = []
    torch.cuda.reset_peak_memory_stats(sep.device)
    for _ in range(repeats):
        torch.cuda.synchronize(sep.device)
        start = time.perf_counter()
        sep.separate_file(path, out)
        torch.cuda.synchronize(sep.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), torch.cuda.max_memory_allocated(sep.device)


def measure(model: str, backend: str, precision: str, minutes: list[float], repeats: int,
            reference: np.ndarray, mix: np.ndarray, tmp: Path) -> dict:
    from stemforge import Separator

    start = time.perf_counter()
    sep = Separator(model, device="cuda", precision=precision, backend=backend)
    first = sep.separate_mix(mix)
    torch.cuda.synchronize(sep.device)
    row = dict(model=model, backend=backend, precision=precision, batch=sep.batch_size,
               startup=time.perf_counter() - start, agreement=global_sdr(reference, first))  # all stems at once
    paths = [long_input(tmp, mix, sep.sample_rate, m) for m in minutes]
    # warm-up on full batches: cuDNN tunes each new shape (with workspaces that would count as peak memory)
    sep.separate_file(paths[0], tmp / "out")
    for m, path in zip(minutes, paths):
        seconds, peak = time_file(sep, path, tmp / "out", repeats)
        row[f"rtf_{m:g}"] = seconds / (m * 60)
        row[f"peak_{m:g}"] = peak
    del sep
    torch.cuda.empty_cache()
    return row


def table(rows: list[dict], minutes: list[float]) -> str:
    head = ["model", "backend", "precision", "batch", "start-up s", "agreement dB"]
    head += [f"RTF {m:g} min" for m in minutes] + [f"peak GPU MiB {m:g} min" for m in minutes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["backend"], r["precision"], str(r["batch"]), f"{r['startup']:.1f}",
                 f"{r['agreement']:.1f}"]
        cells += [f"{r[f'rtf_{m:g}']:.4f}" for m in minutes]
        cells += [f"{r[f'peak_{m:g}'] / 2**20:.0f}" for m in minutes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["default-base", "default", "drums"])
    parser.add_argument("--backends", nargs="+", default=["eager"], choices=("eager", "compile"))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--minutes", nargs="+", type=float, default=[3, 12])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, default=REPO / "benchmarks" / "results" / "gpu.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU")

    from stemforge import Separator
    from stemforge.audio import load_audio

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            cpu = Separator(model, device="cpu", precision="fp32")
            mix = load_audio(EXAMPLE, sample_rate=cpu.sample_rate, channels=cpu.config.audio.num_channels)
            reference = cpu.separate_mix(mix)
            del cpu
            for backend in args.backends:
                for precision in args.precisions:
                    rows.append(measure(model, backend, precision, args.minutes, args.repeats, reference, mix,
                                        Path(tmp)))
                    print(table(rows[-1:], args.minutes).splitlines()[-1], flush=True)
                    write(args, rows)  # after every row: a run cut short keeps what it measured
    print(args.write.read_text())


def command() -> str:
    """This run's arguments, less ``--write PATH`` (where the table went is not how it was made)."""
    argv = sys.argv[1:]
    if "--write" in argv:
        i = argv.index("--write")
        argv = argv[:i] + argv[i + 2:]
    return " ".join(argv)


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    gpu = torch.cuda.get_device_name()
    text = (f"## GPU: the shipped models on CUDA\n\n{gpu}, PyTorch {torch.__version__}, "
            f"{torch.get_num_threads()} CPU threads. `python benchmarks/bench_gpu.py {command()}`.\n\n"
            f"Agreement: SDR against the same model in fp32 on the CPU, on the 15 s example. RTF: `Separator.separate_file` (decode, network, soft mask, encode) "
            f"on the example repeated to that length, median of {args.repeats} after a warm-up. "
            f"Peak GPU: `torch.cuda.max_memory_allocated` over those runs.\n\n"
            f"{table(rows, args.minutes)}\n")
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(text)


if __name__ == "__main__":
    main()
