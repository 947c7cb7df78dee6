"""Candidates for members of a shipped bag against the members they would replace, song by song.

``ship_model.py --weights auto`` picks a member's weights on the validation folders by the mean SDR of
the network alone. This script answers the question that decides whether the pick ships: with the
candidate in place, does the bag *as users run it* (with its soft mask) do better on held-out songs,
and on how many of them? Per candidate and stem it prints the shipped and candidate mean global SDR,
their mean paired difference with its standard error, and on how many songs the candidate scored
higher and lower (a difference under 0.005 dB counts as a tie). Each candidate is judged alone in the
shipped bag (``--member A B --candidate a b``: two questions, not one bag with both). A candidate
is loaded into its member's network, or, with ``--candidate-config`` (one YAML per candidate), into the
network its own config describes, e.g. a wider one; it must separate as the bag does (the same audio
and inference settings and stems).

Every network runs once per song: the bag's members and the candidates, each without the soft mask;
each bag to score is then the members' raw estimates mixed with the bag's weights (one candidate's in
its member's place) and filtered by ``Separator.post_filter``, which tests/test_bag.py proves equal to
the bag with its soft mask. Four candidates cost two bags' time, not eight.

Inputs (any number of each):

* ``--views DIR``: folders of songs in the MUSDB layout whose ``mixture.wav`` is what the model takes
  (drum views: a drum stem and its pieces), or NI ``NAME.stem.mp4`` files (MUSDB18: streams mixture,
  drums, bass, other, vocals), read stream by stream, e.g. ``../shared/data/dev/*.stem.mp4``;
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_models import score, stemgmd_clips  # noqa: E402

if TYPE_CHECKING:
    from stemforge.separator import Separator

REPO = Path(__file__).resolve().parents[1]
TIE_DB = 0.005


class Audio(NamedTuple):
    """One audio stream of a file: ``stream`` indexes its audio streams (a ``.stem.mp4`` holds five)."""

    path: Path
    stream: int = 0


@dataclass
class Networks:
    """The bag ``bag`` (for its stems, rate and post-filter), its member networks ``members`` and
    ``weights: [members, stems]`` (each stem's column sums to 1), and ``candidates``: ``(index of the
    member it replaces, its network)``. Every network is an fp32 Separator without the soft mask."""

    bag: Separator
    members: list[Separator]
    weights: np.ndarray
    candidates: list[tuple[int, Separator]]


def load_networks(model: str, pairs: list[tuple[str, Path, Path | None]], threads: str) -> Networks:
    """The bag ``model`` and, per ``(member, candidate file, candidate config)``, the candidate's
    network: that member's network with the candidate's weights (loaded strictly), or, with a
    config, the network that config describes (e.g. a wider one)."""
    from stemforge import registry
    from stemforge.checkpoint import load_weights, read_state_dict
    from stemforge.engine.device import set_threads
    from stemforge.errors import StemforgeError
    from stemforge.separator import Separator, check_separates_alike

    set_threads(threads)
    entry = registry.get_model(model)
    names = [m.name for m in registry.bag_members(entry)] if entry.is_bag else []

    def network(name: str) -> Separator:
        return Separator(name, precision="fp32", soft_mask=False)

    bag = Separator(model, precision="fp32")
    candidates = []
    for member, path, config in pairs:
        if member not in names:
            raise StemforgeError(f"'{model}' has no member '{member}'; its members: {', '.join(names) or 'none'}")
        if config is not None:
            net = Separator(checkpoint=path, config=config, precision="fp32", soft_mask=False)
            check_separates_alike(model, bag.loaded, net.loaded)
        else:
            net = network(member)
            load_weights(net.loaded.model, read_state_dict(path), path, registry.config_path(registry.get_model(member)))
        candidates.append((names.index(member), net))
    weights = bag.loaded.model.stem_weights.numpy()  # the StemBag's own [members, stems], normalized per stem
    return Networks(bag, [network(n) for n in names], weights, candidates)


def inputs(args) -> list[tuple[str, list[tuple[str, Audio, dict[str, Audio]]]]]:
    """``[(set name, [(song, input, {stem: reference})])]`` for every folder or ``.stem.mp4`` given."""
    from stemforge.errors import StemforgeError
    from stemforge.train.tracks import stem_mp4_streams

    sets, folders = [], []
    for view in args.views or []:
        if not view.name.endswith(".stem.mp4"):
            folders.append((view, "mixture.wav"))
            continue
        try:
            song, streams = stem_mp4_streams(view, tuple(args.stems))
        except StemforgeError as e:
            raise SystemExit(str(e)) from None
        refs = {t: Audio(view, streams[t]) for t in args.stems}
        sets.append((song, [(song, Audio(view, streams["mixture"]), refs)]))
    for folder, name in folders + [(f, args.input) for f in args.songs or []]:
        songs = sorted(p for p in folder.iterdir() if (p / name).exists())
        sets.append((folder.name, [(s.name, Audio(s / name), {t: Audio(s / f"{t}.wav") for t in args.stems})
                                   for s in songs]))
    if args.stemgmd:
        sets.append(("StemGMD", [(kit.name, Audio(mix), {t: Audio(true[t]) for t in args.stems})
                                 for kit, mix, true, _ in stemgmd_clips(args.stemgmd)]))
    return sets


def mixed(raw: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``raw: members x [stems, channels, samples]`` -> the bag's raw stems, ``sum_m weights[m, s] * raw[m][s]``."""
    return sum(w[:, None, None] * r for w, r in zip(weights, raw))


