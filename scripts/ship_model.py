"""Turn a training run into a model shipped inside the package.

Writes ``stemforge/weights/NAME.safetensors`` (fp32: the run's ``best.ckpt`` or ``last.ckpt``, EMA
weights, or ``raw``: the optimizer's own weights at the last save, from ``resume.pt``; ``auto``:
whichever of ``last`` and ``raw`` scores the higher mean SDR on the whole ``--valid`` songs) and
records its sha256 and size in ``stemforge/registry.json``, whose entry NAME points at the packaged
config ``stemforge/configs/NAME.yaml``. See MODELS.md.

    python scripts/ship_model.py --run runs/default --name default --weights auto --valid corpus/valid \
        --description "4-stem MDX23C trained on the synthetic corpus"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import save_file

from stemforge.audio import atomic_write
from stemforge.checkpoint import load_weights, read_state_dict
from stemforge.config import load_config
from stemforge.models import MDX23C
from stemforge.registry import REGISTRY_PATH, sha256sum
from stemforge.train.checkpointing import load_resume

PACKAGE = REGISTRY_PATH.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="training results folder (holds best.ckpt)")
    p.add_argument("--name", required=True, help="registry name; the config is stemforge/configs/NAME.yaml")
    p.add_argument("--weights", default="best", choices=("best", "last", "raw", "auto"),
                   help="best.ckpt, last.ckpt (EMA weights), raw (the non-averaged weights in resume.pt), or "
                        "auto: the better of last and raw on the --valid songs")
    p.add_argument("--valid", type=Path, help="validation songs (MUSDB layout) for --weights auto")
    p.add_argument("--description", required=True)
    args = p.parse_args()
    if args.weights == "auto" and args.valid is None:
        p.error("--weights auto needs --valid DIR")

    config = PACKAGE / "configs" / f"{args.name}.yaml"
    cfg = load_config(config)
    choice = pick_weights(args.run, cfg, config, args.valid) if args.weights == "auto" else args.weights
    source, state = read_weights(args.run, choice)
    load_weights(MDX23C.from_config(cfg), state, source, config)  # ships only what loads, strict
    weights = PACKAGE / "weights" / f"{args.name}.safetensors"
    with atomic_write(weights) as tmp:
        save_file({k: v.float().contiguous() for k, v in state.items()}, str(tmp))

    entry = {
        "name": args.name, "architecture": "mdx23c", "description": args.description,
        "stems": list(cfg.stems), "sample_rate": cfg.sample_rate, "licence": "MIT (stemforge)",
        "url": None, "sha256": sha256sum(weights), "size": weights.stat().st_size,
        "weights": f"weights/{weights.name}", "config": f"configs/{config.name}",
        "config_sha256": sha256sum(config), "provenance": "Trained by stemforge; recipe in MODELS.md.",
    }
    registry = json.loads(REGISTRY_PATH.read_text())
    names = [e["name"] for e in registry]
    if args.name in names:
        registry[names.index(args.name)] = entry
    else:
        registry.insert(0, entry)
    REGISTRY_PATH.write_text(json.dumps(registry, indent=2) + "\n")
    print(f"wrote {weights} ({entry['size'] / 1e6:.1f} MB, sha256 {entry['sha256'][:12]}...) and {REGISTRY_PATH}")


def read_weights(run: Path, which: str) -> tuple[Path, dict]:
    """``(file, state_dict)`` of ``which`` (best, last or raw) in the training folder ``run``."""
    source = run / ("resume.pt" if which == "raw" else f"{which}.ckpt")
    return source, load_resume(source)["model"] if which == "raw" else read_state_dict(source)


def pick_weights(run: Path, cfg, config: Path, valid: Path) -> str:
    """``last`` (EMA) or ``raw``: the higher mean global SDR on the whole songs in ``valid``.

    Songs separated as users do (the engine at the config's inference overlap, fp32, CPU).
    """
    import tempfile

    import torch

    from stemforge.train.tracks import find_tracks
    from stemforge.train.validate import Separation, validate

    how = Separation(cfg.chunk_size, cfg.inference.num_overlap or 2, 1, torch.device("cpu"))
    scores = {}
    with tempfile.TemporaryDirectory() as cache:
        tracks = find_tracks(valid, cfg.stems, cfg.sample_rate, cache)
        for which in ("last", "raw"):
            source, state = read_weights(run, which)
            model = MDX23C.from_config(cfg)
            load_weights(model, state, source, config)
            per_stem, scores[which] = validate(model.eval(), tracks, cfg.stems, cfg.stems, how, cfg.audio.num_channels)
            print(f"{which:5s} {scores[which]:6.2f} dB mean on {len(tracks)} songs | "
                  + " ".join(f"{k} {v:.2f}" for k, v in per_stem.items()), flush=True)
    best = max(scores, key=scores.get)
    print(f"shipping the {best} weights")
    return best


if __name__ == "__main__":
    main()
