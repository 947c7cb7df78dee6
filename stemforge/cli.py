"""Command line: ``stemforge separate|models|random-checkpoint|...``.

Heavy modules (torch, audio codecs) are imported inside the commands, so ``stemforge --help``
answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

FORMATS = ("wav", "flac", "mp3")
BACKENDS = ("eager", "compile", "onnx")
BITRATES = (128, 192, 320)


def _add_separate(sub) -> None:
    p = sub.add_parser("separate", help="split songs into stems",
                       description="Split songs into stems. Output: OUT/<model>/<track>/<stem>.<ext>")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="audio files (wav, flac, mp3, ogg, m4a, stem.mp4)")
    p.add_argument("-o", "--out", type=Path, default=Path("separated"), help="output root (default: separated)")
    src = p.add_argument_group("model (default: the 'default' registered model)")
    src.add_argument("-n", "--name", "--model", dest="name", help="registered model name (see `stemforge models`)")
    src.add_argument("--checkpoint", type=Path, help="MSST .ckpt / .safetensors checkpoint")
    src.add_argument("--config", type=Path, help="MSST YAML config the checkpoint was trained with")
    src.add_argument("--allow-unverified", action="store_true", help="accept a download with no published sha256")
    src.add_argument("--drum-kit", action="store_true",
                     help="also split the drums stem into kick, snare, toms, hihat, cymbals (the 'drums' model)")
    eng = p.add_argument_group("engine")
    eng.add_argument("--overlap", type=int, help="chunks per chunk length; hop = chunk/overlap (default: config, else 4)")
    eng.add_argument("--batch-size", default="auto", help="chunks per network call, or auto (default)")
    eng.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps (default: auto)")
    eng.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                     help="network precision; STFT and accumulation stay fp32 (default: auto)")
    eng.add_argument("--window", default="hann", choices=("hann", "msst"),
                     help="overlap-add window; msst reproduces MSST's demix exactly (default: hann)")
    eng.add_argument("--backend", default="eager", choices=BACKENDS,
                     help="eager PyTorch, torch.compile (slow first start, then cached), or ONNX Runtime (fp32)")
    eng.add_argument("--onnx", type=Path, metavar="FILE",
                     help="network from `stemforge export-onnx` for --backend onnx (default: exported into the cache)")
    eng.add_argument("--threads", default="auto",
                     help="CPU threads; auto: the cores not busy with other work (default: auto)")
    eng.add_argument("--lanes", default="auto",
                     help="chunks run at once, each on threads/lanes CPU threads; auto: 2 for a small network "
                          "(<10 M parameters) on a CPU with 2+ threads, else 1 (default: auto)")
    eng.add_argument("--soft-mask", action=argparse.BooleanOptionalAction, default=None,
                     help="share the mixture out among the stems by their magnitudes after the network, "
                          "spatially where the config says (inference.soft_mask_spatial) "
                          "(default: as the model's config says; on for the shipped models)")
    eng.add_argument("--tta", action="store_true",
                     help="test-time augmentation: also run each chunk with its channels swapped and its polarity "
                          "inverted and average (a few hundredths of a dB for three times the network time)")
    eng.add_argument("--in-memory", action="store_true",
                     help="decode the whole file first instead of streaming it (memory grows with the track)")
    out = p.add_argument_group("output")
    out.add_argument("--two-stems", metavar="STEM", help="write STEM and no_STEM (mixture minus STEM)")
    out.add_argument("--stems", help="comma-separated stems to write (default: all)")
    out.add_argument("--format", default="wav", choices=FORMATS)
    out.add_argument("--bitrate", type=int, default=320, choices=BITRATES, help="mp3 bitrate in kbps (default: 320)")
    depth = out.add_mutually_exclusive_group()
    depth.add_argument("--int24", action="store_true", help="24-bit PCM (wav/flac)")
    depth.add_argument("--float32", action="store_true", help="32-bit float (wav)")
    out.add_argument("--clip-mode", default="rescale", choices=("rescale", "clamp", "none"),
                     help="avoid clipping by rescaling the stem, clamping, or not at all (default: rescale)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_separate)


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(func=run_models)


def _add_random_checkpoint(sub) -> None:
    p = sub.add_parser("random-checkpoint", help="write a random-weight checkpoint for a config (demos, tests)")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("-o", "--out", type=Path, required=True, help=".ckpt or .safetensors path")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_random_checkpoint)


def _add_export_onnx(sub) -> None:
    p = sub.add_parser("export-onnx", help="export a model's network to ONNX (for --backend onnx)",
                       description="Export the network (STFT and iSTFT excluded) with a dynamic batch axis, "
                                   "then check it against PyTorch with ONNX Runtime.")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("-o", "--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=run_export_onnx)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure separation speed and memory on this machine (~30 s)",
                       description="Separate a generated clip with a registered model (the shipped default "
                                   "unless --model names another) per backend and precision, each in a fresh "
                                   "process; print real-time factor, peak RSS and, on a GPU, peak GPU memory.")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (default: 10)")
    p.add_argument("--backends", nargs="+", default=["eager", "onnx"], choices=BACKENDS)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16", "fp16"))
    p.add_argument("-n", "--model", default="default", help="registered model to time (default: default)")
    p.add_argument("--config", type=Path, help="time a random-weight model of this config instead")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", default="auto")
    p.set_defaults(func=run_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stemforge", description="Fast music source separation.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_separate(sub)
    _add_models(sub)
    _add_random_checkpoint(sub)
    _add_export_onnx(sub)
    _add_bench(sub)
    for module in _PLUGINS:
        plugin = importlib.import_module(module)
        plugin.add_parser(sub).set_defaults(func=plugin.run)
    return parser


# Subcommands defined next to their code; each module's add_parser(sub) returns its parser and
# run(args) runs it. These modules import only argparse at load time.
_PLUGINS: tuple[str, ...] = ("stemforge.synth.cli", "stemforge.train.cli", "stemforge.train.plot")


def _version() -> str:
    from . import __version__

    return f"stemforge {__version__}"


def track_name(path: Path) -> str:
    """``song.mp3 -> song``; ``song.stem.mp4 -> song``."""
    name = path.name
    return name[: -len(".stem.mp4")] if name.endswith(".stem.mp4") else path.stem


def run_separate(args: argparse.Namespace) -> int:
    from .drumkit import DrumKitSeparator
    from .engine.device import set_threads
    from .errors import StemforgeError
    from .separator import Separator, check_stems

    batch = args.batch_size if args.batch_size == "auto" else _int(args.batch_size, "--batch-size")
    only = [s.strip() for s in args.stems.split(",") if s.strip()] if args.stems else None
    if args.drum_kit and args.two_stems:
        raise StemforgeError("--drum-kit writes every stem and kit piece; it does not combine with --two-stems")
    threads = set_threads(args.threads)
    sep = Separator(args.name, checkpoint=args.checkpoint, config=args.config, device=args.device,
                    precision=args.precision, overlap=args.overlap, batch_size=batch, window=args.window,
                    allow_unverified=args.allow_unverified, backend=args.backend, onnx=args.onnx,
                    lanes=args.lanes, soft_mask=args.soft_mask, tta=args.tta)
    if args.drum_kit:
        sep = DrumKitSeparator(sep, Separator("drums", device=args.device, precision=args.precision,
                                              overlap=args.overlap, batch_size=batch, backend=args.backend,
                                              lanes=args.lanes, soft_mask=args.soft_mask, tta=args.tta))
    check_stems(sep.stems, two_stems=args.two_stems, only=only)  # before any work
    subtype = "FLOAT" if args.float32 else "PCM_24" if args.int24 else "PCM_16"
    song = sep.song if args.drum_kit else sep  # the engine settings are the song model's
    _say(args, f"model {sep.name}: stems {', '.join(sep.stems)} | device {song.device} | backend {song.backend} | "
               f"precision {str(song.dtype).removeprefix('torch.')} | overlap {song.overlap} | "
               f"batch {song.batch_size} | threads {threads} | lanes {song.lanes} | "
               f"soft mask {_describe_mask(song.soft_mask, song.stems)}" + (" | tta on" if song.tta else ""))
    failures = []
    for path in args.inputs:
        try:
            outdir = args.out / sep.name / track_name(path)
            write = dict(stems=only, format=args.format, subtype=subtype, bitrate=args.bitrate, clip=args.clip_mode)
            with _progress_bar(args, track_name(path)) as progress:
                if args.drum_kit:
                    written = sep.separate_file(path, outdir, stream=not args.in_memory, progress=progress, **write)
                else:
                    written = sep.separate_file(path, outdir, two_stems=args.two_stems, stream=not args.in_memory,
                                                progress=progress, **write)
            _say(args, f"wrote {outdir}/ ({', '.join(p.name for p in written.values())})")
        except StemforgeError as exc:
            failures.append((path, str(exc)))
            print(f"error: {exc}", file=sys.stderr)
    if failures and len(args.inputs) > 1:
        print(f"\n{len(failures)} of {len(args.inputs)} file(s) failed:", file=sys.stderr)
        for path, msg in failures:
            print(f"  {path}: {msg}", file=sys.stderr)
    return 1 if failures else 0


def run_export_onnx(args: argparse.Namespace) -> int:
    from .engine.backends import export_onnx, verify_onnx
    from .separator import load_model

    loaded = load_model(args.checkpoint, args.config)
    path = export_onnx(loaded.model, loaded.config.chunk_size, args.out, opset=args.opset)
    diff = verify_onnx(loaded.model, loaded.config.chunk_size, path)
    print(f"wrote {path} (opset {args.opset}, dynamic batch); ONNX Runtime vs PyTorch fp32: max abs diff {diff:.2e}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from .engine.bench import run

    run(seconds=args.seconds, backends=args.backends, precisions=args.precisions, config=args.config,
        device=args.device, threads=args.threads, model=args.model)
    return 0


class _progress_bar:
    """Context manager giving a ``progress(done, total)`` callback drawn as a tqdm bar of chunks."""

    def __init__(self, args: argparse.Namespace, desc: str):
        self.enabled, self.desc, self.bar = not args.quiet, desc, None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="chunk", leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def run_models(args: argparse.Namespace) -> int:
    from . import registry

    print(registry.format_table(list(registry.load_registry().values())))
    return 0


def run_random_checkpoint(args: argparse.Namespace) -> int:
    from .separator import random_checkpoint

    path = random_checkpoint(args.config, args.out, seed=args.seed)
    print(f"wrote random-weight checkpoint {path} for {args.config} (random weights: output is not music)")
    return 0


def _int(value: str, flag: str) -> int:
    from .errors import StemforgeError

    try:
        return int(value)
    except ValueError:
        raise StemforgeError(f"{flag} must be a whole number or 'auto', got '{value}'") from None


def _describe_mask(mask, stems: tuple[str, ...]) -> str:
    """``off``, ``on``, ``on (spatial)`` or ``on (spatial: toms, hihat)`` for a separator's soft mask, then
    the shares of the networks' estimates it keeps, if any (``; keeps vocals 0.1, bass 0.3``)."""
    if mask is None:
        return "off"
    if not mask.spatial:
        text = "on"
    else:
        text = "on (spatial)" if mask.spatial is True else f"on (spatial: {', '.join(stems[i] for i in mask.spatial)})"
    if mask.keep is not None:
        text += "; keeps " + ", ".join(f"{stem} {share:g}" for stem, share in zip(stems, mask.keep) if share)
    return text


def _say(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import StemforgeError

    try:
        return int(args.func(args) or 0)
    except StemforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
