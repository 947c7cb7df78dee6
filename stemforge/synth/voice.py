"""A singing voice: espeak-ng words, made monotone, then pitch-shifted onto the melody
and stretched to the note lengths with TD-PSOLA (with scoops and vibrato).

Why this and not (only) the GM voice patches. Choir Aahs / Voice Oohs / Synth Voice
(GM 52-54) are one looped vowel per key: no consonants, no changing vowels, no
syllables; in both Debian soundfonts they sound like a pad, and a separation model
trained on them learns "vocals = a soft pad". espeak-ng is a formant synthesizer:
its words have moving formants, voiced/unvoiced consonants, plosive bursts and
sibilants, i.e. the spectro-temporal structure that makes vocals vocals. espeak-ng
cannot sing by itself (its pitch is speech intonation), so each word is spoken with
``<prosody range="0">`` (a flat pitch, measured here), and TD-PSOLA moves it to the
note's pitch (formants stay put, unlike resampling) and lengthens the vowel, not the
consonants, to the note length. We use both: the lead is sung by espeak-ng and the
GM choir patches sing sustained "ooh" backing harmonies in choruses (melody.py).
Limits: espeak-ng audio is 22.05 kHz (no "air" above 11 kHz) and sounds robotic.

Determinism: espeak-ng is a subprocess whose output depends only on its arguments
(checked byte-for-byte), and words are cached per process.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from stemforge.errors import StemforgeError
from stemforge.synth.score import Note

ESPEAK_RATE = 22050
SOURCE_PITCHES = (15, 40, 65, 95)  # espeak-ng -p values the words are spoken at
SPEED_WPM = 130
WORD_BREAK_MS = 500
LEXICON = ("love", "you", "me", "night", "day", "high", "way", "go", "so", "know", "down",
           "light", "fire", "heart", "time", "feel", "now", "free", "be", "sky", "rain", "oh",
           "yeah", "la", "home", "stay", "run", "fly", "dream", "hold", "call", "sun", "blue",
           "gone", "true", "one", "you're", "my", "we", "all", "mind", "soul", "in", "slow")


@dataclass(frozen=True)
class Syllable:
    """One spoken word, analysed for PSOLA. audio: [samples] at the output rate."""

    audio: np.ndarray
    marks: np.ndarray  # pitch-mark sample positions (one per glottal period)
    period: float  # source period in samples (flat pitch)
    vowel: tuple[int, int]  # [start, stop) samples of the loud, voiced nucleus
    level: float  # RMS of the nucleus


def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise StemforgeError("espeak-ng not found; install it with "
                             "apt-get install --no-install-recommends espeak-ng")
    return path


def speak(word: str, voice: str, pitch: int) -> np.ndarray:
    """espeak-ng saying `word` on a flat pitch. Returns audio: [samples] float32 at 22.05 kHz.
    Lexicon words come from one batched espeak-ng call per (voice, pitch)."""
    if word in LEXICON:
        batch = _speak_lexicon(voice, pitch)
        if batch is not None:
            return batch[LEXICON.index(word)]
    return _espeak(word, voice, pitch)[0]


@lru_cache(maxsize=64)
def _speak_lexicon(voice: str, pitch: int) -> tuple[np.ndarray, ...] | None:
    """All LEXICON words in one call (a subprocess costs as much as ~20 words), split at
    the long breaks between words; None if the split does not give one clip per word."""
    clips = _espeak(f' <break time="{WORD_BREAK_MS}ms"/> '.join(LEXICON), voice, pitch)
    return clips if len(clips) == len(LEXICON) else None


def _espeak(text: str, voice: str, pitch: int) -> tuple[np.ndarray, ...]:
    """Run espeak-ng on `text` (flat pitch) and cut the result at pauses > 250 ms."""
    ssml = f'<speak><prosody range="0">{text}</prosody></speak>'
    cmd = [espeak_path(), "-v", voice, "-p", str(pitch), "-s", str(SPEED_WPM), "-m", "-z", "--stdout", ssml]
    wav = subprocess.run(cmd, capture_output=True, check=True).stdout
    data = wav.index(b"data") + 8
    audio = np.frombuffer(wav[data:len(wav) - (len(wav) - data) % 2], dtype="<i2").astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(audio) > 0.02 * max(1e-4, float(np.abs(audio).max())))
    if not loud.size:
        return (audio,)
    gaps = np.flatnonzero(np.diff(loud) > 0.25 * ESPEAK_RATE)
    starts, stops = np.r_[loud[0], loud[gaps + 1]], np.r_[loud[gaps], loud[-1]] + 1
    return tuple(audio[a:b].copy() for a, b in zip(starts, stops, strict=True))


@lru_cache(maxsize=2048)
def syllable(word: str, voice: str, pitch: int, sample_rate: int = 44100) -> Syllable:
    """`speak` at the output rate, with its pitch marks and vowel nucleus."""
    audio = resample(speak(word, voice, pitch), ESPEAK_RATE, sample_rate)
    vowel = _nucleus(audio, sample_rate)
    period = _period(audio[vowel[0]:vowel[1]], sample_rate)
    marks = _pitch_marks(audio, period, vowel)
    level = float(np.sqrt(np.mean(audio[vowel[0]:vowel[1]] ** 2)) + 1e-9)
    return Syllable(audio, marks, period, vowel, level)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited (FFT) resampling of a short zero-padded clip: [n] -> [n * out / in] float32."""
    pad = rate_in // 50
    padded = np.pad(audio, pad)
    n_out = int(round(len(padded) * rate_out / rate_in))
    spec = scipy.fft.rfft(padded)
    bins = n_out // 2 + 1
    spec = spec[:bins] if len(spec) >= bins else np.pad(spec, (0, bins - len(spec)))
    out = scipy.fft.irfft(spec, n_out) * (n_out / len(padded))
    cut = int(round(pad * rate_out / rate_in))
    return out[cut:n_out - cut].astype(np.float32)


