"""Turn a training run into a model shipped inside the package.

Writes ``stemforge/weights/NAME.safetensors`` (``--store``: fp32, fp16 (``--half``) or int8 with a
scale per 32 weights, :mod:`stemforge.quantize`; from the run's ``best.ckpt``
or ``last.ckpt``, EMA weights, or ``raw``: the optimizer's own weights at the last save, from
``resume.pt``; ``auto``: whichever of ``last`` and ``raw`` scores the higher mean SDR on the whole
``--valid`` songs, or nothing at all if the weights NAME ships now score higher still; ``shipped``:
the weights NAME ships now, stored again, e.g. in int8, no ``--run`` needed) and records
its sha256 and size in ``stemforge/registry.json``, whose entry NAME points at the packaged config
(``--config``, default ``stemforge/configs/NAME.yaml``). ``--score-stems`` limits the ``auto`` score
to the stems a specialist is shipped for; with several ``--valid`` folders the score is the mean over
them. With ``--members`` it writes a bag instead (:class:`stemforge.models.StemBag`): registered
networks, each contributing the stems listed after it (``STEM:WEIGHT`` where several members give one
stem, which is then their weighted mean); with ``--valid`` every member (alone, the network only) and
the bag (as users run it: with its config's soft mask, if on) are scored first. See MODELS.md.

    python scripts/ship_model.py --run runs/default --name default --weights auto --valid corpus/valid \
        --description "4-stem MDX23C trained on the synthetic corpus"
    python scripts/ship_model.py --name drums --members drums-base=kick,snare drums-hihat=hihat \
        drums-toms=toms drums-cymbals=cymbals --valid corpus/drums_valid --description "..."
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path

from safetensors.torch import save_file

from stemforge.audio import atomic_write
from stemforge.checkpoint import load_weights, read_state_dict
from stemforge.config import load_config
from stemforge.models import MDX23C
from stemforge.quantize import stored_state
from stemforge.registry import REGISTRY_PATH, config_path, load_registry, sha256sum
from stemforge.train.checkpointing import load_resume

PACKAGE = REGISTRY_PATH.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--run", type=Path, help="training results folder (holds best.ckpt)")
    source.add_argument("--members", nargs="+", metavar="MODEL=STEM,STEM",
                        help="ship a bag of registered networks, each giving the stems listed after it "
                             "(STEM:WEIGHT to weigh a stem that several members give; default weight 1)")
    p.add_argument("--name", required=True, help="registry name")
    p.add_argument("--config", type=Path, help="packaged YAML of the network (default stemforge/configs/NAME.yaml)")
    p.add_argument("--score-stems", help="comma-separated stems that --weights auto scores (default: all)")
    p.add_argument("--weights", default="best", choices=("best", "last", "raw", "auto", "shipped"),
                   help="best.ckpt, last.ckpt (EMA weights), raw (the non-averaged weights in resume.pt), "
                        "auto: the best of last, raw and the weights shipped now on the --valid songs, or "
                        "shipped: the weights registered as --name now (to store them again, e.g. --store int8)")
    p.add_argument("--valid", type=Path, nargs="+",
                   help="validation songs (MUSDB layout folders) for --weights auto and bags")
    p.add_argument("--store", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="how the file stores the weights (they load into the fp32 network): fp16 is half the "
                        "size, int8 under a third (weights in int8 with a scale per 32, the rest fp16)")
    p.add_argument("--half", action="store_const", const="fp16", dest="store", help="the same as --store fp16")
    p.add_argument("--description", required=True)
    args = p.parse_args()
    if args.run is None and args.members is None and args.weights != "shipped":
        p.error("give --run DIR (or --members, or --weights shipped)")
    if args.members:
        return ship_bag(args.name, args.members, args.valid, args.description)
    if args.weights == "auto" and args.valid is None:
        p.error("--weights auto needs --valid DIR")

    if args.config is None and args.weights == "shipped" and args.name in load_registry():
        args.config = config_path(load_registry()[args.name])  # stored again in the network it ships with
    config = (args.config or PACKAGE / "configs" / f"{args.name}.yaml").resolve()
    if config.parent != PACKAGE / "configs":
        p.error(f"--config must be a YAML in {PACKAGE / 'configs'} (it ships with the weights)")
    cfg = load_config(config)
    scored = tuple(args.score_stems.split(",")) if args.score_stems else cfg.stems
    if set(scored) - set(cfg.stems):
        p.error(f"--score-stems: the model outputs {', '.join(cfg.stems)}")
    choice = args.weights
    if choice == "auto":
        choice = pick_weights(args.run, args.name, cfg, config, args.valid, scored)
        if choice == "shipped":
            print(f"kept the shipped {args.name}: the run's weights score lower")
            return None
    weights = PACKAGE / "weights" / f"{args.name}.safetensors"
    if choice == "shipped":
        if not weights.exists():
            p.error(f"--weights shipped: no {weights}")
        source, state = weights, read_state_dict(weights)
    else:
        source, state = read_weights(args.run, choice)
    load_weights(MDX23C.from_config(cfg), state, source, config)  # ships only what loads, strict
    with atomic_write(weights) as tmp:
        save_file(stored_state(state, args.store), str(tmp))

    entry = {
        "name": args.name, "architecture": "mdx23c", "description": args.description,
        "stems": list(cfg.stems), "sample_rate": cfg.sample_rate, "licence": "MIT (stemforge)",
        "url": None, "sha256": sha256sum(weights), "size": weights.stat().st_size,
        "weights": f"weights/{weights.name}", "config": f"configs/{config.name}",
        "config_sha256": sha256sum(config), "provenance": "Trained by stemforge; recipe in MODELS.md.",
    }
    write_entry(entry)
    print(f"wrote {weights} ({entry['size'] / 1e6:.1f} MB, sha256 {entry['sha256'][:12]}...) and {REGISTRY_PATH}")


def write_entry(entry: dict) -> None:
    """Replace the registry entry of the same name, or put ``entry`` first; the registry is validated
    (bags cross-checked) before it is written. Two ship_model runs at once both land their entries:
    the read, change and write happen under :func:`registry_lock`."""
    with registry_lock():
        registry = json.loads(REGISTRY_PATH.read_text())
        names = [e["name"] for e in registry]
        if entry["name"] in names:
            registry[names.index(entry["name"])] = entry
        else:
            registry.insert(0, entry)
        with atomic_write(REGISTRY_PATH) as tmp:
            tmp.write_text(json.dumps(registry, indent=2) + "\n")
            load_registry(tmp)


@contextlib.contextmanager
def registry_lock():
    """Hold an exclusive lock on the folder of ``registry.json`` (a lock on the file itself would not
    do: the write replaces it). On a system without ``fcntl`` (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(REGISTRY_PATH.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_weights(run: Path, which: str) -> tuple[Path, dict]:
    """``(file, state_dict)`` of ``which`` (best, last or raw) in the training folder ``run``."""
    source = run / ("resume.pt" if which == "raw" else f"{which}.ckpt")
    return source, load_resume(source)["model"] if which == "raw" else read_state_dict(source)


def pick_weights(run: Path, name: str, cfg, config: Path, valid: list[Path], scored: tuple[str, ...]) -> str:
    """``last`` (EMA), ``raw`` or ``shipped`` (the weights registered as ``name`` now, if any, in the
    network of the config registered with them): the highest mean global SDR of the ``scored`` stems
    on the whole songs of the ``valid`` folders."""
    candidates = {which: (*read_weights(run, which), cfg, config) for which in ("last", "raw")}
    shipped = PACKAGE / "weights" / f"{name}.safetensors"
    if shipped.exists():  # with the config it ships with now, which may differ (e.g. a narrower network)
        entry = load_registry().get(name)
        now = config_path(entry) if entry is not None else config
        candidates["shipped"] = shipped, read_state_dict(shipped), load_config(now), now
    scores = {}
    for which, (source, state, cfg_used, config_used) in candidates.items():
        model = MDX23C.from_config(cfg_used)
        load_weights(model, state, source, config_used)
        per_stem = score(model, cfg, valid)
        scores[which] = sum(per_stem[s] for s in scored) / len(scored)
        report(which, scores[which], per_stem, valid, "" if scored == cfg.stems else f" ({', '.join(scored)})")
    best = max(scores, key=scores.get)
    print(f"best: the {best} weights ({'all stems' if scored == cfg.stems else ', '.join(scored)} scored)")
    return best


def score(model, cfg, valid: list[Path], masked: bool = False) -> dict[str, float]:
    """Mean global SDR per stem on the whole songs of each ``valid`` folder, averaged over the folders,
    separated as users do (the engine at the config's inference overlap, fp32, CPU); ``masked``: with
    the config's soft mask after the network when the config turns it on."""
    import tempfile

    import torch

    from stemforge.train.tracks import find_tracks
    from stemforge.train.validate import Separation, validate

    mask = cfg.soft_mask_settings if masked and cfg.inference.soft_mask else None
    how = Separation(cfg.chunk_size, cfg.inference.num_overlap or 2, 1, torch.device("cpu"), soft_mask=mask)
    per_folder = []
    for folder in valid:
        with tempfile.TemporaryDirectory() as cache:
            tracks = find_tracks(folder, cfg.stems, cfg.sample_rate, cache)
            per_stem, _ = validate(model.eval(), tracks, cfg.stems, cfg.stems, how, cfg.audio.num_channels)
        if len(valid) > 1:
            report(f"  {folder.name}", sum(per_stem.values()) / len(per_stem), per_stem, [folder])
        per_folder.append(per_stem)
    return {s: sum(p[s] for p in per_folder) / len(per_folder) for s in cfg.stems}


def report(what: str, mean: float, per_stem: dict[str, float], valid: list[Path], of: str = "") -> None:
    stems = " ".join(f"{k} {v:.2f}" for k, v in per_stem.items())
    print(f"{what:20s} {mean:6.2f} dB mean{of} on {' + '.join(map(str, valid))} | {stems}", flush=True)


def ship_bag(name: str, specs: list[str], valid: list[Path] | None, description: str) -> None:
    """Write the registry entry of a bag; ``specs``: ``MODEL=STEM[:WEIGHT],...`` (weight 1 if not given;
    a stem given by several members is their weighted mean)."""
    from stemforge import registry
    from stemforge.separator import load_bag, resolve_model

    members = []
    for spec in specs:
        model, _, stems = spec.partition("=")
        weights = {}
        for item in filter(None, stems.split(",")):
            stem, _, weight = item.partition(":")
            weights[stem] = float(weight or 1.0)
        members.append({"model": model, "weights": weights})
    first = registry.get_model(members[0]["model"])
    entry = {
        "name": name, "architecture": "bag", "description": description, "stems": list(first.stems),
        "sample_rate": first.sample_rate, "licence": first.licence, "url": None, "sha256": None, "size": None,
        "weights": None, "config": None, "provenance": "Trained by stemforge; recipe in MODELS.md.", "members": members,
    }
    parsed = registry._parse_entry(entry, f"bag {name!r}")  # the field rules; write_entry checks the members
    if valid is not None:
        loaded = [resolve_model(m["model"], None, None) for m in members]
        for m in loaded:
            per_stem = score(m.model, m.config, valid)
            report(m.name, sum(per_stem.values()) / len(per_stem), per_stem, valid)
        bag = load_bag(name, loaded, registry.bag_weights(parsed))
        per_stem = score(bag.model, bag.config, valid, masked=True)
        mask = " (soft mask on)" if bag.config.inference.soft_mask else ""
        report(f"bag {name}{mask}", sum(per_stem.values()) / len(per_stem), per_stem, valid)
    write_entry(entry)
    print(f"wrote the bag {name!r} into {REGISTRY_PATH}")


if __name__ == "__main__":
    main()
