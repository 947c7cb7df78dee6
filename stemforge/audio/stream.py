"""Streaming audio I/O: decode a file block by block, and write stems block by block, atomically.

:class:`AudioReader` yields float32 ``[channels, n]`` blocks at the requested rate, like
:func:`~stemforge.audio.decode.load_audio` cut in pieces (same readers, same channel mapping,
``soxr.ResampleStream`` at the same quality). :class:`StemWriter` writes every stem into a
hidden temp folder next to the output folder and moves the files in only on :meth:`commit`,
so a failure leaves no partial output.
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import soundfile as sf
import soxr

from .decode import PYAV_SUFFIXES, AudioError, _audio_stream, _check_exists, _decode_error, _open_pyav, convert_channels
from .encode import FORMATS, _fsync, _pick_format, _validate, apply_clip
from .resample import QUALITY

BLOCK = 1 << 16  # frames per decoded block (1.5 s at 44.1 kHz)


class AudioReader:
    """Iterable of ``[channels, n]`` float32 blocks of ``path`` at ``sample_rate``.

    The file is opened (and a file that cannot be read is reported) at construction; decode
    errors, NaN/inf samples and an empty file are reported while iterating. Iterate once.
    """

    def __init__(self, path: str | Path, sample_rate: int | None = None, channels: int = 2, block: int = BLOCK):
        self.path = _check_exists(path)
        self.channels, self.block = channels, block
        self._sf = None
        if self.path.suffix.lower() not in PYAV_SUFFIXES:
            try:
                self._sf = sf.SoundFile(str(self.path))
            except (sf.LibsndfileError, RuntimeError):
                self._sf = None
        if self._sf is not None:
            self.source_rate, self.source_channels, frames = self._sf.samplerate, self._sf.channels, self._sf.frames
        else:
            with _open_pyav(self.path) as container:
                st = _audio_stream(container, 0, self.path)
                self.source_rate, self.source_channels = st.codec_context.sample_rate, st.codec_context.channels
                seconds = float(st.duration * st.time_base) if st.duration and st.time_base else (
                    (container.duration or 0) / av.time_base)
                frames = round(seconds * self.source_rate)
        self.sample_rate = sample_rate or self.source_rate
        self.frames_hint = round(frames * self.sample_rate / self.source_rate)  # exact for wav/flac

    def __iter__(self) -> Iterator[np.ndarray]:
        resampler = None
        if self.sample_rate != self.source_rate:
            resampler = soxr.ResampleStream(self.source_rate, self.sample_rate, min(self.source_channels, self.channels),
                                            dtype="float32", quality=QUALITY)
        offset = 0
        for raw in self._raw_blocks():
            _check_finite(raw, offset, self.source_rate, self.path)
            offset += raw.shape[-1]
            yield from self._convert(raw, resampler, last=False)
        if offset == 0:
            raise AudioError(f"'{self.path}' contains no audio (zero length); re-export the file")
        if resampler is not None:
            yield from self._convert(np.zeros((self.source_channels, 0), np.float32), resampler, last=True)

    def _convert(self, raw: np.ndarray, resampler, last: bool) -> Iterator[np.ndarray]:
        """Channels then rate, in load_audio's order (downmix before resampling, upmix after)."""
        down = raw.shape[0] >= self.channels
        audio = convert_channels(raw, self.channels, self.path) if down else raw
        if resampler is not None:
            audio = np.ascontiguousarray(resampler.resample_chunk(np.ascontiguousarray(audio.T), last=last).T)
        if not down:
            audio = convert_channels(audio, self.channels, self.path)
        if audio.shape[-1]:
            yield np.ascontiguousarray(audio, dtype=np.float32)

    def _raw_blocks(self) -> Iterator[np.ndarray]:
        """Native-rate ``[source_channels, n]`` blocks."""
        if self._sf is not None:
            with self._sf as f:
                while True:
                    try:
                        data = f.read(self.block, dtype="float32", always_2d=True)
                    except (sf.LibsndfileError, RuntimeError) as exc:
                        raise _decode_error(self.path, exc) from exc
                    if not len(data):
                        return
                    yield np.ascontiguousarray(data.T)
        else:
            yield from _gather(self._pyav_frames(), self.block)

    def _pyav_frames(self) -> Iterator[np.ndarray]:
        with _open_pyav(self.path) as container:
            st = _audio_stream(container, 0, self.path)
            to_float = av.AudioResampler(format="fltp")  # keeps layout and rate
            try:
                for frame in container.decode(st):
                    for f in to_float.resample(frame):
                        yield f.to_ndarray()
                for f in to_float.resample(None):
                    yield f.to_ndarray()
            except av.FFmpegError as exc:
                raise _decode_error(self.path, exc) from exc