@lru_cache(maxsize=64)
def source_f0(voice: str, pitch: int, sample_rate: int = 44100) -> float:
    """The flat pitch (Hz) espeak-ng speaks at for this voice and -p value."""
    return sample_rate / syllable("la", voice, pitch, sample_rate).period


def sing(notes: list[Note], words: list[str], voice: str, beat_seconds: float, n_samples: int,
         rng: np.random.Generator, sample_rate: int = 44100) -> np.ndarray:
    """Sing `words` on `notes`. Returns audio: [n_samples] float32 (mono)."""
    out = np.zeros(n_samples, dtype=np.float32)
    previous_end = 0
    for note, word in zip(notes, words, strict=True):
        target = 440.0 * 2 ** ((note.pitch - 69) / 12)
        pitch = min(SOURCE_PITCHES, key=lambda p: abs(math.log(source_f0(voice, p, sample_rate) / target)))
        syl = syllable(word, voice, pitch, sample_rate)
        onset = int(round(note.start * beat_seconds * sample_rate))
        lead_in = max(0, min(syl.vowel[0], int(0.12 * sample_rate), onset - previous_end))
        length = int(round(note.length * beat_seconds * sample_rate)) + lead_in
        start = onset - lead_in
        if length < 64 or start >= n_samples:
            continue
        audio = psola(syl, _pitch_curve(target, length, lead_in, rng, sample_rate), length, sample_rate)
        audio *= (note.velocity / 127) * 0.25 / syl.level
        stop = min(n_samples, start + length)
        out[start:stop] += audio[:stop - start]
        previous_end = stop
    return out


def psola(syl: Syllable, f0: np.ndarray, length: int, sample_rate: int = 44100) -> np.ndarray:
    """Time-domain PSOLA: re-space the word's pitch periods at `f0` ([length] Hz per output
    sample), stretching only the vowel to fill `length`. Returns audio: [length] float32."""
    half = max(1, int(syl.period))
    window = np.hanning(2 * half + 2)[1:-1].astype(np.float32)  # [2 * half]
    out = np.zeros(length + 2 * half + 1, dtype=np.float32)  # out[i + half] is output sample i
    t = 0.0
    while t < length:
        out_period = sample_rate / float(f0[int(t)])
        centre = _nearest_mark(syl.marks, _source_time(t, length, syl))
        lo, hi = max(0, centre - half), min(len(syl.audio), centre + half)
        if hi > lo:
            grain = syl.audio[lo:hi] * window[lo - centre + half:hi - centre + half]
            at = int(t) + half - (centre - lo)
            out[at:at + len(grain)] += grain * min(1.0, out_period / syl.period)
        t += out_period
    return _fade(out[half:half + length])


