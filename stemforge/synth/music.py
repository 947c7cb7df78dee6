"""Music theory and song form: keys, chords, progressions, meters, feels, sections.

`plan_song` draws the global decisions of a song (tempo, key, meter, feel, form and
the chord of every beat); the part generators (drums.py, parts.py, melody.py) then
write notes against that plan. All times are in quarter-note beats from the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
# Scale degrees (0 = tonic) of common progressions, per mode family.
PROGRESSIONS = {
    "major": [(0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 4, 3), (1, 4, 0, 0),
              (0, 3, 0, 4), (3, 4, 2, 5), (0, 2, 3, 4), (0, 4, 3, 3)],
    "minor": [(0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2),
              (5, 6, 0, 0), (0, 2, 5, 4)],
}
SECTION_ENERGY = {"intro": 1, "verse": 2, "chorus": 3, "bridge": 2, "outro": 1}
FORM = ("verse", "chorus", "verse", "chorus", "bridge", "chorus", "chorus", "outro")  # then random


@dataclass(frozen=True)
class Meter:
    """Time signature on a 16th-note step grid (a step is 0.25 beat)."""

    name: str
    steps_per_bar: int
    steps_per_pulse: int  # 4 for x/4 (quarter pulse), 6 for 6/8 (dotted-quarter pulse)

    @property
    def bar_beats(self) -> float:
        return self.steps_per_bar / 4

    @property
    def pulses(self) -> int:
        return self.steps_per_bar // self.steps_per_pulse

    @property
    def signature(self) -> tuple[int, int]:
        return (6, 8) if self.name == "6/8" else (self.steps_per_bar // 4, 4)


METERS = {"4/4": Meter("4/4", 16, 4), "3/4": Meter("3/4", 12, 4), "6/8": Meter("6/8", 12, 6)}


@dataclass(frozen=True)
class Feel:
    """Timing feel: 'straight', 'swing' (swung 8ths) or 'shuffle' (swung 16ths).
    `ratio` is where the off-beat lands inside its pair (0.5 straight, 2/3 triplet)."""

    name: str = "straight"
    ratio: float = 0.5

    def warp(self, beat: float) -> float:
        """Nominal beat position -> performed beat position."""
        if self.name == "straight":
            return beat
        span = 1.0 if self.name == "swing" else 0.5
        cell, frac = divmod(beat, span)
        frac /= span
        if frac < 0.5:
            frac = frac / 0.5 * self.ratio
        else:
            frac = self.ratio + (frac - 0.5) / 0.5 * (1 - self.ratio)
        return (cell + frac) * span


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0..11
    mode: str

    @property
    def scale(self) -> tuple[int, ...]:
        """Pitch classes of the scale, tonic first."""
        return tuple((self.tonic + i) % 12 for i in MODES[self.mode])

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic]} {self.mode}"

    @property
    def midi_signature(self) -> str:
        """Key name for a MIDI key_signature event (modes map to their relative major)."""
        if self.mode == "minor":
            return NOTE_NAMES[self.tonic] + "m"
        offset = {"major": 0, "dorian": 10, "mixolydian": 5}[self.mode]
        return NOTE_NAMES[(self.tonic + offset) % 12]

    def degree_pitch(self, degree: int, octave: int) -> int:
        """MIDI pitch of a (possibly negative or > 6) scale degree above C of `octave`."""
        octs, step = divmod(degree, 7)
        return 12 * (octave + 1 + octs) + self.tonic + MODES[self.mode][step]

    def snap(self, pitch: int) -> int:
        """The nearest scale pitch at or below `pitch`."""
        while pitch % 12 not in self.scale:
            pitch -= 1
        return pitch


@dataclass(frozen=True)
class Chord:
    root: int  # pitch class
    intervals: tuple[int, ...]  # semitones above the root, root included (0)

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in self.intervals)

    @property
    def name(self) -> str:
        third = "m" if 3 in self.intervals else ""
        seventh = "7" if len(self.intervals) > 3 else ""
        return NOTE_NAMES[self.root] + third + seventh

    def bass_pitch(self, low: int = 28) -> int:
        """The root in the bass register, lowest octave at or above `low`."""
        return low + (self.root - low) % 12

    def fifth(self) -> int:
        return self.intervals[2] if len(self.intervals) > 2 else 7


def diatonic_chord(key: Key, degree: int, seventh: bool = False) -> Chord:
    """Stack scale thirds on `degree`: a triad, or a seventh chord."""
    mode = MODES[key.mode]
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    root = mode[degree % 7]
    intervals = tuple(((mode[(degree + s) % 7] - root) % 12) for s in steps)
    return Chord((key.tonic + root) % 12, intervals)


@dataclass(frozen=True)
class ChordSlot:
    start: float  # beats
    length: float
    chord: Chord


@dataclass(frozen=True)
class Section:
    kind: str  # intro / verse / chorus / bridge / outro
    start: float  # beats
    bars: int
    energy: int  # 1 (sparse) .. 3 (full)
    chords: tuple[ChordSlot, ...]

    def end(self, bar_beats: float) -> float:
        return self.start + self.bars * bar_beats


@dataclass(frozen=True)
class SongPlan:
    tempo: float  # quarter notes per minute
    key: Key
    meter: Meter
    feel: Feel
    sections: tuple[Section, ...]
    seconds: float

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.tempo

    @property
    def total_beats(self) -> float:
        return self.sections[-1].end(self.meter.bar_beats)

    def bars(self):
        """Yield (section, bar index in section, bar start beat) for every bar."""
        for section in self.sections:
            for i in range(section.bars):
                yield section, i, section.start + i * self.meter.bar_beats

    def chord_at(self, beat: float) -> Chord:
        for section in self.sections:
            for slot in section.chords:
                if slot.start <= beat < slot.start + slot.length:
                    return slot.chord
        return self.sections[-1].chords[-1].chord


def plan_song(rng: np.random.Generator, seconds: float) -> SongPlan:
    """Draw tempo, key, meter, feel and a form long enough to cover `seconds`."""
    meter = METERS[rng.choice(["4/4", "3/4", "6/8"], p=[0.76, 0.12, 0.12])]
    feel = _draw_feel(rng, meter)
    tempo = _draw_tempo(rng, meter, feel)
    mode = rng.choice(list(MODES), p=[0.5, 0.34, 0.08, 0.08])
    key = Key(int(rng.integers(12)), str(mode))
    bar_seconds = meter.bar_beats * 60.0 / tempo
    bars_needed = math.ceil(seconds / bar_seconds) + 1
    sections = _draw_form(rng, key, meter, feel, bars_needed)
    return SongPlan(tempo, key, meter, feel, sections, seconds)


def _draw_feel(rng: np.random.Generator, meter: Meter) -> Feel:
    if meter.name == "6/8":
        return Feel()
    name = rng.choice(["straight", "swing", "shuffle"], p=[0.64, 0.2, 0.16])
    if name == "straight":
        return Feel()
    return Feel(str(name), float(rng.uniform(0.58, 0.68)))


def _draw_tempo(rng: np.random.Generator, meter: Meter, feel: Feel) -> float:
    low, high = {"4/4": (78, 150), "3/4": (90, 170), "6/8": (84, 126)}[meter.name]
    if feel.name == "shuffle":
        low, high = 70, 110
    return float(round(rng.uniform(low, high), 1))


def _draw_form(rng: np.random.Generator, key: Key, meter: Meter, feel: Feel,
               bars_needed: int) -> tuple[Section, ...]:
    """Sections (intro? verse chorus ...) until `bars_needed` bars are covered. Short songs
    get short sections (2 bars up to 6 bars, 4 up to 12) and no intro."""
    short = bars_needed <= 12
    family = "minor" if key.mode in ("minor", "dorian") else "major"
    sevenths = feel.name != "straight" and rng.random() < 0.6
    progressions = {kind: PROGRESSIONS[family][rng.integers(len(PROGRESSIONS[family]))]
                    for kind in SECTION_ENERGY}
    rate = rng.choice([1, 2, 0.5], p=[0.6, 0.25, 0.15]) if meter.name == "4/4" else 1
    kinds = list(FORM)
    if not short and rng.random() < 0.8:
        kinds.insert(0, "intro")
    else:
        kinds = kinds[int(rng.integers(2)):]  # short songs may start on the chorus
    sections, beat, bars_done = [], 0.0, 0
    while bars_done < bars_needed:
        i = len(sections)
        kind = kinds[i] if i < len(kinds) else str(rng.choice(["verse", "chorus", "bridge"]))
        if short:
            bars = 2 if bars_needed <= 6 else 4
        elif kind in ("intro", "outro"):
            bars = int(rng.choice([2, 4]))
        else:
            bars = int(rng.choice([4, 8], p=[0.3, 0.7]))
        chords = _chord_slots(key, progressions[kind], beat, bars, meter.bar_beats, rate, sevenths)
        sections.append(Section(kind, beat, bars, SECTION_ENERGY[kind], chords))
        beat += bars * meter.bar_beats
        bars_done += bars
    return tuple(sections)


def _chord_slots(key: Key, progression: tuple[int, ...], start: float, bars: int,
                 bar_beats: float, per_bar: float, sevenths: bool) -> tuple[ChordSlot, ...]:
    """Cycle the progression over the section at `per_bar` chords per bar."""
    length = bar_beats / per_bar
    count = max(1, int(round(bars * per_bar)))
    return tuple(ChordSlot(start + i * length, length,
                           diatonic_chord(key, progression[i % len(progression)], sevenths))
                 for i in range(count))