def _gather(frames: Iterator[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Join small decoded frames into blocks of about ``block`` samples."""
    parts, size = [], 0
    for f in frames:
        parts.append(f)
        size += f.shape[-1]
        if size >= block:
            yield np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
            parts, size = [], 0
    if parts:
        yield np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def _check_finite(audio: np.ndarray, offset: int, rate: int, path: Path) -> None:
    if np.isfinite(audio.sum()):
        return
    bad = ~np.isfinite(audio)
    if not bad.any():
        return
    channel, sample = np.argwhere(bad)[0]
    sample += offset
    raise AudioError(
        f"'{path}' contains NaN/inf samples at {sample / rate:.3f} s "
        f"(sample {sample}, channel {channel}; {int(bad.sum())} in this block); re-export the file"
    )


class StemWriter:
    """Writes ``{stem: [channels, n]}`` blocks to ``outdir/<stem>.<format>``; all files or none.

    Blocks go to files in a hidden temp folder ``.<outdir>.tmp-*`` beside ``outdir`` as they come;
    :meth:`commit` moves them into ``outdir``, :meth:`abort` (or leaving the ``with`` block on an
    error) deletes them. ``clip='rescale'`` needs the stem's peak, known only at the end: the
    stems are also spilled as raw float32 and, only when a peak exceeds 1, re-encoded from the
    spill with the gain ``1 / (1.01 peak)``, as :func:`~stemforge.audio.encode.apply_clip` does.
    """

    def __init__(self, outdir: str | Path, names: list[str], sample_rate: int, channels: int, *,
                 format: str = "wav", subtype: str = "PCM_16", bitrate: int = 320, clip: str = "rescale"):
        self.outdir, self.names = Path(outdir), list(names)
        self.fmt = _pick_format(Path(f"x.{format}"), format)
        self.rate, self.channels, self.subtype, self.bitrate, self.clip = sample_rate, channels, subtype, bitrate, clip
        for name in self.names:
            _validate(self._final(name), self.fmt, np.zeros((channels, 0), np.float32), sample_rate, subtype,
                      bitrate, clip)
        self.tmpdir = self.outdir.parent / f".{self.outdir.name}.tmp-{secrets.token_hex(4)}"
        self._made = [p for p in [self.outdir.parent, *self.outdir.parent.parents] if not p.exists()]
        self.tmpdir.mkdir(parents=True)
        self.peaks = dict.fromkeys(self.names, 0.0)
        self.files: dict[str, sf.SoundFile] = {}
        self.spills: dict[str, object] = {}
        try:
            for name in self.names:
                self.files[name] = self._open(self._temp(name))
                if clip == "rescale":
                    self.spills[name] = open(self.tmpdir / f"{name}.f32", "wb")
        except BaseException:
            self.abort()
            raise

    def _final(self, name: str) -> Path:
        return self.outdir / f"{name}.{self.fmt}"

    def _temp(self, name: str) -> Path:
        return self.tmpdir / f"{name}.{self.fmt}"

    def _open(self, path: Path) -> sf.SoundFile:
        if self.fmt == "mp3":  # libsndfile maps compression 0..1 linearly onto 320..32 kbps (CBR)
            return sf.SoundFile(str(path), "w", self.rate, self.channels, "MPEG_LAYER_III", format="MP3",
                                compression_level=(320 - self.bitrate) / (320 - 32), bitrate_mode="CONSTANT")
        return sf.SoundFile(str(path), "w", self.rate, self.channels, self.subtype, format=FORMATS[self.fmt])

    def write(self, stems: dict[str, np.ndarray]) -> None:
        """Append ``{stem: [channels, n]}`` to each stem's file (any of the stems; each file grows on its own)."""
        unknown = set(stems) - set(self.names)
        if unknown:
            raise KeyError(f"not stems of this writer: {', '.join(sorted(unknown))}")
        for name, audio in stems.items():
            audio = np.asarray(audio, dtype=np.float32)
            if not np.isfinite(audio).all():
                raise AudioError(f"refusing to write '{self._final(name)}': the audio contains NaN/inf samples")
            self.peaks[name] = max(self.peaks[name], float(np.abs(audio).max(initial=0.0)))
            frames = np.ascontiguousarray(audio.T)  # soundfile wants [samples, channels]
            if self.clip == "rescale":
                self.spills[name].write(frames.tobytes())
            self.files[name].write(apply_clip(frames, "clamp") if self.clip == "clamp" else frames)

    def commit(self) -> dict[str, Path]:
        """Finish the files and move them into ``outdir``; returns ``{stem: path}``."""
        try:
            self._close()
            for name in self.names:
                peak = self.peaks[name]
                if self.clip == "rescale" and peak > 1:
                    self._reencode(name, 1.01 * peak)
                elif self.clip == "none" and peak > 1 and (self.fmt == "mp3" or self.subtype != "FLOAT"):
                    warnings.warn(f"'{self._final(name)}': peak {peak:.3f} > 1 will clip in {self.fmt} "
                                  f"{self.subtype}", stacklevel=2)
                _fsync(self._temp(name))
            self.outdir.mkdir(parents=True, exist_ok=True)
            moved = []
            try:
                for name in self.names:
                    os.replace(self._temp(name), self._final(name))
                    moved.append(self._final(name))
            except BaseException:
                for path in moved:
                    path.unlink(missing_ok=True)
                raise
        finally:
            self.abort()
        return {name: self._final(name) for name in self.names}

    def _reencode(self, name: str, divisor: float) -> None:
        """Rewrite ``name`` from its float32 spill, every sample divided by ``divisor``."""
        frame_bytes = 4 * self.channels
        with open(self.tmpdir / f"{name}.f32", "rb") as spill, self._open(self._temp(name)) as out:
            while chunk := spill.read(BLOCK * frame_bytes):
                out.write(np.frombuffer(chunk, np.float32).reshape(-1, self.channels) / divisor)

    def _close(self) -> None:
        for f in [*self.files.values(), *self.spills.values()]:
            if not f.closed:
                f.close()

    def abort(self) -> None:
        """Close and delete the temp folder and the folders made for it that stayed empty."""
        self._close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        for folder in self._made:  # deepest first; stops at the first one in use
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> "StemWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.abort()
