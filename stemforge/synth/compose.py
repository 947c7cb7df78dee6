"""Seed -> Score: the song plan and every part (drums, bass, other, vocals).

Each stage draws from its own child of the song's SeedSequence, so changing how
one stage uses randomness does not reshuffle the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from stemforge.synth.drums import KitSoundfont, drum_parts
from stemforge.synth.melody import vocal_parts
from stemforge.synth.music import plan_song
from stemforge.synth.parts import bass_part, comp_part, lead_part, pad_part
from stemforge.synth.score import Part, Score

STAGES = ("plan", "drums", "bass", "other", "vocals", "mix", "voice")


def stage_rngs(seed: np.random.SeedSequence) -> dict[str, np.random.Generator]:
    """One independent generator per composition/render stage."""
    return {name: np.random.default_rng(child) for name, child in zip(STAGES, seed.spawn(len(STAGES)), strict=True)}


def compose(rngs: dict[str, np.random.Generator], seconds: float, presets: frozenset,
            kits: Sequence[KitSoundfont] = ()) -> Score:
    """Plan a song of `seconds` and write all its parts (drum kit among `presets` or `kits`)."""
    plan = plan_song(rngs["plan"], seconds)
    parts = drum_parts(plan, rngs["drums"], presets, kits)
    parts.append(bass_part(plan, rngs["bass"], presets))
    parts += _other_parts(plan, rngs["other"], presets)
    parts += vocal_parts(plan, rngs["vocals"], presets)
    end = seconds / plan.beat_seconds
    parts = [_until(part, end) for part in parts]
    return Score(plan, [part for part in parts if part.notes])


def _until(part: Part, end_beat: float) -> Part:
    """The part without the notes that start after the song ends (the form is planned
    a little longer than the song so that it never stops short)."""
    keep = [i for i, note in enumerate(part.notes) if note.start < end_beat]
    lyrics = [part.lyrics[i] for i in keep] if part.lyrics is not None else None
    return replace(part, notes=[part.notes[i] for i in keep], lyrics=lyrics)


def _other_parts(plan, rng: np.random.Generator, presets: frozenset) -> list[Part]:
    """One or two comping instruments, maybe a pad, maybe a lead (2-4 parts)."""
    first = str(rng.choice(["piano", "guitar", "organ"], p=[0.5, 0.38, 0.12]))
    parts = [comp_part(plan, rng, presets, first)]
    if rng.random() < 0.55:
        second = "guitar" if first != "guitar" else str(rng.choice(["piano", "organ"]))
        parts.append(comp_part(plan, rng, presets, second))
    if rng.random() < 0.6:
        parts.append(pad_part(plan, rng, presets))
    if rng.random() < 0.55:
        parts.append(lead_part(plan, rng, presets))
    return parts
