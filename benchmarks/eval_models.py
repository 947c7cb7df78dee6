"""Quality and speed of the shipped models (``default``, ``drums``), written into MODELS.md.

* held-out synthetic songs (``stemforge synth`` with a seed never used in training): SDR per stem
  of ``default`` on the mixture, of ``drums`` on the true drum stem, and of the ``--drum-kit``
  chain (kit pieces from the full mixture), each beside the mixture-as-estimate baseline; when
  a model is a bag, each of its member networks is also scored alone (no soft mask), and
  ``default-base``, the one-network option, as users run it (with its soft mask);
* optionally (``--quiet-drums``) drum stems whose hi-hat and cymbals were turned down
  (``scripts/scale_stems.py``), the level at which real kits often hold them: ``drums`` and its members;
* optionally (``--mp3-drums``) drum stems that went through mp3 (``scale_stems.py --mp3``; the pieces
  stay clean), as real songs reach users: the same;
* optionally (``--unseen``) held-out songs rendered with a soundfont that no shipped model was trained
  on (``stemforge synth --soundfont TimGM6mb.sf2``): ``default``, ``default-base`` and ``drums`` (on the
  true drum stem), a check that gains on the training soundfonts carry over to other instruments;
* real clips in ``../shared/data/dev``: the MUSDB18 sample (``.stem.mp4``) and the StemGMD kits,
  with LarsNet's own outputs (``*_pred.mp3``) scored the same way;
* real-time factor (processing seconds per audio second) at the configs' overlap, 2 threads.

Every table also has the ideal ratio mask (``stemforge.eval.ideal_ratio_mask``): the mixture shared
out by the true stems' power, what a mask could reach if it knew them.

Scoring: global SDR over the whole clip and both channels; a reference 60 dB below its mixture
is skipped (``stemforge.eval``). Synthetic numbers are means over songs.

    python benchmarks/eval_models.py --synth corpus/test --dev ../shared/data/dev
    python benchmarks/eval_models.py --synth corpus/test --quiet-drums corpus/test_drums_quiet \
        --mp3-drums corpus/test_drums_mp3 --unseen corpus/test_timgm
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_label, replace_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SONG = ("vocals", "drums", "bass", "other")
KIT = ("kick", "snare", "toms", "hihat", "cymbals")
MUSDB_STREAMS = ("mixture", "drums", "bass", "other", "vocals")
NO_MASK = "no-soft-mask"
BASE = "default-base"  # the one-network 4-stem model that the default bag's specialists were fine-tuned from
ORACLE = "ideal ratio mask (oracle: knows the true stems)"


def score(refs: dict[str, np.ndarray], ests: dict[str, np.ndarray], mix: np.ndarray) -> dict[str, float | None]:
    """Global SDR per stem of ``ests`` and of the mixture-as-estimate baseline: ``{stem: sdr, stem+'/mix': sdr}``."""
    from stemforge.eval.metrics import global_sdr, is_silent

    out = {}
    for name, ref in refs.items():
        n = min(ref.shape[-1], ests[name].shape[-1], mix.shape[-1])
        silent = is_silent(ref[:, :n], mix[:, :n])
        out[name] = None if silent else global_sdr(ref[:, :n], ests[name][:, :n])
        out[name + "/mix"] = None if silent else global_sdr(ref[:, :n], mix[:, :n])
    return out


def with_oracle(row: dict, refs: dict[str, np.ndarray], mix: np.ndarray, rest: tuple[np.ndarray, ...] = ()) -> dict:
    """Add to ``row`` the scores of the ideal ratio mask (``stem/oracle``): the mixture shared out by the
    true stems' power, the ceiling of a mask. ``rest``: the other true stems in ``mix`` (those of the
    song around a drum kit), which take their share but are not scored."""
    from stemforge.eval import ideal_ratio_mask

    n = min(x.shape[-1] for x in (mix, *refs.values(), *rest))
    est = ideal_ratio_mask(mix[:, :n], np.stack([x[:, :n] for x in (*refs.values(), *rest)]))
    row.update({k + "/oracle": v for k, v in score(refs, dict(zip(refs, est)), mix).items() if not k.endswith("/mix")})
    return row


def mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else float("nan")


def table(title: str, rows: list[dict], stems: tuple[str, ...], columns: dict[str, str]) -> list[str]:
    """Markdown: one row per column kind (suffix -> label), one column per stem, plus the mean."""
    lines = [f"**{title}**", "", "| | " + " | ".join(stems) + " | mean |", "|---" * (len(stems) + 2) + "|"]
    for suffix, label in columns.items():
        values = [mean(rows, s + suffix) for s in stems]
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {np.nanmean(values):.2f} |")
    return lines + [""]


def alone(rows: dict, seps: dict, refs: dict[str, np.ndarray], x: np.ndarray) -> dict:
    """Add to ``rows`` the scores of each bag member in ``seps`` (name -> Separator) run alone, keys ``stem/name``."""
    for name, sep in seps.items():
        est = dict(zip(sep.stems, sep.separate_mix(x)))
        rows.update({k + "/" + name: v for k, v in score(refs, est, x).items() if not k.endswith("/mix")})
    return rows


def synthetic(folder: Path, song, kit, chain, base, members: dict, unmasked: dict, rate: int) -> tuple[list[str], dict]:
    from stemforge.audio import load_audio

    rows = {"song": [], "kit": [], "chain": []}
    seconds = {"song": 0.0, "kit": 0.0, "chain": 0.0, "base": 0.0, "audio": 0.0}
    tracks = sorted(p for p in folder.iterdir() if (p / "mixture.wav").exists())
    for track in tracks:
        audio = {n: load_audio(track / f"{n}.wav", rate) for n in ("mixture",) + SONG + KIT}
        mix, drums = audio["mixture"], audio["drums"]
        seconds["audio"] += mix.shape[-1] / rate
        for key, sep, x, refs in (("song", song, mix, SONG), ("kit", kit, drums, KIT), ("chain", chain, mix, KIT)):
            start = time.perf_counter()
            est = sep.separate_mix(x)
            seconds[key] += time.perf_counter() - start
            est = est if isinstance(est, dict) else dict(zip(sep.stems, est))
            truth = {s: audio[s] for s in refs}
            rest = tuple(audio[s] for s in SONG if s != "drums") if key == "chain" else ()
            rows[key].append(with_oracle(score(truth, est, x), truth, x, rest))
        start = time.perf_counter()
        alone(rows["song"][-1], {BASE: base}, {s: audio[s] for s in SONG}, mix)
        seconds["base"] += time.perf_counter() - start
        alone(rows["song"][-1], {NO_MASK: unmasked["default"], **members["default"]}, {s: audio[s] for s in SONG}, mix)
        alone(rows["kit"][-1], {NO_MASK: unmasked["drums"], **members["drums"]}, {s: audio[s] for s in KIT}, drums)
        print(f"{track.name}: " + ", ".join(f"{s} {rows['song'][-1][s] or float('nan'):.1f}" for s in SONG), flush=True)
    per_song = seconds["audio"] / len(tracks)
    lines = [f"Held-out synthetic songs: {len(tracks)} songs x {per_song:.0f} s from `{folder}`.", ""]
    lines += table("default: 4 stems from the mixture (dB)", rows["song"], SONG,
                   {"": "stemforge default", **columns("default", members["default"], base=True),
                    "/oracle": ORACLE, "/mix": "mixture as estimate"})
    lines += table("drums: kit pieces from the true drum stem (dB)", rows["kit"], KIT,
                   {"": "stemforge drums", **columns("drums", members["drums"]), "/oracle": ORACLE,
                    "/mix": "drum stem as estimate"})
    lines += table("--drum-kit: kit pieces from the full mixture (dB)", rows["chain"], KIT,
                   {"": "stemforge default+drums", "/oracle": ORACLE, "/mix": "mixture as estimate"})
    rtf = {k: seconds[k] / seconds["audio"] for k in ("song", "kit", "chain", "base")}
    return lines, rtf


def speed(folder: Path, song, kit, chain, base, rate: int) -> dict[str, float]:
    """Processing seconds per audio second of each separator on the songs of ``folder`` (no scoring)."""
    from stemforge.audio import load_audio

    seconds = {"song": 0.0, "kit": 0.0, "chain": 0.0, "base": 0.0, "audio": 0.0}
    for track in sorted(p for p in folder.iterdir() if (p / "mixture.wav").exists()):
        mix, drums = (load_audio(track / f"{n}.wav", rate) for n in ("mixture", "drums"))
        seconds["audio"] += mix.shape[-1] / rate
        for key, sep, x in (("song", song, mix), ("kit", kit, drums), ("chain", chain, mix), ("base", base, mix)):
            start = time.perf_counter()
            sep.separate_mix(x)
            seconds[key] += time.perf_counter() - start
    return {k: seconds[k] / seconds["audio"] for k in ("song", "kit", "chain", "base")}


def drum_view(folder: Path, what: str, kit, members: dict, unmasked: dict, rate: int) -> list[str]:
    """``drums`` and its members on drum views (``mixture.wav`` = the drum stem, one WAV per piece)."""
    from stemforge.audio import load_audio

    rows = []
    tracks = sorted(p for p in folder.iterdir() if (p / "mixture.wav").exists())
    for track in tracks:
        drums = load_audio(track / "mixture.wav", rate)
        refs = {p: load_audio(track / f"{p}.wav", rate) for p in KIT}
        row = score(refs, dict(zip(kit.stems, kit.separate_mix(drums))), drums)
        rows.append(alone(with_oracle(row, refs, drums), {NO_MASK: unmasked["drums"], **members}, refs, drums))
    return table(f"drums: kit pieces from {len(tracks)} held-out drum stems {what} (`{folder}`) (dB)", rows, KIT,
                 {"": "stemforge drums", **columns("drums", members), "/oracle": ORACLE,
                  "/mix": "drum stem as estimate"})


def unseen_soundfont(folder: Path, song, base, kit, rate: int) -> list[str]:
    """``default`` (and ``default-base``) on the mixtures and ``drums`` on the true drum stems of songs
    rendered with a soundfont the models never heard."""
    from stemforge.audio import load_audio

    song_rows, kit_rows = [], []
    tracks = sorted(p for p in folder.iterdir() if (p / "mixture.wav").exists())
    for track in tracks:
        audio = {n: load_audio(track / f"{n}.wav", rate) for n in ("mixture",) + SONG + KIT}
        mix, drums = audio["mixture"], audio["drums"]
        refs = {s: audio[s] for s in SONG}
        row = with_oracle(score(refs, dict(zip(song.stems, song.separate_mix(mix))), mix), refs, mix)
        song_rows.append(alone(row, {BASE: base}, refs, mix))
        pieces = {p: audio[p] for p in KIT}
        kit_rows.append(with_oracle(score(pieces, dict(zip(kit.stems, kit.separate_mix(drums))), drums), pieces, drums))
    where = f"{len(tracks)} held-out songs rendered with a soundfont no model was trained on (`{folder}`)"
    return (table(f"default on {where} (dB)", song_rows, SONG,
                  {"": "stemforge default", "/" + BASE: f"{BASE} (one network, with its soft mask)",
                   "/oracle": ORACLE, "/mix": "mixture as estimate"})
            + table("drums on the drum stems of the same songs (dB)", kit_rows, KIT,
                    {"": "stemforge drums", "/oracle": ORACLE, "/mix": "drum stem as estimate"}))


def musdb_clip(path: Path, song, base, members: dict, unmasked: dict, rate: int) -> list[str]:
    from stemforge.audio import load_audio

    audio = {n: load_audio(path, rate, stream=i) for i, n in enumerate(MUSDB_STREAMS)}
    est = dict(zip(song.stems, song.separate_mix(audio["mixture"])))
    refs = {s: audio[s] for s in SONG}
    row = alone(with_oracle(score(refs, est, audio["mixture"]), refs, audio["mixture"]),
                {BASE: base, NO_MASK: unmasked["default"], **members}, {s: audio[s] for s in SONG}, audio["mixture"])
    return table(f"Real: MUSDB18 sample `{path.name}` ({audio['mixture'].shape[-1] / rate:.1f} s), default (dB)",
                 [row], SONG, {"": "stemforge default", **columns("default", members, base=True),
                               "/oracle": ORACLE, "/mix": "mixture as estimate"})


def columns(model: str, members: dict, base: bool = False) -> dict[str, str]:
    """Row labels: ``default-base`` as users run it (``base``), ``model`` without the soft mask, then each
    member of its bag alone (no soft mask)."""
    first = {"/" + BASE: f"{BASE} (one network, with its soft mask)"} if base else {}
    return {**first, "/" + NO_MASK: f"{model} without the soft mask",
            **{"/" + name: f"{name} alone (a member of the {model} bag, no soft mask)" for name in members}}


def stemgmd_clips(folder: Path) -> list[tuple[Path, Path, dict[str, Path], dict[str, Path]]]:
    """``[(kit folder, mix, {piece: true file}, {piece: LarsNet's file})]`` for every StemGMD clip under
    ``folder`` (``*_MIX.mp3`` beside ``*_PIECE_true.mp3`` and ``*_PIECE_pred.mp3``)."""
    clips = []
    for kit_dir in sorted(p for p in folder.rglob("*") if p.is_dir() and list(p.glob("*_MIX.mp3"))):
        (mix_path,) = kit_dir.glob("*_MIX.mp3")
        stem = mix_path.name[: -len("_MIX.mp3")]
        clips.append((kit_dir, mix_path, {p: kit_dir / f"{stem}_{p.upper()}_true.mp3" for p in KIT},
                      {p: kit_dir / f"{stem}_{p.upper()}_pred.mp3" for p in KIT}))
    return clips


def stemgmd(folder: Path, kit, members: dict, unmasked: dict, rate: int) -> list[str]:
    from stemforge.audio import load_audio

    rows, names = [], []
    for kit_dir, mix_path, true_files, pred_files in stemgmd_clips(folder):
        mix = load_audio(mix_path, rate)
        refs = {p: load_audio(f, rate) for p, f in true_files.items()}
        larsnet = {p: load_audio(f, rate) for p, f in pred_files.items()}
        ours = dict(zip(kit.stems, kit.separate_mix(mix)))
        row = with_oracle(score(refs, ours, mix), refs, mix)
        row.update({k + "/larsnet": v for k, v in score(refs, larsnet, mix).items() if not k.endswith("/mix")})
        alone(row, {NO_MASK: unmasked["drums"], **members}, refs, mix)
        rows.append(row)
        names.append(kit_dir.name)
        print(f"{kit_dir.name}: " + ", ".join(
            f"{p} {row[p] or float('nan'):.1f} (LarsNet {row[p + '/larsnet'] or float('nan'):.1f})" for p in KIT),
            flush=True)
    return table(f"Real: StemGMD kits {', '.join(names)} (mean of {len(rows)} clips), drums (dB)", rows, KIT,
                 {"": "stemforge drums", **columns("drums", members), "/larsnet": "LarsNet (its own outputs)",
                  "/oracle": ORACLE, "/mix": "drum mix as estimate"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth", type=Path, required=True, help="held-out songs from `stemforge synth`")
    p.add_argument("--quiet-drums", type=Path, help="drum views made by scripts/scale_stems.py from held-out songs")
    p.add_argument("--mp3-drums", type=Path, help="drum views whose mixture went through mp3 (scale_stems.py --mp3)")
    p.add_argument("--unseen", type=Path, help="held-out songs rendered with a soundfont no model was trained on")
    p.add_argument("--dev", type=Path, default=REPO.parent / "shared" / "data" / "dev")
    p.add_argument("--threads", default="2")
    p.add_argument("--out", type=Path, default=REPO / "MODELS.md")
    args = p.parse_args()

    import torch

    from stemforge import registry
    from stemforge.drumkit import DrumKitSeparator
    from stemforge.engine.device import set_threads
    from stemforge.engine.precision import precision_name, resolve_precision
    from stemforge.separator import Separator

    threads = set_threads(args.threads)
    song, kit = Separator("default", precision="fp32"), Separator("drums", precision="fp32")
    base = Separator(BASE, precision="fp32")
    members = {}
    for name in ("default", "drums"):
        entry = registry.get_model(name)
        members[name] = ({m.name: Separator(m.name, precision="fp32", soft_mask=False)
                          for m in registry.bag_members(entry)} if entry.is_bag else {})
    unmasked = {name: Separator(name, precision="fp32", soft_mask=False) for name in ("default", "drums")}
    chain = DrumKitSeparator(song, kit)
    rate = song.sample_rate
    lines, rtf = synthetic(args.synth, song, kit, chain, base, members, unmasked, rate)
    if args.quiet_drums:
        lines += drum_view(args.quiet_drums, "with the hi-hat and cymbals turned down", kit, members["drums"],
                           unmasked, rate)
    if args.mp3_drums:
        lines += drum_view(args.mp3_drums, "that went through mp3 (the pieces did not)", kit, members["drums"],
                           unmasked, rate)
    if args.unseen:
        lines += unseen_soundfont(args.unseen, song, base, kit, rate)
    lines += musdb_clip(next(args.dev.glob("*.stem.mp4")), song, base, members["default"], unmasked, rate)
    lines += stemgmd(args.dev / "stemgmd", kit, members["drums"], unmasked, rate)
    speeds = {"fp32": rtf}
    auto = resolve_precision("auto", song.device)  # as users run it: bf16 where it pays off on this CPU
    if auto != torch.float32:
        fast_song, fast_kit = Separator("default"), Separator("drums")
        speeds[f"auto ({precision_name(auto)})"] = speed(
            args.synth, fast_song, fast_kit, DrumKitSeparator(fast_song, fast_kit), Separator(BASE), rate)
    lines += ["**Speed** (processing seconds per audio second, eager, batch auto, "
              f"soft mask {'on' if song.soft_mask and kit.soft_mask else 'as configured'}, "
              f"overlap {song.overlap}, {threads} threads, {song.lanes} lane(s), on the synthetic songs; "
              + ("the fp32 row timed while scoring, the auto row alone)" if len(speeds) > 1
                 else "timed while scoring; --precision auto is fp32 on this CPU)"), "",
              f"| precision | default | drums | default+drums (--drum-kit) | {BASE} |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['song']:.3f} | {r['kit']:.3f} | {r['chain']:.3f} | {r['base']:.3f} |"
              for name, r in speeds.items()] + [""]
    header = [f"Machine: {cpu_label()}, torch {torch.__version__}. "
              f"Command: `python {' '.join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])}`.", ""]
    body = "\n".join(["<!-- eval:begin -->"] + header + lines + ["<!-- eval:end -->"])
    replace_section(args.out, "eval", body)
    print(body)


if __name__ == "__main__":
    main()
