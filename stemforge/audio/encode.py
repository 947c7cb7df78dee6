"""Writing `[channels, samples]` float arrays to wav, flac or mp3, atomically.

Every file is written to a hidden temp file next to its destination and moved
into place with `os.replace`, so a crash never leaves a partial output file.

MP3 uses libsndfile's LAME writer (via soundfile), not lameenc: libsndfile
writes the LAME/Xing gapless header, so decoders drop the 1105-sample encoder
delay and the end padding. Measured with a click: soundfile and PyAV both decode
libsndfile's mp3 at lag 0 and exact length; lameenc's stream has no such
header and decodes 1105 samples late and ~1650 samples long.
"""
from __future__ import annotations

import io
import os
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from stemforge.audio.decode import AudioError

FORMATS = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3"}
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
MP3_BITRATES = (128, 192, 320)
MP3_RATES = (32000, 44100, 48000)  # MPEG-1 Layer III: the rates that allow 320 kbps
CLIP_MODES = ("rescale", "clamp", "none")
LAME_DELAY = 1105  # samples of encoder delay, which decoders drop when the gapless header tells them to


def save_audio(
    path: str | Path,
    audio: np.ndarray,
    sample_rate: int,
    *,
    format: str | None = None,
    subtype: Literal["PCM_16", "PCM_24", "FLOAT"] = "PCM_16",
    bitrate: int = 320,
    clip: Literal["rescale", "clamp", "none"] = "rescale",
) -> Path:
    """Write `audio: [channels, samples]` (or `[samples]` for mono) to `path`; return the path.

    `format`: 'wav', 'flac' or 'mp3'; None takes it from the suffix. `subtype` applies to
    wav/flac (flac has no FLOAT). `bitrate` (kbps, CBR) applies to mp3. `clip`: see `apply_clip`.
    """
    path = Path(path)
    fmt = _pick_format(path, format)
    audio = _as_array(audio, path)
    _validate(path, fmt, audio, sample_rate, subtype, bitrate, clip)
    audio = apply_clip(audio, clip)
    if clip == "none" and (fmt == "mp3" or subtype != "FLOAT"):
        peak = float(np.abs(audio).max(initial=0.0))
        if peak > 1:
            warnings.warn(f"'{path}': peak {peak:.3f} > 1 will clip in {fmt} {subtype}", stacklevel=2)
    with atomic_write(path) as tmp:
        _write(tmp, audio, sample_rate, fmt, subtype, bitrate)
    return path


def apply_clip(audio: np.ndarray, mode: str) -> np.ndarray:
    """Keep `audio: [channels, samples]` in range, like Demucs's `--clip-mode`.

    rescale: if the peak exceeds 1, divide everything by 1.01 * peak (shape preserved).
    clamp: clip samples to [-0.99, 0.99]. none: return unchanged.
    """
    if mode == "rescale":
        peak = float(np.abs(audio).max(initial=0.0))
        return audio / max(1.01 * peak, 1.0) if peak > 1 else audio
    if mode == "clamp":
        return np.clip(audio, -0.99, 0.99)
    if mode == "none":
        return audio
    raise ValueError(f"clip must be one of {CLIP_MODES}, got {mode!r}")


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success move it onto `path`, on any error delete it.

    The temp file is `.<name>.tmp-<random><suffix>` in the same directory, so `os.replace`
    is atomic. Parent directories are created. The file ends with the mode `open()` gives a new
    file (0o666 less the umask), whatever the writer chose: safetensors, for one, writes 0o600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def mp3_roundtrip(audio: np.ndarray, sample_rate: int, bitrate: int) -> np.ndarray:
    """``audio: [channels, samples]`` through an mp3 encoder and decoder in memory (libsndfile's LAME,
    CBR ``bitrate`` kbps, 32..320): what a song loses on its way to a listener, sample-aligned and of
    the same length. A peak above 1 is scaled down for the encoder and back up after, so nothing clips.

    From 64 kbps up LAME writes the gapless header and the decoder drops the encoder delay itself;
    below, it writes none, so the delay (``LAME_DELAY``) is dropped here.
    """
    length = audio.shape[-1]
    scale = max(1.0, float(np.abs(audio).max(initial=0.0)) / 0.99)
    buffer = io.BytesIO()
    data = np.ascontiguousarray(audio.T / scale, dtype=np.float32)
    sf.write(buffer, data, sample_rate, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=_mp3_level(bitrate), bitrate_mode="CONSTANT")
    buffer.seek(0)
    decoded = sf.read(buffer, dtype="float32", always_2d=True)[0].T
    if decoded.shape[-1] >= length + LAME_DELAY:  # no gapless header: the delay and the last frame's padding
        decoded = decoded[:, LAME_DELAY:]
    decoded = decoded[:, :length]
    if decoded.shape[-1] < length:
        decoded = np.pad(decoded, ((0, 0), (0, length - decoded.shape[-1])))
    return np.ascontiguousarray(decoded * np.float32(scale), dtype=np.float32)


