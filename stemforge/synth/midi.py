"""Write the score as a type-1 Standard MIDI File (one track per part) with mido.

Drum pieces are separate tracks on channel 10 (index 9) sharing the kit program;
pitched parts get their own channels; the sung lead carries its words as lyrics.
"""

from __future__ import annotations

from pathlib import Path

import mido

from stemforge.synth.score import Part, Score

TICKS_PER_BEAT = 480


def write_midi(score: Score, path: Path) -> None:
    plan = score.plan
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    numerator, denominator = plan.meter.signature
    midi.tracks.append(mido.MidiTrack([
        mido.MetaMessage("track_name", name="song", time=0),
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(plan.tempo), time=0),
        mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0),
        mido.MetaMessage("key_signature", key=plan.key.midi_signature, time=0),
    ]))
    channels = iter([c for c in range(16) if c != 9])
    for part in score.parts:
        channel = 9 if part.is_drum else next(channels)
        midi.tracks.append(_track(part, channel))
    midi.save(str(path))


def _track(part: Part, channel: int) -> mido.MidiTrack:
    """Absolute-tick events -> delta-time track (note-offs before note-ons at a tick)."""
    timed = [(0, 0, mido.MetaMessage("track_name", name=part.name)),
             (0, 0, mido.Message("program_change", channel=channel, program=part.program))]
    lyrics = part.lyrics or []
    for i, note in enumerate(part.notes):
        on = int(round(note.start * TICKS_PER_BEAT))
        off = max(on + 1, int(round((note.start + note.length) * TICKS_PER_BEAT)))
        if i < len(lyrics):
            timed.append((on, 1, mido.MetaMessage("lyrics", text=lyrics[i])))
        timed.append((on, 2, mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity)))
        timed.append((off, 0, mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)))
    track, now = mido.MidiTrack(), 0
    for tick, _, message in sorted(timed, key=lambda item: (item[0], item[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    return track
