"""The vocal line: a sung lead melody with one lyric word per note, plus "ooh" backing
vocals (GM choir patches) in choruses. Both belong to the vocals stem.

Melodies are built from two-bar phrases: a rhythm on the 8th grid ending in a long
note and a breath, pitches that walk the scale and land on chord tones on strong
beats. Choruses sit higher than verses and repeat their phrases, as songs do.
"""

from __future__ import annotations

import numpy as np

from stemforge.synth.music import Chord, Section, SongPlan
from stemforge.synth.score import Note, Part, perform, velocity
from stemforge.synth.voice import LEXICON

SINGERS = {  # espeak-ng voice variants, and the MIDI range each sings in
    "male": (("en+m2", "en+m3", "en+m7", "en+Andy", "en+klatt"), (48, 67)),
    "female": (("en+f1", "en+f3", "en+f4", "en+f5", "en-us+f2"), (57, 76)),
}
BACKING_PROGRAMS = (52, 53, 54)  # Choir Aahs, Voice Oohs, Synth Voice


def vocal_parts(plan: SongPlan, rng: np.random.Generator, presets: frozenset) -> list[Part]:
    """[lead vocal (sung by espeak-ng in voice.py), backing vocals (GM choir), if any]."""
    sex = "female" if rng.random() < 0.5 else "male"
    voices, (low, high) = SINGERS[sex]
    lead = Part("lead_vocal", "vocals", 53, notes=[], lyrics=[], role="sung",
                singer=str(rng.choice(voices)))
    motifs: dict[str, list[tuple[list[tuple[int, int]], list[str]]]] = {}
    for section in plan.sections:
        if section.kind in ("intro", "outro") or (section.kind == "bridge" and rng.random() < 0.5):
            continue
        lift = 3 if section.kind == "chorus" else 0
        for notes, words in _section_line(plan, section, rng, motifs, low + lift, high + lift):
            lead.notes += notes
            lead.lyrics += words
    parts = [lead]
    program = [p for p in BACKING_PROGRAMS if (0, p) in presets]
    if program and rng.random() < 0.6:
        parts.append(_backing(plan, rng, int(rng.choice(program)), low + 2))
    return parts


def _section_line(plan: SongPlan, section: Section, rng: np.random.Generator,
                  motifs: dict, low: int, high: int) -> list[tuple[list[Note], list[str]]]:
    """The section's phrases: rhythms/words reused across repeats of the same section kind."""
    bar_beats = plan.meter.bar_beats
    phrase_bars = 2 if section.bars >= 2 else 1
    n_phrases = max(1, section.bars // phrase_bars)
    if section.kind not in motifs:
        motifs[section.kind] = [_rhythm_and_words(plan, phrase_bars, section.energy, rng) for _ in range(2)]
    out, pitch = [], (low + high) // 2
    for i in range(n_phrases):
        rhythm, words = motifs[section.kind][i % 2 if rng.random() < 0.85 else 1 - i % 2]
        start = section.start + i * phrase_bars * bar_beats
        notes, pitch = _pitch_phrase(plan, start, rhythm, pitch, low, high, rng)
        out.append((notes, list(words)))
    return out


def _rhythm_and_words(plan: SongPlan, bars: int, energy: int,
                      rng: np.random.Generator) -> tuple[list[tuple[int, int]], list[str]]:
    """(onset step, length in steps) of each note of a phrase, and one word per note.
    The phrase leaves the last half bar for a breath and ends on a long note."""
    eighth_s = plan.beat_seconds / 2
    grid = 2 if eighth_s >= 0.17 else 4
    usable = bars * plan.meter.steps_per_bar - plan.meter.steps_per_bar // 2
    density = {1: 0.4, 2: 0.5, 3: 0.6}[energy]
    onsets = [s for s in range(0, usable, grid) if s == 0 or rng.random() < density]
    rhythm = []
    for i, s in enumerate(onsets):
        end = onsets[i + 1] if i + 1 < len(onsets) else min(usable + grid * 2, s + 8)
        rhythm.append((s, end - s))
    words = [str(rng.choice(LEXICON)) for _ in rhythm]
    return rhythm, words


def _pitch_phrase(plan: SongPlan, start: float, rhythm: list[tuple[int, int]], pitch: int,
                  low: int, high: int, rng: np.random.Generator) -> tuple[list[Note], int]:
    """Walk the scale; strong beats and the last note snap to chord tones."""
    notes = []
    for i, (step, length) in enumerate(rhythm):
        beat = start + step / 4
        pitch = _in_range(plan.key.snap(pitch + int(rng.choice([-3, -2, -1, 0, 1, 2, 4]))), low, high)
        if step % plan.meter.steps_per_pulse == 0 or i == len(rhythm) - 1:
            pitch = _nearest_chord_tone(plan.chord_at(beat), pitch, low, high)
        played = perform(beat, plan.feel, rng, jitter=0.01)
        notes.append(Note(played, length / 4 * 0.95, pitch, velocity(rng, 92, 8)))
    return notes, pitch


def _backing(plan: SongPlan, rng: np.random.Generator, program: int, low: int) -> Part:
    """Sustained two-note "oohs" on chord tones, in choruses only."""
    part = Part("backing_vocals", "vocals", program, role="backing")
    for section in plan.sections:
        if section.kind != "chorus":
            continue
        for slot in section.chords:
            top = _nearest_chord_tone(slot.chord, low + 7, low, low + 19)
            for pitch in (top, _nearest_chord_tone(slot.chord, top - 4, low - 5, top - 1)):
                part.notes.append(Note(perform(slot.start, plan.feel, rng), slot.length * 0.96,
                                       pitch, velocity(rng, 70, 5)))
    return part


def _in_range(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def _nearest_chord_tone(chord: Chord, pitch: int, low: int, high: int) -> int:
    candidates = [p for p in range(low, high + 1) if p % 12 in chord.pitch_classes]
    return min(candidates, key=lambda p: abs(p - pitch)) if candidates else pitch
