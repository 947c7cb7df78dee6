"""The symbolic song: notes grouped into parts, each part bound for one stem file.

A `Part` is what gets rendered on its own (one drum piece, one instrument, the
sung lead), so every stem is an exact sum of separately rendered parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemforge.synth.music import Feel, SongPlan

STEMS = ("vocals", "drums", "bass", "other")
DRUM_PIECES = ("kick", "snare", "toms", "hihat", "cymbals")
DRUM_KIT_PROGRAMS = (0, 8, 16, 24, 25, 32, 40, 48)  # GM kits on bank 128


@dataclass(frozen=True)
class Note:
    start: float  # performed time in quarter-note beats
    length: float  # beats
    pitch: int  # MIDI note
    velocity: int  # 1..127


@dataclass
class Part:
    name: str  # "kick", "bass", "keys", "lead_vocal", ...
    stem: str  # one of STEMS
    program: int
    bank: int = 0  # 128: drum kit
    notes: list[Note] = field(default_factory=list)
    lyrics: list[str] | None = None  # one word per note for the sung lead
    role: str = ""  # what generated it: "piano", "guitar", "pad", "sung", ...
    singer: str | None = None  # espeak-ng voice for a sung part (rendered by voice.py)
    soundfont: Path | None = None  # its own soundfont (a drum-kit .sf2); None: the song's

    @property
    def is_drum(self) -> bool:
        return self.bank == 128 or self.role == "drums"


@dataclass
class Score:
    plan: SongPlan
    parts: list[Part]


def perform(beat: float, feel: Feel, rng: np.random.Generator, jitter: float = 0.008) -> float:
    """Nominal grid position -> played position: feel warp plus a little human timing
    (`jitter` in beats, ~4 ms at 120 bpm)."""
    return max(0.0, feel.warp(beat) + float(rng.normal(0.0, jitter)))


def velocity(rng: np.random.Generator, base: float, spread: float = 8.0) -> int:
    return int(np.clip(round(base + rng.normal(0.0, spread)), 1, 127))