def _nearest_mark(marks: np.ndarray, position: float) -> int:
    k = int(np.searchsorted(marks, position))
    if k >= len(marks) or (k > 0 and position - marks[k - 1] < marks[k] - position):
        k -= 1
    return int(marks[k])


def _source_time(t: float, length: int, syl: Syllable) -> float:
    """Output sample -> source sample: consonants at natural speed, vowel stretched."""
    v0, v1 = syl.vowel
    tail = len(syl.audio) - v1
    room = length - v0 - tail
    if room < 0.3 * (v1 - v0):  # note too short: squeeze the whole word
        return t * len(syl.audio) / length
    if t < v0:
        return t
    if t < v0 + room:
        return v0 + (t - v0) * (v1 - v0) / room
    return v1 + (t - v0 - room)


def _pitch_curve(target: float, length: int, lead_in: int, rng: np.random.Generator,
                 sample_rate: int) -> np.ndarray:
    """Per-sample f0 [length]: a scoop up into the note, then vibrato that fades in."""
    t = (np.arange(length) - lead_in) / sample_rate
    scoop = -float(rng.uniform(0.3, 1.0)) * np.exp(-np.maximum(t, 0) / 0.05) * (t < 0.3)
    depth = float(rng.uniform(0.15, 0.45)) * np.clip((t - 0.25) / 0.3, 0, 1)
    vibrato = depth * np.sin(2 * np.pi * float(rng.uniform(4.8, 6.2)) * np.maximum(t, 0))
    return (target * 2 ** ((scoop + vibrato) / 12)).astype(np.float32)


def _fade(audio: np.ndarray, attack: int = 300, release: int = 1800) -> np.ndarray:
    audio = audio.copy()
    attack, release = min(attack, len(audio) // 4), min(release, len(audio) // 3)
    if attack:
        audio[:attack] *= np.linspace(0, 1, attack, dtype=np.float32)
    if release:
        audio[-release:] *= np.linspace(1, 0, release, dtype=np.float32)
    return audio


def _nucleus(audio: np.ndarray, sample_rate: int) -> tuple[int, int]:
    """[start, stop) of the frames louder than 30% of the loudest (the vowel)."""
    hop = sample_rate // 100
    n = max(1, len(audio) // hop)
    rms = np.sqrt(np.mean(audio[:n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(rms > 0.3 * rms.max())
    return int(loud[0] * hop), int(min(len(audio), (loud[-1] + 1) * hop))


def _period(audio: np.ndarray, sample_rate: int) -> float:
    """Pitch period (samples) of a voiced segment by autocorrelation, 60-500 Hz."""
    n = len(audio)
    spec = np.fft.rfft(audio - audio.mean(), 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:n]
    lo, hi = sample_rate // 500, min(n - 1, sample_rate // 60)
    lag = lo + int(np.argmax(ac[lo:hi]))
    for divisor in (3, 2):  # avoid octave errors: prefer a strong peak at lag / k
        near = int(round(lag / divisor))
        if near >= lo:
            sub = near - 2 + int(np.argmax(ac[near - 2:near + 3]))
            if ac[sub] > 0.85 * ac[lag]:
                lag = sub
                break
    if 0 < lag < n - 1:  # parabolic refinement
        a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
        lag += 0.5 * (a - c) / (a - 2 * b + c + 1e-12)
    return float(lag)


def _pitch_marks(audio: np.ndarray, period: float, vowel: tuple[int, int]) -> np.ndarray:
    """One mark per period, locked to waveform peaks, propagated from the vowel's peak."""
    smooth = np.convolve(audio, np.ones(5, dtype=np.float32) / 5, mode="same")
    anchor = vowel[0] + int(np.argmax(smooth[vowel[0]:vowel[1]]))
    search = max(1, int(0.15 * period))
    marks = [float(anchor)]
    for direction in (1, -1):
        pos = float(anchor)
        while 0 <= pos + direction * period < len(audio):
            guess = int(round(pos + direction * period))
            lo, hi = max(0, guess - search), min(len(audio), guess + search + 1)
            pos = float(lo + int(np.argmax(smooth[lo:hi])))
            if (pos - marks[-1] if direction > 0 else marks[0] - pos) < 0.5 * period:
                pos = float(guess)
            marks.append(pos) if direction > 0 else marks.insert(0, pos)
    return np.asarray(marks)
