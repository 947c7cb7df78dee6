"""Copy a MUSDB-layout folder with some stems scaled, the mixture rebuilt as the sum of the stems.

A validation set for a condition the corpus rarely has, e.g. a hi-hat and cymbals 20 dB under the
rest of the kit, as in many close-miked real kits, or a mixture that reached us as an mp3 (``--mp3
KBPS``: the rebuilt mixture goes through mp3 at that bitrate, the stems stay clean, so a model is
scored on keeping codec noise out of them):

    python scripts/scale_stems.py corpus/drums_valid corpus/drums_valid_quiet \\
        --stems kick snare toms hihat cymbals --gain hihat=0.1 cymbals=0.1
    python scripts/scale_stems.py corpus/drums_valid corpus/drums_valid_mp3 \\
        --stems kick snare toms hihat cymbals --mp3 128

Writes float32 WAVs; every song folder of SOURCE must hold every stem of --stems.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from stemforge.audio import load_audio_with_rate, save_audio
from stemforge.audio.encode import mp3_roundtrip


def parse_gains(items: list[str], stems: list[str]) -> dict[str, float]:
    """``["hihat=0.1"] -> {"hihat": 0.1}``; every name must be one of ``stems``."""
    gains = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in stems:
            raise SystemExit(f"--gain {item!r}: expected STEM=GAIN with STEM one of {', '.join(stems)}")
        gains[name] = float(value)
    return gains


def scale_song(song: Path, out: Path, stems: list[str], gains: dict[str, float], mp3: int | None = None) -> None:
    """Write ``out/{stem}.wav`` (scaled) and ``out/mixture.wav`` (their sum, through mp3 at ``mp3`` kbps
    if given) for one song."""
    total, rate = None, None
    for stem in stems:
        path = song / f"{stem}.wav"
        if not path.exists():
            raise SystemExit(f"{path} is missing: every song needs the stems {', '.join(stems)}")
        audio, rate = load_audio_with_rate(path)  # [channels, samples]
        audio *= np.float32(gains.get(stem, 1.0))
        save_audio(out / f"{stem}.wav", audio, rate, subtype="FLOAT", clip="none")  # temp file, then rename
        total = audio if total is None else total + audio
    if mp3 is not None:
        total = mp3_roundtrip(total, rate, mp3)
    save_audio(out / "mixture.wav", total, rate, subtype="FLOAT", clip="none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--stems", nargs="+", required=True, help="the stems that sum to the mixture")
    parser.add_argument("--gain", nargs="+", default=[], metavar="STEM=GAIN", help="amplitude factors")
    parser.add_argument("--mp3", type=int, metavar="KBPS", help="send the mixture through mp3 at KBPS (32..320)")
    args = parser.parse_args(argv)
    if args.mp3 is not None and not 32 <= args.mp3 <= 320:
        raise SystemExit(f"--mp3 {args.mp3}: the bitrate must be 32..320 kbps")
    gains = parse_gains(args.gain, args.stems)
    songs = sorted(p for p in args.source.iterdir() if p.is_dir())
    if not songs:
        raise SystemExit(f"{args.source} holds no song folders")
    for song in songs:
        scale_song(song, args.dest / song.name, args.stems, gains, args.mp3)
    print(f"{len(songs)} songs -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
