"""Render one part's notes to audio with libfluidsynth, in process, through ctypes.

Why not the ``fluidsynth`` CLI: one song needs ~12 renders (one per drum piece and
per instrument) and the CLI reloads the soundfont for each (0.15 s for FluidR3),
goes through temporary MIDI files and writes 16-bit dithered WAVs. Why not
pyfluidsynth: its ``get_samples`` is 16-bit (dithered) too. Here the soundfont is
loaded once per process, events are applied at exact sample positions and the
output is float32, so renders are fast, exact and bit-reproducible.

Determinism: a synth that has played before does not sound bit-identical after
``fluid_synth_system_reset`` (reused voice slots keep some DSP state), so every
part is played by a brand-new synth that borrows the soundfont loaded once by a
"loader" synth (``fluid_synth_add_sfont``; creating a synth costs ~1 ms, loading
FluidR3 ~150 ms). FluidSynth renders in blocks of 64 samples and applies events at
block boundaries, so event times are rounded to multiples of 64 samples (1.45 ms).
Reverb, chorus and multithreading are off. A render depends only on its inputs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from stemforge.errors import StemforgeError

BLOCK = 64  # FluidSynth's internal block size (FLUID_BUFSIZE)
LOG_WARN = 2
_P = ctypes.c_void_p


@dataclass(frozen=True)
class Event:
    """A MIDI event at an absolute sample position: kind is 'on' or 'off'."""

    sample: int
    kind: str
    pitch: int
    velocity: int = 0


@lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """libfluidsynth (the ``libfluidsynth3`` package, pulled in by ``fluidsynth``)."""
    names = ["libfluidsynth.so.3", ctypes.util.find_library("fluidsynth"), "libfluidsynth.so.2"]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        _declare(lib)
        return lib
    raise StemforgeError("libfluidsynth not found; install it with "
                         "apt-get install --no-install-recommends fluidsynth")


def _declare(lib: ctypes.CDLL) -> None:
    """ctypes signatures of the few functions used here."""
    sig = {
        "new_fluid_settings": (_P, []),
        "delete_fluid_settings": (None, [_P]),
        "fluid_settings_setnum": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_double]),
        "fluid_settings_setint": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int]),
        "new_fluid_synth": (_P, [_P]),
        "delete_fluid_synth": (None, [_P]),
        "fluid_synth_sfload": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int]),
        "fluid_synth_get_sfont_by_id": (_P, [_P, ctypes.c_int]),
        "fluid_synth_add_sfont": (ctypes.c_int, [_P, _P]),
        "fluid_synth_remove_sfont": (ctypes.c_int, [_P, _P]),
        "fluid_set_log_function": (_P, [ctypes.c_int, _P, _P]),
        "fluid_synth_program_select": (ctypes.c_int, [_P] + [ctypes.c_int] * 4),
        "fluid_synth_noteon": (ctypes.c_int, [_P] + [ctypes.c_int] * 3),
        "fluid_synth_noteoff": (ctypes.c_int, [_P] + [ctypes.c_int] * 2),
        "fluid_synth_write_float": (ctypes.c_int, [_P, ctypes.c_int, _P, ctypes.c_int,
                                                   ctypes.c_int, _P, ctypes.c_int, ctypes.c_int]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    lib.fluid_set_log_function(LOG_WARN, None, None)  # "no preset" noise on detaching a soundfont


class FluidRenderer:
    """A soundfont loaded once; each `render` plays one part on a fresh synth."""

    def __init__(self, soundfont: Path, sample_rate: int = 44100, gain: float = 0.5):
        self.lib = load_library()
        self.soundfont = Path(soundfont)
        self.settings = self.lib.new_fluid_settings()
        for key, value in {"synth.sample-rate": float(sample_rate), "synth.gain": gain}.items():
            self.lib.fluid_settings_setnum(self.settings, key.encode(), value)
        for key, value in {"synth.reverb.active": 0, "synth.chorus.active": 0,
                           "synth.cpu-cores": 1, "synth.polyphony": 256}.items():
            self.lib.fluid_settings_setint(self.settings, key.encode(), value)
        self.loader = self.lib.new_fluid_synth(self.settings)
        sfont_id = self.lib.fluid_synth_sfload(self.loader, str(self.soundfont).encode(), 1)
        if sfont_id < 0:
            raise StemforgeError(f"FluidSynth could not load soundfont {self.soundfont}")
        self.sfont = self.lib.fluid_synth_get_sfont_by_id(self.loader, sfont_id)

    def render(self, events: list[Event], bank: int, program: int, n_samples: int,
               drums: bool = False) -> np.ndarray:
        """Play `events` on one channel of a new synth. Returns audio: [2, n_samples] float32."""
        lib = self.lib
        synth = lib.new_fluid_synth(self.settings)
        sfont_id = lib.fluid_synth_add_sfont(synth, self.sfont)
        try:
            channel = 9 if drums else 0
            if lib.fluid_synth_program_select(synth, channel, sfont_id, bank, program) != 0:
                raise StemforgeError(f"{self.soundfont.name} has no preset bank {bank} "
                                     f"program {program}")
            return self._play(synth, channel, events, n_samples)
        finally:
            lib.fluid_synth_remove_sfont(synth, self.sfont)
            lib.delete_fluid_synth(synth)

    def _play(self, synth: int, channel: int, events: list[Event], n_samples: int) -> np.ndarray:
        total = -(-n_samples // BLOCK) * BLOCK
        out = np.zeros((2, total), dtype=np.float32)
        pos = 0
        for sample, group in _grouped(events, total):
            pos = self._write(synth, out, pos, sample)
            for ev in group:
                if ev.kind == "on":
                    self.lib.fluid_synth_noteon(synth, channel, ev.pitch, ev.velocity)
                else:
                    self.lib.fluid_synth_noteoff(synth, channel, ev.pitch)
        self._write(synth, out, pos, total)
        return out[:, :n_samples]

    def _write(self, synth: int, out: np.ndarray, start: int, stop: int) -> int:
        """Render samples [start, stop) of `out` (both multiples of BLOCK)."""
        if stop > start:
            left, right = out[0, start:].ctypes.data, out[1, start:].ctypes.data
            self.lib.fluid_synth_write_float(synth, stop - start, left, 0, 1, right, 0, 1)
        return max(start, stop)

    def close(self) -> None:
        if self.loader:
            self.lib.delete_fluid_synth(self.loader)
            self.lib.delete_fluid_settings(self.settings)
            self.loader = self.settings = self.sfont = None

    def __del__(self) -> None:
        self.close()


def _grouped(events: list[Event], total: int):
    """Yield (block-aligned sample < total, its events), in time order, note-offs first."""
    def block(event: Event) -> int:
        return int(round(event.sample / BLOCK)) * BLOCK

    ordered = sorted(events, key=lambda e: (block(e), e.kind != "off", e.pitch))
    for at, group in itertools.groupby(ordered, key=block):
        if at < total:
            yield at, list(group)


_RENDERERS: dict[tuple[str, int], FluidRenderer] = {}


def renderer(soundfont: Path, sample_rate: int = 44100) -> FluidRenderer:
    """The process-wide renderer for this soundfont (the soundfont loads once per process)."""
    key = (str(soundfont), sample_rate)
    if key not in _RENDERERS:
        _RENDERERS[key] = FluidRenderer(soundfont, sample_rate)
    return _RENDERERS[key]
