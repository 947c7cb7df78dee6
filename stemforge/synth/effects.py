"""Light, linear, deterministic effects: EQ, pan and a reverb send, done in one FFT.

Everything here is linear and applied per part, so a stem (a sum of parts) is still
exactly the sum of its processed parts. The EQ is a zero-phase magnitude curve and
the reverb a synthetic stereo impulse response (early reflections + noise tail
whose highs decay faster), both applied with a single FFT of the whole part
(scipy.fft in float32: fast, single-threaded, reproducible).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft


@dataclass(frozen=True)
class EQ:
    highpass: float = 30.0  # Hz, 12 dB/octave
    lowpass: float = 20000.0  # Hz, 12 dB/octave
    tilt_db: float = 0.0  # dB per decade around 1 kHz
    bell_hz: float = 1000.0
    bell_db: float = 0.0
    bell_octaves: float = 1.0

    def response(self, freqs: np.ndarray) -> np.ndarray:
        """Magnitude response at `freqs` (Hz): [len(freqs)] float32."""
        f = np.maximum(freqs, 1.0)
        gain = 1.0 / np.sqrt(1.0 + (self.highpass / f) ** 4)
        gain = gain / np.sqrt(1.0 + (f / self.lowpass) ** 4)
        log_f = np.log2(f / 1000.0)
        db = self.tilt_db * log_f / np.log2(10.0)
        db = db + self.bell_db * np.exp(-0.5 * ((np.log2(f / self.bell_hz)) / (self.bell_octaves / 2)) ** 2)
        return (gain * 10 ** (db / 20)).astype(np.float32)


@dataclass(frozen=True)
class Channel:
    """How one part enters the mix."""

    gain: float  # linear
    pan: float  # -1 (left) .. 1 (right)
    eq: EQ
    send: float  # reverb send, linear


def make_reverb(rng: np.random.Generator, sample_rate: int, rt60: float) -> np.ndarray:
    """A stereo room impulse response with unit energy per channel: [2, taps] float32."""
    taps = int(min(2.5, rt60 * 1.2) * sample_rate)
    t = np.arange(taps) / sample_rate
    predelay = int(rng.uniform(0.005, 0.03) * sample_rate)
    ir = np.zeros((2, taps), dtype=np.float64)
    for ch in range(2):
        noise = rng.standard_normal(taps)
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(taps, 1 / sample_rate)
        low = np.fft.irfft(spectrum * (freqs < 2500), taps)
        high = np.fft.irfft(spectrum * (freqs >= 2500), taps)
        tail = low * np.exp(-6.9 * t / rt60) + high * np.exp(-6.9 * t / (0.5 * rt60))
        tail *= 1 - np.exp(-t / 0.01)  # soft onset of the diffuse tail
        early = np.zeros(taps)
        for _ in range(8):  # a few discrete early reflections, ~4x the tail's level
            early[int(rng.uniform(0.002, 0.05) * sample_rate)] += rng.uniform(-2, 2)
        ir[ch] = np.roll(tail * 0.5 + early, predelay)
        ir[ch, :predelay] = 0
        ir[ch] /= np.sqrt(np.sum(ir[ch] ** 2))
    return ir.astype(np.float32)


class Processor:
    """Effects for parts of one fixed length, in the frequency domain.

    `spectrum(part)` gives a part's EQ'd, panned dry spectrum and its reverb send;
    spectra of parts that end up in the same file are summed, and `render` turns a
    (summed) spectrum into audio with one inverse FFT, the reverb added on the way.
    """

    def __init__(self, n_samples: int, reverb: np.ndarray, sample_rate: int):
        self.n_samples = n_samples
        self.n_fft = scipy.fft.next_fast_len(n_samples + reverb.shape[-1], real=True)
        self.freqs = np.fft.rfftfreq(self.n_fft, 1 / sample_rate).astype(np.float32)
        self.reverb = scipy.fft.rfft(reverb, self.n_fft, axis=-1)  # [2, bins] complex64
        self._responses: dict[EQ, np.ndarray] = {}

    def spectrum(self, audio: np.ndarray, channel: Channel) -> np.ndarray:
        """audio: [2, n_samples] float32 -> [3, bins] complex64: dry left, dry right, send."""
        spec = np.empty((3, self.n_fft // 2 + 1), dtype=np.complex64)
        if np.array_equal(audio[0], audio[1]):  # mono patch (common): one FFT, not two
            spec[0] = scipy.fft.rfft(audio[0], self.n_fft)
            spec[1] = spec[0]
        else:
            spec[:2] = scipy.fft.rfft(audio, self.n_fft, axis=-1)
        spec[:2] *= self.response(channel.eq) * np.float32(channel.gain)
        np.add(spec[0], spec[1], out=spec[2])
        spec[2] *= np.float32(0.5 * channel.send)
        left, right = pan_gains(channel.pan)
        spec[0] *= np.float32(left)
        spec[1] *= np.float32(right)
        return spec

    def render(self, spectrum: np.ndarray) -> np.ndarray:
        """[3, bins] (from `spectrum`, possibly summed) -> audio: [2, n_samples] float32."""
        out = spectrum[:2] + self.reverb * spectrum[2]
        return scipy.fft.irfft(out, self.n_fft, axis=-1, overwrite_x=True)[:, :self.n_samples]

    def response(self, eq: EQ) -> np.ndarray:
        """EQ magnitude on the FFT bins, interpolated from a 2048-point log grid."""
        if eq not in self._responses:
            grid = np.geomspace(1.0, float(self.freqs[-1]), 2048).astype(np.float32)
            self._responses[eq] = np.interp(self.freqs, grid, eq.response(grid)).astype(np.float32)
        return self._responses[eq]


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power balance: (left, right) gains, both 1 at the centre."""
    angle = (pan + 1) * np.pi / 4
    return float(np.cos(angle) * np.sqrt(2)), float(np.sin(angle) * np.sqrt(2))
