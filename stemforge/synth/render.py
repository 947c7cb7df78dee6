"""Score -> dry audio, one array per part: FluidSynth for instruments and drum pieces,
the espeak-ng singer (voice.py) for the sung lead."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stemforge.synth.fluid import BLOCK, Event, renderer
from stemforge.synth.score import Part, Score
from stemforge.synth.voice import sing


def render_parts(score: Score, soundfont: Path, rng: np.random.Generator,
                 sample_rate: int = 44100) -> dict[str, np.ndarray]:
    """Dry audio of every part, by part name: each [2, samples] float32 (song length)."""
    n_samples = int(round(score.plan.seconds * sample_rate))
    beat = score.plan.beat_seconds
    out = {}
    for part in score.parts:
        if part.singer:
            mono = sing(part.notes, part.lyrics or [], part.singer, beat, n_samples, rng, sample_rate)
            out[part.name] = np.stack([mono, mono])
        else:
            events = note_events(part, beat * sample_rate)
            synth = renderer(part.soundfont or soundfont, sample_rate)
            out[part.name] = synth.render(events, part.bank, part.program, n_samples, drums=part.is_drum)
    return out


def note_events(part: Part, samples_per_beat: float) -> list[Event]:
    """Note-on/off events in samples. A note lasts at least two blocks; a note is cut
    where the next note of the same pitch starts (so an old note-off cannot silence the
    new note); a repeat of a pitch within two blocks of its last onset is dropped."""
    events: list[Event] = []
    last: dict[int, tuple[int, int]] = {}  # pitch -> (onset sample, index of its note-off)
    for note in sorted(part.notes, key=lambda n: (n.start, n.pitch)):
        on = int(round(note.start * samples_per_beat))
        off = max(on + 2 * BLOCK, int(round((note.start + note.length) * samples_per_beat)))
        if note.pitch in last:
            last_on, off_index = last[note.pitch]
            if on - last_on < 2 * BLOCK:
                continue
            if events[off_index].sample > on:
                events[off_index] = Event(on, "off", note.pitch)
        events.append(Event(on, "on", note.pitch, note.velocity))
        events.append(Event(off, "off", note.pitch))
        last[note.pitch] = (on, len(events) - 1)
    return events
