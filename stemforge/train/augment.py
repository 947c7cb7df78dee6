"""Per-stem waveform augmentations, each drawn from a given ``numpy.random.Generator``.

A draw is made only for an augmentation that is switched on, so a config that leaves the
timbre augmentations off sees exactly the examples it saw before they existed.

Two change a stem's timbre, for models that must work on instruments and kits they never heard:

* **varispeed**: the stem is played faster or slower, as a tape would be, by reading
  ``speed * chunk`` samples and resampling them (soxr, ``audio.resample``) to ``chunk``. Pitch and tempo move
  together, so no phase vocoder smears the transients (MSST's ``pitch_shift`` keeps the tempo
  and is a different effect).
* **seven-band EQ** (MSST's ``seven_band_parametric_eq``): a low shelf, five bells and a high
  shelf at random frequencies and widths, each with a gain drawn uniformly in dB, applied as a
  zero-phase gain curve in the frequency domain (zero-padded, so nothing wraps around).

One changes the mixture alone: **mp3 compression** (MSST's ``mp3_compression_on_mixture``), the
codec noise real songs arrive with. The targets stay clean, so the model learns to leave that
noise out of every stem.
"""

from __future__ import annotations

import numpy as np

from ..audio.encode import mp3_roundtrip
from ..audio.resample import resample
from .config import AugmentConfig

EQ_LOW_HZ, EQ_HIGH_HZ = 40.0, 16000.0  # the bells' centres lie between these, log-spaced
EQ_PAD = 16384  # zero padding for the FFT: longer than the bells' ringing at the lowest centre
EQ_BLOCK = 8192  # the FFT size is a multiple of this (a fast size for pocketfft)


def augment_stem(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sample_rate: int = 44100) -> np.ndarray:
    """``x: [C, T] -> [C, T]``: random gain, channel swap, polarity flip, time reversal and EQ."""
    if not cfg.enable:
        return x
    if cfg.loudness:
        x = x * np.float32(_gain(rng, cfg))
    if rng.random() < cfg.all.channel_shuffle:
        x = x[::-1]
    if rng.random() < cfg.all.random_polarity:
        x = -x
    if rng.random() < cfg.all.random_inverse:
        x = x[:, ::-1]
    eq = cfg.all.seven_band_parametric_eq
    if eq > 0 and rng.random() < eq:
        n = -(-(x.shape[1] + EQ_PAD) // EQ_BLOCK) * EQ_BLOCK
        x = equalize(x, _eq_curve_db(rng, cfg, n, sample_rate))
    return np.ascontiguousarray(x, dtype=np.float32)


def draw_speed(rng: np.random.Generator, cfg: AugmentConfig) -> float:
    """The varispeed factor for one stem: ``2 ** (s / 12)``, ``s`` uniform in +-varispeed_semitones; else 1."""
    p = cfg.all.varispeed
    if not cfg.enable or p <= 0 or rng.random() >= p:
        return 1.0
    semitones = cfg.all.varispeed_semitones
    return float(2.0 ** (rng.uniform(-semitones, semitones) / 12))


def draw_mp3_bitrate(rng: np.random.Generator, cfg: AugmentConfig) -> int | None:
    """The bitrate (kbps) the mixture is mp3-compressed at, uniform in ``..._bitrate_min..max``; or ``None``."""
    p = cfg.mp3_compression_on_mixture
    if not cfg.enable or p <= 0 or rng.random() >= p:
        return None
    low, high = cfg.mp3_compression_on_mixture_bitrate_min, cfg.mp3_compression_on_mixture_bitrate_max
    return int(rng.integers(low, high + 1))


def compress_mixture(mix: np.ndarray, bitrate: int | None, sample_rate: int) -> np.ndarray:
    """``mix: [C, T]`` through mp3 at ``bitrate`` kbps (``audio.encode.mp3_roundtrip``), or as it is for ``None``."""
    return mix if bitrate is None else mp3_roundtrip(mix, sample_rate, bitrate)


def varispeed(x: np.ndarray, length: int) -> np.ndarray:
    """``x: [C, T'] -> [C, length]``: resampled so ``T'`` samples last ``length`` (pitch x ``T'/length``)."""
    if x.shape[1] == length:
        return x
    y = resample(x, x.shape[1], length, quality="HQ")  # HQ: training data, not output audio
    if y.shape[1] < length:
        y = np.pad(y, ((0, 0), (0, length - y.shape[1])))
    return np.ascontiguousarray(y[:, :length], dtype=np.float32)


def equalize(x: np.ndarray, curve_db: np.ndarray) -> np.ndarray:
    """``x: [C, T]`` through the zero-phase gain ``curve_db: [n // 2 + 1]`` (dB per rfft bin of size ``n >= T``)."""
    n = 2 * (len(curve_db) - 1)
    spectrum = np.fft.rfft(x, n=n, axis=1) * (10.0 ** (curve_db / 20.0))
    return np.fft.irfft(spectrum, n=n, axis=1)[:, : x.shape[1]].astype(np.float32)


def _eq_curve_db(rng: np.random.Generator, cfg: AugmentConfig, n: int, sample_rate: int) -> np.ndarray:
    """A random seven-band gain curve in dB over the bins of an ``n``-point rfft (``n`` even)."""
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    octave = np.log2(np.maximum(freqs, 1.0))
    lo, hi = cfg.all.seven_band_parametric_eq_min_gain_db, cfg.all.seven_band_parametric_eq_max_gain_db
    gains = rng.uniform(lo, hi, 7)
    edges = np.geomspace(EQ_LOW_HZ, EQ_HIGH_HZ, 6)  # five bells, one per log-spaced band
    centres = np.exp(rng.uniform(np.log(edges[:-1]), np.log(edges[1:])))
    widths = rng.uniform(0.25, 1.0, 5)  # octaves (standard deviation of the bell in log-frequency)
    shelf_low, shelf_high = np.exp(rng.uniform(np.log([60.0, 3000.0]), np.log([400.0, 12000.0])))
    curve = gains[0] / (1 + np.exp((octave - np.log2(shelf_low)) * 4))
    curve += gains[6] / (1 + np.exp(-(octave - np.log2(shelf_high)) * 4))
    for gain, centre, width in zip(gains[1:6], centres, widths):
        curve += gain * np.exp(-0.5 * ((octave - np.log2(centre)) / width) ** 2)
    return curve


def _gain(rng: np.random.Generator, cfg: AugmentConfig) -> float:
    """A gain in [loudness_min, loudness_max]: uniform in amplitude, or in dB with ``loudness_log``."""
    if cfg.loudness_log:
        return float(np.exp(rng.uniform(np.log(cfg.loudness_min), np.log(cfg.loudness_max))))
    return float(rng.uniform(cfg.loudness_min, cfg.loudness_max))
