"""Quality vs cost of the engine's knobs on a trained model and MUSDB-layout songs.

* SDR per stem (global SDR, stemforge.eval) and seconds per 3-minute song vs ``--overlap``, and
  with ``--tta`` each overlap also with test-time augmentation (stemforge.engine.tta);
* activation memory (measured peak, stemforge.engine.peak_memory) and speed per batch size;
* SDR cost of bf16/fp16 networks vs fp32: the change in SDR per stem, and the SDR of the
  reduced-precision output taking the fp32 output as reference (how far apart they are).

Songs: ``SONGS/<track>/{mixture,<stem>...}.wav`` (MUSDB18-HQ layout). Writes a Markdown table and
PNG plots (matplotlib, Agg) to ``--out``.

    python benchmarks/bench_overlap.py --checkpoint m.ckpt --config m.yaml --songs musdb18hq/test
    python benchmarks/bench_overlap.py --model drums --songs corpus/test_drums --seconds 12
    python benchmarks/bench_overlap.py ... --overlaps 2 4 8 --batches 1 4 --precisions bf16 --seconds 30
    python benchmarks/bench_overlap.py --model default --songs corpus/test --overlaps 2 3 4 --tta
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_songs(folder: Path, stems: tuple[str, ...], rate: int, seconds: float | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(name, mix [C, S], refs [stems, C, S])]`` at the model's rate, cropped to ``seconds``."""
    from stemforge.audio import load_audio

    songs = []
    for track in sorted(p for p in folder.iterdir() if (p / "mixture.wav").exists()):
        crop = slice(None, int(seconds * rate) if seconds else None)
        mix = load_audio(track / "mixture.wav", rate)[:, crop]
        refs = np.stack([load_audio(track / f"{s}.wav", rate)[:, crop] for s in stems])
        songs.append((track.name, mix, refs))
    if not songs:
        raise SystemExit(f"no <track>/mixture.wav under {folder}")
    return songs


def evaluate(sep, songs) -> tuple[dict[str, float], float, list[np.ndarray]]:
    """Mean SDR per stem, seconds per 3-minute song, and the estimates."""
    from stemforge.eval import mean_sdr, track_sdr

    scores, per_minute, ests = [], [], []
    sep.separate_mix(songs[0][1][:, : sep.config.chunk_size])  # warm-up: first calls set up kernels
    for _, mix, refs in songs:
        start = time.perf_counter()
        est = sep.separate_mix(mix)
        per_minute.append((time.perf_counter() - start) / (mix.shape[-1] / sep.sample_rate / 60))
        scores.append(track_sdr(refs, est, mix, sep.stems))
        ests.append(est)
    per_stem, _ = mean_sdr(scores)
    return per_stem, 3 * statistics.median(per_minute), ests


