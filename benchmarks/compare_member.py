"""A candidate for one member of a shipped bag against the member it would replace, song by song.

``ship_model.py --weights auto`` picks a member's weights on the validation folders by the mean SDR of
the network alone. This script answers the question that decides whether the pick ships: with the
candidate in place, does the bag *as users run it* (with its soft mask) do better on held-out songs,
and on how many of them? Both bags separate the same inputs; per stem it prints the shipped and
candidate mean global SDR, their mean paired difference with its standard error, and on how many
songs the candidate scored higher and lower (a difference under 0.005 dB counts as a tie).

Inputs (any number of each):

* ``--views DIR``: folders of songs in the MUSDB layout whose ``mixture.wav`` is what the model takes
  (drum views: a drum stem and its pieces);
* ``--songs DIR``: full songs, of which ``--input`` (default ``drums.wav``) is fed to the model;
* ``--stemgmd DIR``: StemGMD clips (``*_MIX.mp3`` with ``*_PIECE_true.mp3``), as in ``eval_models.py``.

    python benchmarks/compare_member.py --model drums --member drums-toms \
        --candidate runs/drums_to5/candidate-drums-toms.safetensors \
        --songs corpus/test corpus/test_timgm --views corpus/test_drums_quiet corpus/test_drums_mp3 \
        --stemgmd ../shared/data/dev/stemgmd

Scoring as in ``eval_models.py``: global SDR over the whole clip and both channels; a reference 60 dB
below its input is skipped. ``--out FILE`` also writes the table, with the command, to FILE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_models import score, stemgmd_clips  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIE_DB = 0.005


def with_candidate(model: str, member: str, candidate: Path, threads: str):
    """``(shipped, swapped)``: two fp32 Separators of the bag ``model``, the second with ``member``'s
    weights replaced by those in ``candidate`` (loaded strictly into the member's network)."""
    from stemforge import registry
    from stemforge.checkpoint import load_weights, read_state_dict
    from stemforge.engine.device import set_threads
    from stemforge.errors import StemforgeError
    from stemforge.separator import Separator

    set_threads(threads)
    entry = registry.get_model(model)
    names = [m.name for m in registry.bag_members(entry)] if entry.is_bag else []
    if member not in names:
        raise StemforgeError(f"'{model}' has no member '{member}'; its members: {', '.join(names) or 'none'}")
    shipped, swapped = Separator(model, precision="fp32"), Separator(model, precision="fp32")
    net = swapped.loaded.model.members[names.index(member)]
    load_weights(net, read_state_dict(candidate), candidate, registry.config_path(registry.get_model(member)))
    return shipped, swapped


def inputs(args) -> list[tuple[str, list[tuple[str, Path, dict[str, Path]]]]]:
    """``[(set name, [(song, input file, {stem: reference file})])]`` for every folder given."""
    folders = [(f, "mixture.wav") for f in args.views or []] + [(f, args.input) for f in args.songs or []]
    sets = []
    for folder, name in folders:
        songs = sorted(p for p in folder.iterdir() if (p / name).exists())
        sets.append((folder.name, [(s.name, s / name, {t: s / f"{t}.wav" for t in args.stems}) for s in songs]))
    if args.stemgmd:
        sets.append(("StemGMD", [(kit.name, mix, {t: true[t] for t in args.stems})
                                 for kit, mix, true, _ in stemgmd_clips(args.stemgmd)]))
    return sets


def compare(shipped, swapped, songs, rate: int) -> dict[str, dict[str, list[float]]]:
    """``{stem: {"shipped": [sdr per song], "candidate": [...]}}``; songs where a stem is silent are left out."""
    from stemforge.audio import load_audio

    out: dict[str, dict[str, list[float]]] = {}
    for name, path, refs in songs:
        x = load_audio(path, rate)
        truth = {s: load_audio(p, rate) for s, p in refs.items()}
        a = score(truth, dict(zip(shipped.stems, shipped.separate_mix(x))), x)
        b = score(truth, dict(zip(swapped.stems, swapped.separate_mix(x))), x)
        for s in truth:
            if a[s] is not None:
                out.setdefault(s, {"shipped": [], "candidate": []})
                out[s]["shipped"].append(a[s])
                out[s]["candidate"].append(b[s])
        print(f"  {name}: " + ", ".join(f"{s} {b[s] - a[s]:+.2f}" for s in truth if a[s] is not None), flush=True)
    return out


def summary_rows(set_name: str, scores: dict[str, dict[str, list[float]]]) -> list[str]:
    """Markdown rows: set, stem, shipped, candidate, mean difference +- standard error, higher/lower songs."""
    rows = []
    for stem, s in scores.items():
        a, b = np.array(s["shipped"]), np.array(s["candidate"])
        d = b - a
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        up, down = int((d > TIE_DB).sum()), int((d < -TIE_DB).sum())
        rows.append(f"| {set_name} | {stem} | {a.mean():.2f} | {b.mean():.2f} | {d.mean():+.2f} ± {se:.2f} "
                    f"| {up} / {down} of {len(d)} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="drums", help="registered bag (default: drums)")
    p.add_argument("--member", required=True, help="the member the candidate would replace, e.g. drums-toms")
    p.add_argument("--candidate", type=Path, required=True, help="its candidate weights (.safetensors or .ckpt)")
    p.add_argument("--views", type=Path, nargs="+", help="MUSDB-layout folders whose mixture.wav is the input")
    p.add_argument("--songs", type=Path, nargs="+", help="MUSDB-layout folders of full songs; --input is the input")
    p.add_argument("--input", default="drums.wav", help="the input WAV in --songs folders (default: drums.wav)")
    p.add_argument("--stemgmd", type=Path, help="StemGMD clips (as in ../shared/data/dev/stemgmd)")
    p.add_argument("--stems", nargs="+", help="stems to score (default: all the model gives)")
    p.add_argument("--threads", default="2")
    p.add_argument("--out", type=Path, help="also write the table (markdown, with the command) to this file")
    args = p.parse_args()
    if not (args.views or args.songs or args.stemgmd):
        p.error("give --views, --songs or --stemgmd")

    shipped, swapped = with_candidate(args.model, args.member, args.candidate, args.threads)
    args.stems = tuple(args.stems or shipped.stems)
    lines = [f"{args.model}: `{args.member}` shipped against `{args.candidate}` (the bag with its soft mask; dB)", "",
             "| set | stem | shipped | candidate | difference ± s.e. | songs higher / lower |",
             "|---|---|---|---|---|---|"]
    for set_name, songs in inputs(args):
        print(f"{set_name} ({len(songs)} songs): candidate minus shipped", flush=True)
        lines += summary_rows(set_name, compare(shipped, swapped, songs, shipped.sample_rate))
    print("\n".join(lines))
    if args.out:
        command = " ".join(["python", str(Path(__file__).relative_to(REPO))] + sys.argv[1:])
        from stemforge.audio import atomic_write

        with atomic_write(args.out) as tmp:
            Path(tmp).write_text(f"Command: `{command}`.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
