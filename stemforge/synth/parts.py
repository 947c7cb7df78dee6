"""Pitched accompaniment: bass, and the "other" stem (keys, guitar, pad/strings, lead).

Every part follows the plan's chords. A part draws one playing style per section
(sparser in intros and verses, fuller in choruses) and may sit a section out.
GM programs are drawn per song from role-specific pools (only those the soundfont
has). Rhythms live on the 16th-note step grid and are played through the feel.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from stemforge.synth.music import Chord, ChordSlot, Section, SongPlan
from stemforge.synth.score import Note, Part, perform, velocity

PROGRAMS = {
    "bass": (32, 33, 33, 34, 35, 36, 37, 38, 39),
    "piano": (0, 0, 1, 2, 3, 4, 5, 6, 7),
    "organ": (16, 17, 18, 19),
    "guitar": (24, 25, 26, 27, 28, 29, 30),
    "pad": (48, 49, 50, 51, 88, 89, 90, 91, 92, 94, 95),
    "lead": (40, 56, 57, 64, 65, 66, 68, 71, 73, 80, 81, 84, 87, 11, 12, 8),
}
DISTORTED = (29, 30)


def bass_part(plan: SongPlan, rng: np.random.Generator, presets: frozenset) -> Part:
    """A bass line: per section one of sustain / roots / eighths / root-fifth / syncopated
    / walking (swing), with approach notes into chord changes."""
    part = Part("bass", "bass", _program(rng, "bass", presets), role="bass")
    swing = plan.feel.name == "swing"
    for section in plan.sections:
        if section.kind == "intro" and rng.random() < 0.5:
            continue
        style = ("sustain" if section.energy == 1 else "walking" if swing and rng.random() < 0.7
                 else str(rng.choice(["roots", "eighths", "root_fifth", "syncopated"])))
        for slot in section.chords:
            part.notes += _bass_slot(plan, slot, style, rng)
    return part


def _bass_slot(plan: SongPlan, slot: ChordSlot, style: str, rng: np.random.Generator) -> list[Note]:
    root = slot.chord.bass_pitch(28)
    fifth = root + slot.chord.fifth()
    steps = _slot_steps(slot)
    if style == "sustain":
        rhythm = [(0, len(steps))]
    elif style == "eighths":
        rhythm = [(i, 2) for i in range(0, len(steps), 2)]
    elif style == "syncopated":
        offbeats = [s for s in range(1, len(steps)) if s % 2 == 0 or s % 4 == 3]  # 8ths + "a"s
        picks = rng.choice(offbeats, size=min(3, len(offbeats)), replace=False) if offbeats else []
        onsets = sorted({0} | {int(s) for s in picks})
        rhythm = [(s, (onsets + [len(steps)])[i + 1] - s) for i, s in enumerate(onsets)]
    else:  # roots, root_fifth, walking: one note per pulse-ish
        step = plan.meter.steps_per_pulse if plan.meter.name == "6/8" else 4
        rhythm = [(i, step) for i in range(0, len(steps), step)]
    notes = []
    for k, (i, dur) in enumerate(rhythm):
        pitch = root
        if style == "root_fifth" and k % 2 == 1:
            pitch = fifth
        elif style == "walking" and k > 0:
            pitch = _walk(plan, slot.chord, root, k, len(rhythm), slot.start + slot.length, rng)
        elif style == "eighths" and k % 4 == 3 and rng.random() < 0.3:
            pitch = root + 12
        legato = 0.5 if style == "syncopated" and rng.random() < 0.4 else 0.92
        notes.append(_note(plan, steps[i], dur * 0.25 * legato, pitch, 96 if k == 0 else 84, rng))
    return notes


def _walk(plan: SongPlan, chord: Chord, root: int, k: int, n: int, next_start: float,
          rng: np.random.Generator) -> int:
    """Walking bass: chord tones, last note a chromatic/scale approach to the next root."""
    if k == n - 1:
        target = plan.chord_at(next_start).bass_pitch(28)
        return target + int(rng.choice([-1, 1, 2]))
    return root + chord.intervals[int(rng.integers(len(chord.intervals)))] + (12 if rng.random() < 0.3 else 0)


def comp_part(plan: SongPlan, rng: np.random.Generator, presets: frozenset, role: str) -> Part:
    """Keys or guitar comping: sustained chords, block rhythms, arpeggios or strums."""
    program = _program(rng, role, presets)
    part = Part(role, "other", program, role=role)
    for section in plan.sections:
        if rng.random() > _presence(section, 0.7, 0.95):
            continue
        style = _comp_style(role, program, section, rng)
        for slot in section.chords:
            part.notes += COMP_STYLES[style](plan, slot, rng)
    return part


def _comp_style(role: str, program: int, section: Section, rng: np.random.Generator) -> str:
    if section.energy == 1:
        return str(rng.choice(["sustain", "arpeggio"]))
    if role == "guitar":
        return "power" if program in DISTORTED else str(rng.choice(["strum", "strum", "arpeggio"]))
    return str(rng.choice(["block", "offbeat", "arpeggio"] + (["block"] if section.energy == 3 else [])))


def pad_part(plan: SongPlan, rng: np.random.Generator, presets: frozenset) -> Part:
    """Sustained, widely voiced chords (strings, pads)."""
    part = Part("pad", "other", _program(rng, "pad", presets), role="pad")
    for section in plan.sections:
        if rng.random() > _presence(section, 0.75, 0.7):
            continue
        for slot in section.chords:
            part.notes += _chord_notes(plan, slot, 0, slot.length, _voicing(slot.chord, 60, 4, rng), 64, rng)
    return part


def lead_part(plan: SongPlan, rng: np.random.Generator, presets: frozenset) -> Part:
    """Instrumental melody in intros/bridges/outros and short answers in choruses."""
    part = Part("lead", "other", _program(rng, "lead", presets), role="lead")
    for section in plan.sections:
        instrumental = section.kind in ("intro", "bridge", "outro")
        if rng.random() > (0.8 if instrumental else 0.25):
            continue
        pitch = plan.key.degree_pitch(int(rng.integers(0, 7)), 5)
        for bar_start in np.arange(section.start, section.end(plan.meter.bar_beats), plan.meter.bar_beats):
            if not instrumental and rng.random() < 0.6:
                continue
            notes, pitch = _lead_bar(plan, float(bar_start), pitch, rng)
            part.notes += notes
    return part


def _lead_bar(plan: SongPlan, bar_start: float, pitch: int, rng: np.random.Generator) -> tuple[list[Note], int]:
    """A bar of stepwise melody ending on a chord tone."""
    steps, onsets, s = plan.meter.steps_per_bar, [], 0
    while s < steps:
        onsets.append(s)
        s += int(rng.choice([2, 4, 6, 8], p=[0.45, 0.35, 0.1, 0.1]))
    notes = []
    for i, s in enumerate(onsets):
        end = onsets[i + 1] if i + 1 < len(onsets) else steps
        pitch = _step_in_scale(plan, pitch + int(rng.choice([-4, -2, -1, 1, 2, 3, 5])), 62, 86)
        if i == len(onsets) - 1:
            pitch = _nearest_chord_tone(plan.chord_at(bar_start + s / 4), pitch)
        notes.append(_note(plan, bar_start + s / 4, (end - s) / 4 * 0.9, pitch, 88, rng))
    return notes, pitch


# -- comping styles: (plan, slot, rng) -> notes ----------------------------------------

def _sustain(plan: SongPlan, slot: ChordSlot, rng: np.random.Generator) -> list[Note]:
    return _chord_notes(plan, slot, 0, slot.length, _voicing(slot.chord, 60, 3, rng), 70, rng)


def _block(plan: SongPlan, slot: ChordSlot, rng: np.random.Generator) -> list[Note]:
    voicing = _voicing(slot.chord, 62, 4, rng)
    step = plan.meter.steps_per_pulse
    onsets = range(0, int(slot.length * 4), step * int(rng.choice([1, 2])))
    return [n for s in onsets for n in _chord_notes(plan, slot, s / 4, step / 4 * 0.85, voicing, 84, rng)]


def _offbeat(plan: SongPlan, slot: ChordSlot, rng: np.random.Generator) -> list[Note]:
    voicing = _voicing(slot.chord, 64, 3, rng)
    onsets = range(2, int(slot.length * 4), 4)
    return [n for s in onsets for n in _chord_notes(plan, slot, s / 4, 0.2, voicing, 80, rng)]


def _arpeggio(plan: SongPlan, slot: ChordSlot, rng: np.random.Generator) -> list[Note]:
    tones = _voicing(slot.chord, 60, 4, rng)
    order = tones + tones[-2:0:-1] if rng.random() < 0.5 else tones
    rate = int(rng.choice([1, 2]))
    return [_note(plan, slot.start + s / 4, rate / 4 * 1.6, order[i % len(order)], 72 if i else 84, rng)
            for i, s in enumerate(range(0, int(slot.length * 4), rate))]


def _strum(plan: SongPlan, slot: ChordSlot, rng: np.random.Generator) -> list[Note]:
    """8th-note strums, down on the beat and up off it; strings spread by ~10 ms."""
    voicing = _guitar_voicing(slot.chord)
    pattern = [s for s in range(0, int(slot.length * 4), 2) if s % 4 == 0 or rng.random() < 0.6]
    spread = 0.010 / plan.beat_seconds
    notes = []
    for s in pattern:
        strings = voicing if s % 4 == 0 else voicing[::-1][:4]
        for i, pitch in enumerate(strings):
            notes.append(_note(plan, slot.start + s / 4 + i * spread, 0.45, pitch,
                               (90 if s % 4 == 0 else 70) - 3 * i, rng))
    return notes


def _power(plan: SongPlan, slot: ChordSlot, rng: np.random.Generator) -> list[Note]:
    root = slot.chord.bass_pitch(40)
    chord = [root, root + 7, root + 12]
    onsets = range(0, int(slot.length * 4), 2)
    return [n for s in onsets for n in _chord_notes(plan, slot, s / 4, 0.45, chord, 96 if s % 4 == 0 else 80, rng)]


COMP_STYLES: dict[str, Callable[[SongPlan, ChordSlot, np.random.Generator], list[Note]]] = {
    "sustain": _sustain, "block": _block, "offbeat": _offbeat, "arpeggio": _arpeggio,
    "strum": _strum, "power": _power,
}


# -- helpers ----------------------------------------------------------------------------

def _program(rng: np.random.Generator, role: str, presets: frozenset) -> int:
    pool = [p for p in PROGRAMS[role] if (0, p) in presets] or [PROGRAMS[role][0]]
    return int(rng.choice(pool))


def _presence(section: Section, base: float, chorus: float) -> float:
    """Probability that a part plays in this section."""
    return {"intro": base * 0.6, "chorus": chorus, "outro": base * 0.6}.get(section.kind, base)


def _slot_steps(slot: ChordSlot) -> list[float]:
    return [slot.start + i / 4 for i in range(max(1, int(round(slot.length * 4))))]


def _note(plan: SongPlan, beat: float, length: float, pitch: int, vel: float,
          rng: np.random.Generator) -> Note:
    return Note(perform(beat, plan.feel, rng), max(0.05, length), int(pitch), velocity(rng, vel, 6))


def _chord_notes(plan: SongPlan, slot: ChordSlot, offset: float, length: float, pitches: list[int],
                 vel: float, rng: np.random.Generator) -> list[Note]:
    start = perform(slot.start + offset, plan.feel, rng)
    return [Note(start, length, int(p), velocity(rng, vel, 5)) for p in pitches]


def _voicing(chord: Chord, center: int, size: int, rng: np.random.Generator) -> list[int]:
    """Close-position voicing of `size` notes, a random inversion, near `center`."""
    pcs = list(chord.pitch_classes)
    inversion = int(rng.integers(len(pcs)))
    pcs = pcs[inversion:] + pcs[:inversion]
    pitch = center - 6 + (pcs[0] - (center - 6)) % 12
    out = [pitch]
    for i in range(1, size):
        nxt = out[-1] + 1 + (pcs[i % len(pcs)] - out[-1] - 1) % 12
        out.append(nxt)
    return out


def _guitar_voicing(chord: Chord) -> list[int]:
    """Six-string-like voicing: root in E2..D#3, then chord tones stacked upward."""
    root = 40 + (chord.root - 40) % 12
    out = [root]
    pcs = chord.pitch_classes
    while len(out) < 6:
        out.append(out[-1] + 3 + (pcs[len(out) % len(pcs)] - out[-1] - 3) % 12)
    return out


def _step_in_scale(plan: SongPlan, pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return plan.key.snap(pitch)


def _nearest_chord_tone(chord: Chord, pitch: int) -> int:
    return min((pitch + d for d in range(-6, 7) if (pitch + d) % 12 in chord.pitch_classes),
               key=lambda p: abs(p - pitch))
