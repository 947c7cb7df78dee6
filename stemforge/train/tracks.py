"""Training/validation tracks on disk, in the MUSDB18 layouts.

* one folder per track holding ``mixture.wav`` (optional for training) and one ``STEM.wav``
  or ``STEM.flac`` per stem;
* or NI ``NAME.stem.mp4`` files with streams mixture, drums, bass, other, vocals.

WAV/FLAC at the model's rate are read in place, segment by segment. Anything else
(``.stem.mp4``, other rates) is decoded once into float WAVs under ``cache_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import StemforgeError

STEM_MP4_STREAMS = ("mixture", "drums", "bass", "other", "vocals")
SUFFIXES = (".wav", ".flac")


@dataclass(frozen=True)
class Track:
    """One track: ``files[stem]`` are WAV/FLAC at the model's rate; ``length`` in samples."""

    name: str
    files: dict[str, Path]
    length: int

    def read(self, stem: str, start: int = 0, length: int | None = None, channels: int = 2) -> np.ndarray:
        """``[channels, length]`` float32 from ``start``; zero-padded past the end of the track."""
        length = self.length - start if length is None else length
        data, _ = sf.read(str(self.files[stem]), start=start, frames=length, dtype="float32", always_2d=True)
        data = data.T
        if data.shape[0] != channels:
            data = np.repeat(data[:1], channels, 0) if data.shape[0] == 1 else data[:channels]
        if data.shape[1] < length:
            data = np.pad(data, ((0, 0), (0, length - data.shape[1])))
        return np.ascontiguousarray(data)


def find_tracks(root: str | Path, stems: tuple[str, ...], sample_rate: int, cache_dir: str | Path) -> list[Track]:
    """All tracks under ``root`` (folders and ``.stem.mp4`` files), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise StemforgeError(f"data folder not found: '{root}'")
    tracks = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            tracks.append(_folder_track(entry, stems, sample_rate, Path(cache_dir)))
        elif entry.name.endswith(".stem.mp4"):
            tracks.append(_stem_mp4_track(entry, stems, sample_rate, Path(cache_dir)))
    if not tracks:
        raise StemforgeError(
            f"no tracks in '{root}': expected one folder per track with {', '.join(s + '.wav' for s in stems)} "
            "(MUSDB18-HQ layout) or NAME.stem.mp4 files (MUSDB18)"
        )
    return tracks


def _folder_track(folder: Path, stems: tuple[str, ...], rate: int, cache: Path) -> Track:
    files = {}
    for stem in ("mixture", *stems):
        path = next((folder / f"{stem}{s}" for s in SUFFIXES if (folder / f"{stem}{s}").is_file()), None)
        if path is None and stem != "mixture":
            raise StemforgeError(f"track '{folder}' has no {stem}.wav or {stem}.flac (training.instruments lists '{stem}')")
        if path is not None:
            files[stem] = path if sf.info(str(path)).samplerate == rate else _cached(path, 0, rate, cache / folder.name)
    return _track(folder.name, files)


def stem_mp4_streams(path: Path, stems: tuple[str, ...]) -> tuple[str, dict[str, int]]:
    """The track name of an NI ``NAME.stem.mp4`` and ``{stem: audio stream index}`` for ``mixture`` and
    ``stems``; a stem the format does not hold is an error naming the file."""
    missing = [s for s in stems if s not in STEM_MP4_STREAMS]
    if missing:
        raise StemforgeError(f"'{path}' holds {', '.join(STEM_MP4_STREAMS)}; it has no stem {', '.join(missing)}")
    return path.name[: -len(".stem.mp4")], {s: STEM_MP4_STREAMS.index(s) for s in ("mixture", *stems)}


def _stem_mp4_track(path: Path, stems: tuple[str, ...], rate: int, cache: Path) -> Track:
    name, streams = stem_mp4_streams(path, stems)
    return _track(name, {s: _cached(path, i, rate, cache / name, s) for s, i in streams.items()})


def _track(name: str, files: dict[str, Path]) -> Track:
    return Track(name, files, min(sf.info(str(p)).frames for p in files.values()))


def _cached(source: Path, stream: int, rate: int, folder: Path, stem: str | None = None) -> Path:
    """Decode ``source`` (one stream) at ``rate`` into ``folder/STEM.wav`` once; reuse it afterwards."""
    from ..audio import atomic_write, load_audio

    target = folder / f"{stem or source.stem}.wav"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    audio = load_audio(source, sample_rate=rate, channels=2, stream=stream)
    with atomic_write(target) as tmp:
        sf.write(str(tmp), audio.T, rate, subtype="FLOAT")
    return target