def _mp3_level(bitrate: int) -> float:
    """libsndfile's compression level for a CBR ``bitrate``: it maps 0..1 linearly onto 320..32 kbps
    (1.0 itself is refused; 0.999 gives 32 kbps)."""
    return min((320 - bitrate) / (320 - 32), 0.999)


def _write(tmp: Path, audio: np.ndarray, sample_rate: int, fmt: str, subtype: str, bitrate: int) -> None:
    data = np.ascontiguousarray(audio.T, dtype=np.float32)  # soundfile wants [samples, channels]
    if fmt == "mp3":
        sf.write(str(tmp), data, sample_rate, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=_mp3_level(bitrate), bitrate_mode="CONSTANT")
    else:
        sf.write(str(tmp), data, sample_rate, format=FORMATS[fmt], subtype=subtype)


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (a set-and-restore
    through `os.umask` would briefly give other threads' new files the wrong mode)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pick_format(path: Path, format: str | None) -> str:
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise AudioError(
            f"cannot write '{path}': unsupported output format {fmt or '(no suffix)'!r}; "
            f"use one of {', '.join(FORMATS)}"
        )
    return fmt


def _as_array(audio, path: Path) -> np.ndarray:
    if hasattr(audio, "detach"):  # torch.Tensor
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2:
        raise ValueError(f"audio for '{path}' must be [channels, samples], got shape {audio.shape}")
    return audio


def _validate(path: Path, fmt: str, audio: np.ndarray, sample_rate: int, subtype: str,
              bitrate: int, clip: str) -> None:
    if clip not in CLIP_MODES:
        raise AudioError(f"cannot write '{path}': clip={clip!r}; use one of {', '.join(CLIP_MODES)}")
    if fmt == "mp3":
        if bitrate not in MP3_BITRATES:
            raise AudioError(f"cannot write '{path}': mp3 bitrate {bitrate} kbps is not supported; "
                             f"use one of {', '.join(map(str, MP3_BITRATES))}")
        if sample_rate not in MP3_RATES:
            raise AudioError(f"cannot write '{path}': mp3 needs a sample rate of "
                             f"{', '.join(map(str, MP3_RATES))} Hz, got {sample_rate}; resample first")
        if audio.shape[0] > 2:
            raise AudioError(f"cannot write '{path}': mp3 holds at most 2 channels, got {audio.shape[0]}")
    else:
        if subtype not in SUBTYPES:
            raise AudioError(f"cannot write '{path}': subtype {subtype!r}; use one of {', '.join(SUBTYPES)}")
        if fmt == "flac" and subtype == "FLOAT":
            raise AudioError(f"cannot write '{path}': flac has no FLOAT subtype; "
                             "use PCM_16 or PCM_24, or write a FLOAT wav")
    if not np.isfinite(audio).all():
        raise AudioError(f"refusing to write '{path}': the audio contains NaN/inf samples")
