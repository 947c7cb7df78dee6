"""Procedural multitrack corpus generator (Slakh-style): random songs written as MIDI,
rendered per instrument and per drum piece with FluidSynth and a GM soundfont, sung
by espeak-ng (voice.py), mixed with light effects into exact MUSDB-layout stems.

Pipeline (one module per step): music.py (plan: tempo, key, meter, feel, form,
chords) -> drums.py / parts.py / melody.py (notes) -> compose.py (Score) ->
render.py (fluid.py, voice.py: dry audio per part) -> mix.py (effects.py: stems)
-> corpus.py (folders, MIDI via midi.py, parallel jobs) -> cli.py.
"""

from __future__ import annotations

import shutil

from stemforge.errors import StemforgeError

__all__ = ["generate_corpus", "generate_song", "write_song", "render_example", "missing_tools"]


def missing_tools() -> list[str]:
    """What this machine lacks to render songs (empty when everything is there)."""
    from stemforge.synth.fluid import load_library
    from stemforge.synth.soundfont import find_soundfont

    missing = []
    try:
        load_library()
    except StemforgeError:
        missing.append("libfluidsynth (apt-get install fluidsynth)")
    try:
        find_soundfont()
    except StemforgeError:
        missing.append("a GM soundfont (apt-get install timgm6mb-soundfont or fluid-soundfont-gm)")
    if shutil.which("espeak-ng") is None:
        missing.append("espeak-ng (apt-get install espeak-ng)")
    return missing


def __getattr__(name: str):
    """Lazy re-exports, so `import stemforge.synth` stays cheap."""
    if name in ("generate_corpus", "generate_song", "write_song", "render_example"):
        from stemforge.synth import corpus

        return getattr(corpus, name)
    raise AttributeError(name)
