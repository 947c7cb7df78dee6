"""``stemforge train`` (also ``python -m stemforge.train`` for torchrun)."""

from __future__ import annotations

import argparse
import sys

from ..errors import StemforgeError

DESCRIPTION = """Train an MDX23C from an MSST-style YAML (audio, model, training, augmentations, inference).
Data: one folder per track with STEM.wav files (MUSDB18-HQ) or NAME.stem.mp4 files (MUSDB18).
Writes RESULTS/last.ckpt, best.ckpt (plain state_dicts), resume.pt, log.jsonl and config.yaml.
Multi-GPU: torchrun --nproc_per_node N -m stemforge.train ... (same arguments)."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True, help="training YAML (MSST layout)")
    parser.add_argument("--data", required=True, help="training tracks folder")
    parser.add_argument("--valid", default=None, help="validation tracks folder (global SDR each epoch)")
    parser.add_argument("--results", required=True, help="output folder for checkpoints and the log")
    parser.add_argument("--resume", action="store_true", help="continue the run in --results exactly where it stopped")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (torchrun: one GPU per process)")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help="start a new run from these weights (.ckpt or .safetensors), to fine-tune; "
                             "optimizer, EMA, LR schedule and step count start afresh")
    parser.add_argument("--widen", action="store_true",
                        help="the --init weights come from a narrower network (smaller model.num_channels / "
                             "growth): embed them so the wider model starts computing what they compute")
    parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="override config values, e.g. --set training.lr=1e-4 training.seed=1; the run's "
                             "config.yaml records the merged config")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` on the main CLI's subparsers."""
    parser = subparsers.add_parser("train", help="train a model (MSST-style YAML)", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from .loop import train

    try:
        train(args.config, args.data, args.results, valid=args.valid, resume=args.resume, device=args.device,
              init=args.init, widen=args.widen, overrides=args.overrides)
    except StemforgeError as exc:
        print(f"stemforge train: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stemforge.train", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return run(add_arguments(parser).parse_args(argv))