def sdr(ref: np.ndarray, est: np.ndarray) -> float:
    from stemforge.eval.metrics import global_sdr

    return global_sdr(ref, est)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a registered model (e.g. drums, a bag); or --checkpoint and --config")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--songs", type=Path, required=True, help="folder of MUSDB-layout tracks")
    parser.add_argument("--overlaps", nargs="+", type=int, default=[2, 4, 6, 8, 16])
    parser.add_argument("--tta", action="store_true", help="also score each overlap with test-time augmentation")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp16"], choices=("bf16", "fp16"))
    parser.add_argument("--overlap", type=int, default=4, help="overlap for the batch and precision runs")
    parser.add_argument("--seconds", type=float, help="crop every song to this many seconds")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="eager")
    parser.add_argument("--threads", default="auto", help="CPU threads (default: stemforge's auto)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "overlap")
    parser.add_argument("--precision-songs", type=int, help="score precisions on the first N songs only (slow on CPUs without AMX)")
    parser.add_argument("--label", help="title of the table (default: the model's or checkpoint's name)")
    args = parser.parse_args()
    if bool(args.model) == bool(args.checkpoint and args.config):
        parser.error("give --model NAME, or --checkpoint and --config")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from stemforge.engine.device import set_threads
    from stemforge.engine.peak_memory import peak_bytes
    from stemforge.separator import Separator

    threads = set_threads(args.threads)
    def separator(**kw) -> Separator:
        base = dict(model=args.model, checkpoint=args.checkpoint, config=args.config, device=args.device, backend=args.backend,
                    precision="fp32", batch_size=1, overlap=args.overlap)
        return Separator(**{**base, **kw})

    ref_sep = separator()
    stems = ref_sep.stems
    songs = load_songs(args.songs, stems, ref_sep.sample_rate, args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.model or args.checkpoint.name
    lines = [f"# Overlap, batch and precision: {args.label or name}", "",
             f"Machine: {platform.processor() or platform.machine()}, device {ref_sep.device}, {threads} CPU thread(s), "
             f"torch {torch.__version__}. "
             f"Command: `python {' '.join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])}`.",
             f"Model {name}; {len(songs)} song(s) from {args.songs}"
             + (f", cropped to {args.seconds:g} s" if args.seconds else "") + ". SDR: global SDR in dB, mean over songs.", ""]

    # overlap: quality vs time
    by_overlap, with_tta = {}, {}
    for overlap in args.overlaps:
        per_stem, seconds, _ = evaluate(separator(overlap=overlap), songs)
        by_overlap[overlap] = (per_stem, seconds)
        print(f"overlap {overlap}: {per_stem} {seconds:.1f} s/3-min song", flush=True)
        if args.tta:
            per_stem, seconds, _ = evaluate(separator(overlap=overlap, tta=True), songs)
            with_tta[overlap] = (per_stem, seconds)
            print(f"overlap {overlap} + tta: {per_stem} {seconds:.1f} s/3-min song", flush=True)
    lines += ["## SDR and time vs overlap (fp32, batch 1)" + (", with and without test-time augmentation" if args.tta
                                                             else ""), "",
              "| overlap | " + " | ".join(f"{s} dB" for s in stems) + " | mean dB | s per 3-min song |",
              "|---" * (len(stems) + 3) + "|"]
    rows = [(str(o), by_overlap[o]) for o in args.overlaps] + [(f"{o} + tta", with_tta[o]) for o in with_tta]
    for label, (per_stem, seconds) in rows:
        values = [per_stem.get(s, float("nan")) for s in stems]
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {np.nanmean(values):.2f} | {seconds:.1f} |")

    # batch: memory and time
    lines += ["", f"## Batch size (fp32, overlap {args.overlap})", "",
              "| batch | activation peak MiB | s per 3-min song |", "|---|---|---|"]
    mem = {}
    for batch in args.batches:
        sep = separator(batch_size=batch)
        x = torch.zeros(batch, sep.config.audio.num_channels, sep.config.chunk_size)
        mem[batch] = peak_bytes(lambda: sep.runner(x), sep.device) / 2**20
        _, seconds, _ = evaluate(sep, songs)
        lines.append(f"| {batch} | {mem[batch]:.0f} | {seconds:.1f} |")
        print(lines[-1], flush=True)

    # precision: SDR cost
    songs = songs[: args.precision_songs] if args.precision_songs else songs
    base, _, base_ests = evaluate(separator(), songs)
    lines += ["", f"## Reduced precision vs fp32 (overlap {args.overlap}, {len(songs)} song(s))", "",
              "| precision | " + " | ".join(f"{s} dSDR" for s in stems) + " | SDR vs fp32 output dB | s per 3-min song |",
              "|---" * (len(stems) + 3) + "|"]
    deltas = {}
    for precision in args.precisions:
        per_stem, seconds, ests = evaluate(separator(precision=precision), songs)
        deltas[precision] = [per_stem.get(s, np.nan) - base.get(s, np.nan) for s in stems]
        agreement = statistics.mean(sdr(b, e) for b, e in zip(base_ests, ests))
        lines.append(f"| {precision} | " + " | ".join(f"{d:+.3f}" for d in deltas[precision])
                     + f" | {agreement:.1f} | {seconds:.1f} |")
        print(lines[-1], flush=True)

    plot(plt, args.out, stems, by_overlap, mem, deltas)
    where = args.out.resolve()
    where = where.relative_to(REPO) if where.is_relative_to(REPO) else where
    lines += ["", "Plots: " + ", ".join(f"`{where / p}.png`" for p in ("sdr_vs_overlap", "time_vs_overlap",
                                                                      "memory_vs_batch", "precision_dsdr")), ""]
    (args.out / "overlap.md").write_text("\n".join(lines))
    print("\n".join(lines))


def plot(plt, out: Path, stems, by_overlap, mem, deltas) -> None:
    overlaps = list(by_overlap)
    fig, ax = plt.subplots()
    for s in stems:
        ax.plot(overlaps, [by_overlap[o][0].get(s, np.nan) for o in overlaps], marker="o", label=s)
    ax.set(xlabel="overlap", ylabel="SDR (dB)", title="SDR vs overlap")
    ax.legend()
    fig.savefig(out / "sdr_vs_overlap.png", dpi=120)
    fig, ax = plt.subplots()
    ax.plot(overlaps, [by_overlap[o][1] for o in overlaps], marker="o")
    ax.set(xlabel="overlap", ylabel="seconds per 3-minute song", title="Time vs overlap")
    fig.savefig(out / "time_vs_overlap.png", dpi=120)
    fig, ax = plt.subplots()
    ax.plot(list(mem), list(mem.values()), marker="o")
    ax.set(xlabel="batch size", ylabel="activation peak (MiB)", title="Memory vs batch")
    fig.savefig(out / "memory_vs_batch.png", dpi=120)
    fig, ax = plt.subplots()
    width = 0.8 / max(len(deltas), 1)
    for i, (p, d) in enumerate(deltas.items()):
        ax.bar(np.arange(len(stems)) + i * width, d, width, label=p)
    ax.set_xticks(np.arange(len(stems)) + width * (len(deltas) - 1) / 2, stems)
    ax.set(ylabel="SDR change vs fp32 (dB)", title="Reduced precision")
    ax.legend()
    fig.savefig(out / "precision_dsdr.png", dpi=120)
    plt.close("all")


if __name__ == "__main__":
    main()