def compare(nets: Networks, songs, rate: int) -> list[dict[str, dict[str, list[float]]]]:
    """Per candidate ``{stem: {"shipped": [sdr per song], "candidate": [...]}}``; songs where a stem is
    silent are left out."""
    from stemforge.audio import load_audio

    out: list[dict[str, dict[str, list[float]]]] = [{} for _ in nets.candidates]
    for name, source, refs in songs:
        x = load_audio(source.path, rate, stream=source.stream)
        truth = {s: load_audio(a.path, rate, stream=a.stream) for s, a in refs.items()}
        raw = [m.separate_mix(x) for m in nets.members]
        shipped = score(truth, dict(zip(nets.bag.stems, nets.bag.post_filter(x, mixed(raw, nets.weights)))), x)
        line = []
        for scores, (k, net) in zip(out, nets.candidates):
            swapped = raw[:k] + [net.separate_mix(x)] + raw[k + 1:]
            b = score(truth, dict(zip(nets.bag.stems, nets.bag.post_filter(x, mixed(swapped, nets.weights)))), x)
            for s in truth:
                if shipped[s] is not None:
                    scores.setdefault(s, {"shipped": [], "candidate": []})
                    scores[s]["shipped"].append(shipped[s])
                    scores[s]["candidate"].append(b[s])
            line.append(", ".join(f"{s} {b[s] - shipped[s]:+.2f}" for s in truth if shipped[s] is not None))
        print(f"  {name}: " + " | ".join(line), flush=True)
    return out


def summary_rows(member: str, set_name: str, scores: dict[str, dict[str, list[float]]]) -> list[str]:
    """Markdown rows: member, set, stem, shipped, candidate, mean difference +- standard error, higher/lower songs."""
    rows = []
    for stem, s in scores.items():
        a, b = np.array(s["shipped"]), np.array(s["candidate"])
        d = b - a
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        up, down = int((d > TIE_DB).sum()), int((d < -TIE_DB).sum())
        rows.append(f"| {member} | {set_name} | {stem} | {a.mean():.2f} | {b.mean():.2f} | {d.mean():+.2f} ± {se:.2f} "
                    f"| {up} / {down} of {len(d)} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="drums", help="registered bag (default: drums)")
    p.add_argument("--member", nargs="+", required=True,
                   help="the members the candidates would replace, e.g. drums-toms (one per --candidate)")
    p.add_argument("--candidate", type=Path, nargs="+", required=True,
                   help="candidate weights (.safetensors or .ckpt), in --member's order")
    p.add_argument("--candidate-config", type=Path, nargs="+",
                   help="the candidates' YAMLs, in --candidate's order, where a candidate is another network "
                        "than its member's (e.g. wider; the stems, STFT and inference settings must match)")
    p.add_argument("--views", type=Path, nargs="+",
                   help="MUSDB-layout folders whose mixture.wav is the input, or .stem.mp4 files (MUSDB18)")
    p.add_argument("--songs", type=Path, nargs="+", help="MUSDB-layout folders of full songs; --input is the input")
    p.add_argument("--input", default="drums.wav", help="the input WAV in --songs folders (default: drums.wav)")
    p.add_argument("--stemgmd", type=Path, help="StemGMD clips (as in ../shared/data/dev/stemgmd)")
    p.add_argument("--stems", nargs="+", help="stems to score (default: all the model gives)")
    p.add_argument("--threads", default="2")
    p.add_argument("--out", type=Path, help="also write the table (markdown, with the command) to this file")
    args = p.parse_args()
    if not (args.views or args.songs or args.stemgmd):
        p.error("give --views, --songs or --stemgmd")
    if len(args.member) != len(args.candidate):
        p.error(f"{len(args.member)} --member but {len(args.candidate)} --candidate: give one member per candidate")

    configs = args.candidate_config or [None] * len(args.candidate)
    if len(configs) != len(args.candidate):
        p.error(f"{len(args.candidate)} --candidate but {len(configs)} --candidate-config: give one per candidate")
    nets = load_networks(args.model, list(zip(args.member, args.candidate, configs)), args.threads)
    args.stems = tuple(args.stems or nets.bag.stems)
    pairs = ", ".join(f"`{m}` against `{c}`" for m, c in zip(args.member, args.candidate))
    lines = [f"{args.model}: shipped members {pairs}, each alone in the bag with its soft mask (dB)", "",
             "| member | set | stem | shipped | candidate | difference ± s.e. | songs higher / lower |",
             "|---|---|---|---|---|---|---|"]
    rows: list[list[str]] = [[] for _ in args.member]
    for set_name, songs in inputs(args):
        print(f"{set_name} ({len(songs)} songs): candidate minus shipped ({', '.join(args.member)})", flush=True)
        for out, member, scores in zip(rows, args.member, compare(nets, songs, nets.bag.sample_rate)):
            out += summary_rows(member, set_name, scores)
    lines += [row for member_rows in rows for row in member_rows]
    print("\n".join(lines))
    if args.out:
        command = " ".join(["python", str(Path(__file__).relative_to(REPO))] + sys.argv[1:])
        from stemforge.audio import atomic_write

        with atomic_write(args.out) as tmp:
            Path(tmp).write_text(f"Command: `{command}`.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
