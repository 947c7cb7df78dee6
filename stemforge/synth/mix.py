"""Mix dry parts into exact stems: random levels, pans, EQ and one shared room.

Gain staging: each dry part is brought to a role-dependent loudness (plus a random
offset) and processed (effects.py). Parts of one output file (a drum piece, or the
vocals / bass / other stem) are summed as spectra and rendered with one inverse FFT
(only files are kept, not single instruments). drums = the float32 sum of the five
pieces, mixture = the float32 sum of the four stems. Then ONE common gain scales the
pieces and stems so that the mixture peaks at `peak`, and drums and mixture are
re-summed from the scaled files: the identities hold to float32 rounding (~1e-7),
with no per-stem normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from stemforge.synth.effects import EQ, Channel, Processor, make_reverb
from stemforge.synth.score import DRUM_PIECES, STEMS, Part, Score

LEVEL_DB = {  # target loudness of each part before the final gain
    "kick": -13.0, "snare": -14.0, "toms": -17.0, "hihat": -22.0, "cymbals": -23.0,
    "bass": -14.0, "lead_vocal": -11.0, "backing_vocals": -21.0,
    "piano": -16.5, "organ": -17.5, "guitar": -16.5, "pad": -19.5, "lead": -17.0,
}
FADE_SECONDS = 0.02


def draw_channels(score: Score, rng: np.random.Generator) -> dict[str, Channel]:
    """Random mix settings per part (levels relative to LEVEL_DB, pans, EQ, sends)."""
    drum_eq, drum_send = _draw_eq(rng, "drums"), float(rng.uniform(0.05, 0.3))
    channels = {}
    for part in score.parts:
        offset_db = float(rng.normal(0, 2.0))
        if part.stem == "drums":
            pan = {"hihat": rng.uniform(-0.4, 0.4), "toms": rng.uniform(-0.3, 0.3),
                   "cymbals": rng.uniform(-0.4, 0.4)}.get(part.name, 0.0)
            channels[part.name] = Channel(10 ** (offset_db / 20), float(pan), drum_eq, drum_send)
        else:
            channels[part.name] = Channel(10 ** (offset_db / 20), _draw_pan(part, rng),
                                          _draw_eq(rng, part.stem), _draw_send(part, rng))
    return channels


def _draw_pan(part: Part, rng: np.random.Generator) -> float:
    if part.name in ("bass", "lead_vocal"):
        return float(rng.uniform(-0.1, 0.1))
    return float(rng.uniform(-0.7, 0.7))


def _draw_send(part: Part, rng: np.random.Generator) -> float:
    low, high = {"vocals": (0.15, 0.5), "bass": (0.0, 0.08)}.get(part.stem, (0.05, 0.45))
    return float(rng.uniform(low, high))


def _draw_eq(rng: np.random.Generator, stem: str) -> EQ:
    highpass = {"bass": (20, 45), "drums": (20, 40), "vocals": (70, 160)}.get(stem, (50, 220))
    lowpass = 20000.0 if rng.random() < 0.6 else float(rng.uniform(6000, 16000))
    return EQ(highpass=float(rng.uniform(*highpass)), lowpass=lowpass,
              tilt_db=float(rng.uniform(-2.5, 2.5)), bell_hz=float(np.exp(rng.uniform(np.log(150), np.log(6000)))),
              bell_db=float(rng.uniform(-5, 5)), bell_octaves=float(rng.uniform(0.7, 2.5)))


def mix(score: Score, dry: dict[str, np.ndarray], channels: dict[str, Channel], rng: np.random.Generator,
        sample_rate: int = 44100, peak: float = 0.9) -> tuple[dict[str, np.ndarray], float]:
    """Process and sum the dry parts ({name: [2, samples]}). Returns the files
    {mixture, STEMS, DRUM_PIECES: [2, samples] float32} and the common gain."""
    n_samples = next(iter(dry.values())).shape[-1]
    process = Processor(n_samples, make_reverb(rng, sample_rate, float(rng.uniform(0.4, 2.0))), sample_rate)
    spectra = _file_spectra(score, dry, channels, process)
    fade = _fade(n_samples, int(FADE_SECONDS * sample_rate))
    files = {}
    for name in (*DRUM_PIECES, "vocals", "bass", "other"):
        files[name] = process.render(spectra.pop(name)) if name in spectra else np.zeros((2, n_samples), np.float32)
        files[name] *= fade
    common = np.float32(peak / max(1e-9, float(np.abs(_sum_stems(files)["mixture"]).max())))
    for audio in files.values():
        audio *= common
    return _sum_stems(files), float(common)


def _file_spectra(score: Score, dry: dict[str, np.ndarray], channels: dict[str, Channel],
                  process: Processor) -> dict[str, np.ndarray]:
    """Each part at its level through its channel, summed per output file (a drum piece
    or a non-drum stem) as spectra: {file: [3, bins]}."""
    spectra: dict[str, np.ndarray] = {}
    for part in score.parts:
        level = LEVEL_DB.get(part.name, LEVEL_DB.get(part.role, -18.0))
        gain = min(1000.0, 10 ** ((level - loudness_db(dry[part.name])) / 20))
        channel = channels[part.name]
        spec = process.spectrum(dry[part.name], replace(channel, gain=channel.gain * gain))
        target = part.name if part.stem == "drums" else part.stem
        if target in spectra:
            spectra[target] += spec
        else:
            spectra[target] = spec
    return spectra


def _sum_stems(files: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float32 sums in a fixed order: drum pieces -> drums, then stems -> mixture."""
    out = dict(files)
    out["drums"] = _sum([files[piece] for piece in DRUM_PIECES])
    out["mixture"] = _sum([out[stem] for stem in STEMS])
    return out


def _sum(arrays: list[np.ndarray]) -> np.ndarray:
    total = arrays[0].copy()
    for audio in arrays[1:]:
        total += audio
    return total


def loudness_db(audio: np.ndarray, frame: int = 4096) -> float:
    """RMS level (dB) over the frames where the part plays (within 40 dB of its loudest)."""
    mono = audio.mean(axis=0)
    n = max(1, len(mono) // frame)
    rms = np.sqrt(np.mean(mono[:n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    active = rms[rms > rms.max() * 0.01]
    return float(20 * np.log10(np.sqrt(np.mean(active ** 2)) + 1e-12)) if active.size else -120.0


def _fade(n_samples: int, length: int) -> np.ndarray:
    """[n_samples] float32 gain: short raised-cosine fade-in and fade-out."""
    gain = np.ones(n_samples, dtype=np.float32)
    ramp = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, length))).astype(np.float32)
    gain[:length] = ramp
    gain[-length:] = np.minimum(gain[-length:], ramp[::-1])
    return gain


def channel_meta(channels: dict[str, Channel]) -> dict[str, dict]:
    """JSON-friendly mix settings."""
    return {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(ch).items()
                   if k != "eq"} | {"eq": {k: round(v, 2) for k, v in asdict(ch.eq).items()}}
            for name, ch in channels.items()}
