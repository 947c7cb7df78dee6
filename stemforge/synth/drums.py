"""Drum grooves and fills on the GM percussion map, one part per drum piece.

A groove is a list of hits ``(voice, step, velocity)`` for one bar on the 16th-note
grid of the meter; voices ("kick", "ride", "tom_lo", ...) map to GM drum notes and
each note belongs to one of the five pieces (kick, snare, toms, hihat, cymbals).
Each section draws its own groove (timekeeper, kick pattern, density); the last bar
of a section or phrase often ends in a fill, and a crash marks section starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemforge.synth.music import Meter, Section, SongPlan
from stemforge.synth.score import DRUM_KIT_PROGRAMS, DRUM_PIECES, Note, Part, perform, velocity
from stemforge.synth.soundfont import find_soundfont, list_presets

Hit = tuple[str, int, float]  # (voice, step in bar, velocity)

VOICE_PIECE = {
    "kick": "kick", "snare": "snare", "ghost": "snare", "stick": "snare", "clap": "snare",
    "tom_hi": "toms", "tom_mid": "toms", "tom_lo": "toms",
    "hat": "hihat", "open": "hihat", "pedal": "hihat",
    "crash": "cymbals", "ride": "cymbals", "bell": "cymbals", "splash": "cymbals", "china": "cymbals",
}
VOICE_NOTES = {  # GM percussion key choices for each voice
    "kick": (36, 35), "snare": (38, 40), "ghost": (38,), "stick": (37,), "clap": (39,),
    "tom_hi": (50, 48), "tom_mid": (47, 45), "tom_lo": (43, 41),
    "hat": (42,), "open": (46,), "pedal": (44,),
    "crash": (49, 57), "ride": (51, 59), "bell": (53,), "splash": (55,), "china": (52,),
}
AVL_NOTES = {  # x42's AVLDrums kits (Debian: avldrums.lv2-soundfont), read from their sample names:
    # GM keys, but one rack tom (45 centre, 47 edge) and one floor tom (41, 43), no china (52 is
    # a ride choke, 60 an unnamed 22" Paiste: a second crash stands in)
    **VOICE_NOTES,
    "kick": (36,), "tom_hi": (45,), "tom_mid": (47,), "tom_lo": (41, 43), "china": (57,),
}
KIT_LAYOUTS = {"Black_Pearl_4_LV2.sf2": AVL_NOTES, "Red_Zeppelin_4_LV2.sf2": AVL_NOTES}
KIT_SHARE = 0.5  # with extra kit soundfonts: the share of songs drumming on one of them
KIT_WEIGHTS = (0.3, 0.14, 0.14, 0.08, 0.1, 0.1, 0.08, 0.06)  # aligned with DRUM_KIT_PROGRAMS
DRUM_LENGTH = {"crash": 3.0, "china": 2.0, "splash": 1.5, "ride": 1.0, "bell": 1.0, "open": 0.5}


@dataclass(frozen=True)
class KitSoundfont:
    """A soundfont that holds one drum kit: its preset and the keys of each voice."""

    path: Path
    bank: int
    program: int
    notes: Mapping[str, tuple[int, ...]]


def kit_soundfont(path: str | Path) -> KitSoundfont:
    """The kit in the .sf2 at `path` (its first preset). Known kits get their own key map
    (KIT_LAYOUTS); any other file is assumed to follow the GM percussion map."""
    path = find_soundfont(path).resolve()
    bank, program = min(list_presets(path))
    return KitSoundfont(path, bank, program, KIT_LAYOUTS.get(path.name, VOICE_NOTES))


def drum_parts(plan: SongPlan, rng: np.random.Generator, presets: frozenset,
               kits: Sequence[KitSoundfont] = ()) -> list[Part]:
    """Five parts (kick, snare, toms, hihat, cymbals) sharing one random kit: a GM kit among
    `presets` (the main soundfont's (bank, program) pairs) or, for KIT_SHARE of the songs
    when `kits` are given, one of those kit soundfonts."""
    if kits and rng.random() < KIT_SHARE:
        font = kits[int(rng.integers(len(kits)))]
        bank, kit, notes, path = font.bank, font.program, font.notes, font.path
    else:  # no draw without kits: corpora made before kits existed stay the same
        bank, kit, notes, path = 128, _draw_kit(rng, plan, presets), VOICE_NOTES, None
    keys = {voice: int(rng.choice(choices)) for voice, choices in notes.items()}
    hits: list[tuple[str, float, float]] = []  # (voice, nominal beat, velocity)
    for section in plan.sections:
        hits += _section_hits(section, plan.meter, rng)
    parts = {piece: Part(piece, "drums", kit, bank, role="drums", soundfont=path) for piece in DRUM_PIECES}
    for voice, beat, vel in sorted(hits, key=lambda h: h[1]):
        start = perform(beat, plan.feel, rng, jitter=0.006)
        length = DRUM_LENGTH.get(voice, 0.25)
        parts[VOICE_PIECE[voice]].notes.append(Note(start, length, keys[voice], velocity(rng, vel, 5)))
    return list(parts.values())


def _draw_kit(rng: np.random.Generator, plan: SongPlan, presets: frozenset) -> int:
    weights = np.array(KIT_WEIGHTS) * [(128, kit) in presets for kit in DRUM_KIT_PROGRAMS]
    if plan.feel.name == "swing":
        weights[5:7] *= 4  # jazz and brush kits suit swing
    if weights.sum() == 0:
        return 0
    return int(rng.choice(DRUM_KIT_PROGRAMS, p=weights / weights.sum()))


def _section_hits(section: Section, meter: Meter, rng: np.random.Generator) -> list[tuple[str, float, float]]:
    """All hits of one section, in nominal beats."""
    groove = draw_groove(meter, section.energy, rng)
    out = []
    for bar in range(section.bars):
        bar_hits = _vary(groove, meter, rng)
        last = bar == section.bars - 1
        phrase_end = bar % 4 == 3
        if (last and rng.random() < 0.85) or (phrase_end and not last and rng.random() < 0.4):
            bar_hits = with_fill(bar_hits, meter, rng, long=last)
        if bar == 0 and (section.energy > 1 or rng.random() < 0.5):
            accent = str(rng.choice(["crash", "china", "splash"], p=[0.8, 0.1, 0.1]))
            bar_hits = bar_hits + [(accent, 0, 112.0), ("kick", 0, 110.0)]
        start = section.start + bar * meter.bar_beats
        out += [(voice, start + step / 4, vel) for voice, step, vel in bar_hits]
    return out


def draw_groove(meter: Meter, energy: int, rng: np.random.Generator) -> list[Hit]:
    """One bar of timekeeping + kick + snare for a meter and energy (1 sparse .. 3 full)."""
    steps, pulse = meter.steps_per_bar, meter.steps_per_pulse
    keeper = _timekeeper(meter, energy, rng)
    kick, snare = _kick_snare(meter, energy, rng)
    hits = keeper + [("kick", s, 108.0) for s in kick]
    snare_voice = "stick" if energy == 1 and rng.random() < 0.5 else str(rng.choice(["snare", "snare", "clap"]))
    hits += [(snare_voice, s, 104.0) for s in snare]
    if energy >= 2 and rng.random() < 0.4:  # ghost notes on weak 16ths
        free = [s for s in range(steps) if s % 2 == 1 and s not in snare]
        hits += [("ghost", int(s), 38.0) for s in rng.choice(free, size=min(2, len(free)), replace=False)]
    if energy == 2 and rng.random() < 0.15:  # tom groove instead of hats (bridge/verse colour)
        hits = [h for h in hits if h[0] not in ("hat", "open")]
        hits += [("tom_lo", s, 92.0) for s in range(0, steps, pulse // 2)]
    return hits


def _timekeeper(meter: Meter, energy: int, rng: np.random.Generator) -> list[Hit]:
    steps, pulse = meter.steps_per_bar, meter.steps_per_pulse
    choice = rng.choice(["hat8", "hat16", "ride", "open_off", "hat4"],
                        p={1: [0.4, 0.1, 0.2, 0.0, 0.3], 2: [0.45, 0.25, 0.15, 0.1, 0.05],
                           3: [0.3, 0.2, 0.25, 0.25, 0.0]}[energy])
    if choice == "hat16":
        return [("hat", s, 84.0 if s % 4 == 0 else 62.0 if s % 2 == 0 else 50.0) for s in range(steps)]
    if choice == "hat4":
        return [("hat", s, 80.0) for s in range(0, steps, 4)] + [("pedal", s, 60.0) for s in range(2, steps, 4)]
    if choice == "ride":
        on_pulse = "bell" if energy == 3 and rng.random() < 0.3 else "ride"
        out = [(on_pulse if s % pulse == 0 else "ride", s, 90.0 if s % pulse == 0 else 72.0)
               for s in range(0, steps, 2)]
        if meter.name == "4/4":
            out += [("pedal", 4, 70.0), ("pedal", 12, 70.0)]
        return out
    if choice == "open_off":
        return [("hat", s, 86.0) for s in range(0, steps, 4)] + [("open", s, 80.0) for s in range(2, steps, 4)]
    return [("hat", s, 86.0 if s % pulse == 0 else 66.0) for s in range(0, steps, 2)]


def _kick_snare(meter: Meter, energy: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Kick and backbeat steps for the meter."""
    if meter.name == "6/8":
        return [0] + ([10] if rng.random() < 0.5 else []), [6]
    if meter.name == "3/4":
        return [0] + ([6] if rng.random() < 0.3 else []), [4, 8] if energy > 1 else [8]
    kick = [0, 8]
    if energy == 3 and rng.random() < 0.3:
        kick = [0, 4, 8, 12]  # four on the floor
    extras = rng.choice([3, 6, 7, 10, 11, 14], size=int(rng.integers(0, 3 if energy > 1 else 1)), replace=False)
    kick = sorted(set(kick) | {int(s) for s in extras})
    snare = [8] if energy == 1 and rng.random() < 0.5 else [4, 12]
    if energy > 1 and rng.random() < 0.1:
        snare = [8]  # half time
    return kick, snare


def _vary(groove: list[Hit], meter: Meter, rng: np.random.Generator) -> list[Hit]:
    """Small per-bar variations: drop or add a kick, open a hat at the bar end."""
    hits = list(groove)
    if rng.random() < 0.25:
        hits.append(("kick", int(rng.integers(meter.steps_per_bar // 2, meter.steps_per_bar)), 96.0))
    if rng.random() < 0.15:
        hits = [h for h in hits if not (h[0] == "hat" and h[1] == meter.steps_per_bar - 2)]
        hits.append(("open", meter.steps_per_bar - 2, 84.0))
    return hits


def with_fill(hits: list[Hit], meter: Meter, rng: np.random.Generator, long: bool) -> list[Hit]:
    """Replace the end of the bar by a snare/tom fill of 1, 2 or (rarely) all pulses."""
    pulse = meter.steps_per_pulse
    n_pulses = int(rng.choice([1, 2, meter.pulses], p=[0.45, 0.4, 0.15])) if long else 1
    n_pulses = min(n_pulses, meter.pulses)
    start = meter.steps_per_bar - n_pulses * pulse
    rate = 1 if rng.random() < 0.6 else 2  # 16ths or 8ths
    steps = list(range(start, meter.steps_per_bar, rate))
    kept = [h for h in hits if h[1] < start or h[0] in ("kick", "pedal") and h[1] == start]
    return kept + _fill_voices(steps, rng)


def _fill_voices(steps: list[int], rng: np.random.Generator) -> list[Hit]:
    kind = rng.choice(["descend", "roll", "alternate"], p=[0.55, 0.2, 0.25])
    n = len(steps)
    if kind == "roll":
        voices = ["snare"] * n
    elif kind == "alternate":
        voices = [("snare", "tom_hi", "tom_mid", "tom_lo")[i % 2 + 2 * (i >= n // 2)] for i in range(n)]
    else:
        order = ["snare", "tom_hi", "tom_mid", "tom_lo"]
        voices = [order[min(3, i * 4 // max(1, n))] for i in range(n)]
    hits = [(v, s, 70.0 + 40.0 * i / max(1, n - 1)) for i, (v, s) in enumerate(zip(voices, steps, strict=True))]
    if rng.random() < 0.5:
        hits.append(("kick", steps[-1], 100.0))
    return hits
