"""``stemforge synth``: write a procedural multitrack corpus (MUSDB layout + drum pieces).

Hook into the main CLI with ``add_parser(subparsers)`` and dispatch to ``run(args)``;
``python -m stemforge.synth.cli --out DIR ...`` also works on its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tqdm import tqdm

from stemforge.errors import StemforgeError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth", help="generate a procedural multitrack corpus (FluidSynth + espeak-ng)",
        description="Render random songs to OUT/<song_id>/{mixture,vocals,drums,bass,other,"
                    "kick,snare,toms,hihat,cymbals}.wav + song.mid + meta.json.")
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--songs", type=int, default=10, help="number of songs (default 10)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each song (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed; song i uses (seed, i)")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                        help="parallel processes (default: min(4, CPUs))")
    parser.add_argument("--soundfont", default=None,
                        help="GM .sf2 or .sf3 file (default: FluidR3_GM or TimGM6mb from Debian; "
                             "musescore-general-soundfont gives /usr/share/sounds/sf3/MuseScore_General_Full.sf3)")
    parser.add_argument("--kits", nargs="+", default=[], metavar="KIT.sf2",
                        help="extra drum-kit soundfonts; half of the songs drum on one of them "
                             "(e.g. Debian's avldrums.lv2-soundfont: /usr/share/sounds/sf2/"
                             "Black_Pearl_4_LV2.sf2 /usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2)")


def run(args: argparse.Namespace) -> int:
    if args.songs < 1 or args.seconds <= 0 or args.jobs < 1:
        raise StemforgeError("--songs, --seconds and --jobs must be positive")
    from stemforge.synth.corpus import generate_corpus  # heavy imports only when running
    from stemforge.synth.soundfont import find_soundfont

    soundfont = find_soundfont(args.soundfont)
    start = time.perf_counter()
    with tqdm(total=args.songs, unit="song", desc=f"synth ({soundfont.name})") as bar:
        generate_corpus(args.out, args.songs, args.seconds, args.seed, args.jobs, soundfont,
                        on_done=lambda _: bar.update(), kits=args.kits)
    wall = time.perf_counter() - start
    audio = args.songs * args.seconds
    print(f"synth: {args.songs} songs, {audio:.0f} s of audio in {wall:.1f} s "
          f"({audio / wall:.1f} s of audio per second, {args.jobs} jobs) -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stemforge synth")
    _add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except StemforgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
