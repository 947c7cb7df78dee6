"""Songs -> folders in the MUSDB layout, in parallel.

``OUT/<song_id>/`` holds mixture.wav, vocals.wav, drums.wav, bass.wav, other.wav,
kick.wav, snare.wav, toms.wav, hihat.wav, cymbals.wav (float32, 44.1 kHz, stereo),
song.mid and meta.json. Song `index` of a corpus is seeded by
``SeedSequence(seed, spawn_key=(index,))``: it depends only on (seed, index), so
``--songs 10`` extends ``--songs 5`` and the bytes do not depend on ``--jobs``.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from stemforge.synth.compose import compose, stage_rngs
from stemforge.synth.drums import kit_soundfont
from stemforge.synth.fluid import load_library
from stemforge.synth.midi import write_midi
from stemforge.synth.mix import channel_meta, draw_channels, mix
from stemforge.synth.render import render_parts
from stemforge.synth.score import DRUM_PIECES, STEMS, Score
from stemforge.synth.soundfont import find_soundfont, list_presets
from stemforge.synth.voice import espeak_path
from stemforge.synth.wav import write_wav

SAMPLE_RATE = 44100
AUDIO_FILES = ("mixture", *STEMS, *DRUM_PIECES)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt options


@dataclass(frozen=True)
class Song:
    score: Score
    audio: dict[str, np.ndarray]  # file name -> [2, samples] float32
    meta: dict


def song_id(seed: int, index: int) -> str:
    return f"synth_{seed}_{index:05d}"


def generate_song(seed: int, index: int, seconds: float, soundfont: Path | str | None = None,
                  kits: Sequence[Path | str] = ()) -> Song:
    """Compose, render and mix song `index` of the corpus seeded by `seed` (in memory).
    Song.audio maps mixture/stems/drum pieces to [2, round(seconds * 44100)] float32.
    `kits`: extra drum-kit soundfonts (.sf2) that half of the songs drum on."""
    soundfont = find_soundfont(soundfont)
    rngs = stage_rngs(np.random.SeedSequence(seed, spawn_key=(index,)))
    score = compose(rngs, seconds, list_presets(soundfont), [kit_soundfont(k) for k in kits])
    dry = render_parts(score, soundfont, rngs["voice"], SAMPLE_RATE)
    channels = draw_channels(score, rngs["mix"])
    audio, gain = mix(score, dry, channels, rngs["mix"], SAMPLE_RATE)
    return Song(score, audio, _meta(score, seed, index, soundfont, gain, channels))


def write_song(song: Song, folder: Path) -> Path:
    """Write the 10 WAVs, song.mid and meta.json into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in AUDIO_FILES:
        write_wav(folder / f"{name}.wav", song.audio[name], SAMPLE_RATE)
    write_midi(song.score, folder / "song.mid")
    (folder / "meta.json").write_text(json.dumps(song.meta, indent=1) + "\n")
    return folder


def make_song(out: Path, seed: int, index: int, seconds: float, soundfont: Path | str | None,
              kits: Sequence[Path | str] = ()) -> float:
    """Generate and write one song folder; returns its duration (seconds)."""
    song = generate_song(seed, index, seconds, soundfont, kits)
    write_song(song, Path(out) / song_id(seed, index))
    return seconds


def generate_corpus(out: Path | str, songs: int, seconds: float = 30.0, seed: int = 0, jobs: int = 1,
                    soundfont: Path | str | None = None,
                    on_done: Callable[[int], None] | None = None,
                    kits: Sequence[Path | str] = ()) -> list[Path]:
    """Write songs 0..songs-1 under `out` with `jobs` worker processes (always separate
    processes, even for one job: see `_worker_init`). `on_done(index)` is called as
    each song finishes (for progress bars). Returns the song folders."""
    out = Path(out)
    soundfont = find_soundfont(soundfont).resolve()  # pin one soundfont for all workers
    kits = [kit_soundfont(k).path for k in kits]  # fail early on a missing or broken kit
    load_library()  # fail early, with the apt-get hint, if a tool is missing
    espeak_path()
    context = multiprocessing.get_context("spawn")  # never fork a (possibly threaded) parent
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context,
                             initializer=_worker_init) as pool:
        futures = {pool.submit(make_song, out, seed, i, seconds, soundfont, kits): i for i in range(songs)}
        try:
            for future in as_completed(futures):
                future.result()
                if on_done:
                    on_done(futures[future])
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [out / song_id(seed, i) for i in range(songs)]


def _worker_init() -> None:
    """Let glibc keep freed memory: a song allocates hundreds of MB in 10-20 MB arrays;
    by default each is mmapped and unmapped, and reusing memory costs a page fault per
    4 KiB (twice the CPU time of the song on small VMs). Only in our own workers."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    for option, value in ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 1 << 28)):
        libc.mallopt(option, value)


def render_example(path: Path | str, seconds: float = 15.0, seed: int = 2024,
                   soundfont: Path | str | None = None) -> Path:
    """Write the mixture of one song to `path` (.wav float32, .flac 24-bit, ...)."""
    path = Path(path)
    song = generate_song(seed, 0, seconds, soundfont)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".wav":
        write_wav(path, song.audio["mixture"], SAMPLE_RATE)
    else:
        sf.write(path, song.audio["mixture"].T, SAMPLE_RATE, subtype="PCM_24")
    return path


def _meta(score: Score, seed: int, index: int, soundfont: Path, gain: float, channels) -> dict:
    plan = score.plan
    return {
        "id": song_id(seed, index), "seed": seed, "index": index, "seconds": plan.seconds,
        "sample_rate": SAMPLE_RATE, "tempo": plan.tempo, "key": plan.key.name,
        "meter": plan.meter.name, "feel": plan.feel.name, "swing_ratio": round(plan.feel.ratio, 3),
        "sections": [{"kind": s.kind, "bars": s.bars, "start_seconds": round(s.start * plan.beat_seconds, 3),
                      "chords": [c.chord.name for c in s.chords]}
                     for s in plan.sections if s.start * plan.beat_seconds < plan.seconds],
        "parts": [{"name": p.name, "stem": p.stem, "bank": p.bank, "program": p.program,
                   "notes": len(p.notes), **({"singer": p.singer} if p.singer else {})}
                  for p in score.parts],
        "soundfont": soundfont.name, "drum_soundfont": _drum_soundfont(score, soundfont).name,
        "common_gain": round(gain, 6), "mix": channel_meta(channels),
    }


def _drum_soundfont(score: Score, soundfont: Path) -> Path:
    """The soundfont the drum pieces were rendered with."""
    return next((p.soundfont for p in score.parts if p.is_drum and p.soundfont), soundfont)
