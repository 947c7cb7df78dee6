"""Reading audio files into float32 arrays of shape [channels, samples].

wav, flac, mp3 and ogg are read with soundfile (libsndfile; its mp3 reader
honours the LAME gapless header, so encoder delay is removed). Containers that
libsndfile cannot read (m4a, aac, alac, mp4, NI `.stem.mp4`) go through PyAV,
and so does any file on which soundfile fails. A `.stem.mp4` holds mixture,
drums, bass, other, vocals as audio streams 0..4.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from stemforge.errors import StemforgeError
from stemforge.audio.resample import resample

SUPPORTED = "wav, flac, mp3, ogg, m4a, aac, mp4"
# Suffixes libsndfile cannot read: go straight to PyAV.
PYAV_SUFFIXES = {".m4a", ".aac", ".alac", ".mp4", ".m4b", ".mov", ".webm", ".mka", ".opus"}


class AudioError(StemforgeError):
    """A file that cannot be used as audio input; the message names the file and the fix."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header. `frames` may be approximate for compressed files."""

    sample_rate: int
    channels: int
    frames: int
    duration_s: float


def load_audio(
    path: str | Path, sample_rate: int | None = None, channels: int = 2, stream: int = 0
) -> np.ndarray:
    """Read `path` as float32 `[channels, samples]`, C-contiguous.

    `sample_rate`: resample to this rate (soxr VHQ) when it differs; None keeps the native rate.
    `channels`: mono is duplicated, more channels than asked are averaged (with a warning
    when the file has more than 2). `stream`: index among the file's audio streams.
    """
    audio, rate = load_audio_with_rate(path, stream=stream)
    target = rate if sample_rate is None else sample_rate
    if audio.shape[0] >= channels:  # downmix first: fewer channels to resample
        audio = resample(convert_channels(audio, channels, path), rate, target)
    else:
        audio = convert_channels(resample(audio, rate, target), channels, path)
    return np.ascontiguousarray(audio, dtype=np.float32)


def load_audio_with_rate(path: str | Path, stream: int = 0) -> tuple[np.ndarray, int]:
    """Read `path` at its native rate and channel count: (`audio: [channels, samples]` float32, rate)."""
    path = _check_exists(path)
    if stream < 0:
        raise AudioError(f"stream={stream} is invalid for '{path}'; stream indices start at 0")
    if stream == 0 and path.suffix.lower() not in PYAV_SUFFIXES:
        try:
            audio, rate = _read_soundfile(path)
        except (sf.LibsndfileError, RuntimeError):
            audio, rate = _read_pyav(path, stream)
    else:
        audio, rate = _read_pyav(path, stream)
    _check_samples(audio, rate, path)
    return audio, rate


def audio_info(path: str | Path, stream: int = 0) -> AudioInfo:
    """Header information for `path` without decoding the audio (where the format allows)."""
    path = _check_exists(path)
    if stream == 0 and path.suffix.lower() not in PYAV_SUFFIXES:
        try:
            info = sf.info(str(path))
            return AudioInfo(info.samplerate, info.channels, info.frames, info.frames / info.samplerate)
        except (sf.LibsndfileError, RuntimeError):
            pass
    with _open_pyav(path) as container:
        st = _audio_stream(container, stream, path)
        rate = st.codec_context.sample_rate
        if st.duration is not None and st.time_base is not None:
            seconds = float(st.duration * st.time_base)
        else:
            seconds = (container.duration or 0) / av.time_base
        frames = round(seconds * rate)
        return AudioInfo(rate, st.codec_context.channels, frames, frames / rate)


def convert_channels(audio: np.ndarray, channels: int, path: str | Path = "<array>") -> np.ndarray:
    """Map `audio: [source_channels, samples]` to `[channels, samples]`.

    Mono is duplicated; extra channels are averaged (a warning names the file when it has
    more than 2 channels). Upmixing from more than one channel is refused.
    """
    source = audio.shape[0]
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if source == channels:
        return audio
    if source > channels:
        if source > 2:
            warnings.warn(
                f"'{path}' has {source} channels; downmixing to {channels} by averaging all channels",
                stacklevel=3,
            )
        mono = audio.mean(axis=0, keepdims=True)
        return np.repeat(mono, channels, axis=0) if channels > 1 else mono
    if source == 1:
        return np.repeat(audio, channels, axis=0)
    raise AudioError(f"'{path}' has {source} channels; cannot upmix to {channels}")


# --- readers -----------------------------------------------------------------


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [samples, channels]
    return np.ascontiguousarray(data.T), rate


def _read_pyav(path: Path, stream: int) -> tuple[np.ndarray, int]:
    """Decode one audio stream with PyAV/FFmpeg into `[channels, samples]` float32."""
    with _open_pyav(path) as container:
        st = _audio_stream(container, stream, path)
        to_float = av.AudioResampler(format="fltp")  # keeps layout and rate
        chunks = []
        try:
            for frame in container.decode(st):
                chunks.extend(f.to_ndarray() for f in to_float.resample(frame))
            chunks.extend(f.to_ndarray() for f in to_float.resample(None))
        except av.FFmpegError as exc:
            raise _decode_error(path, exc) from exc
        channels = st.codec_context.channels
        audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
        return np.ascontiguousarray(audio, dtype=np.float32), st.codec_context.sample_rate


def _open_pyav(path: Path):
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise _decode_error(path, exc) from exc


def _audio_stream(container, stream: int, path: Path):
    streams = container.streams.audio
    if not streams:
        raise AudioError(
            f"could not decode '{path}': it has no audio stream; is it an audio file? supported: {SUPPORTED}"
        )
    if not 0 <= stream < len(streams):
        raise AudioError(
            f"'{path}' has {len(streams)} audio stream(s); stream={stream} is out of range "
            f"(use 0..{len(streams) - 1})"
        )
    return streams[stream]


# --- checks ------------------------------------------------------------------


def _check_exists(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file not found: '{path}'; check the path")
    if path.is_dir():
        raise AudioError(f"'{path}' is a directory, not an audio file; pass a file path")
    if path.stat().st_size == 0:
        raise AudioError(f"'{path}' is empty (0 bytes); re-export or re-download the file")
    return path


def _check_samples(audio: np.ndarray, rate: int, path: Path) -> None:
    if audio.shape[-1] == 0:
        raise AudioError(f"'{path}' contains no audio (zero length); re-export the file")
    if np.isfinite(audio.sum()):  # fast path: any NaN/inf makes the sum non-finite
        return
    bad = ~np.isfinite(audio)
    if not bad.any():
        return  # the float32 sum overflowed on finite samples
    channel, sample = np.argwhere(bad)[0]
    raise AudioError(
        f"'{path}' contains NaN/inf samples at {sample / rate:.3f} s "
        f"(sample {sample}, channel {channel}; {int(bad.sum())} in all); re-export the file"
    )


def _decode_error(path: Path, exc: Exception) -> AudioError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return AudioError(f"could not decode '{path}': {reason}; is it an audio file? supported: {SUPPORTED}")
