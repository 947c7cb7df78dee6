"""A byte-deterministic float32 WAV writer.

libsndfile (soundfile) adds a PEAK chunk with a timestamp to float WAVs, so the same
audio written twice gives different bytes; this writer's output depends only on the
audio: RIFF/WAVE, fmt (IEEE float, 32 bit, cbSize 0), fact, data.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

WAVE_FORMAT_IEEE_FLOAT = 3


def write_wav(path: Path | str, audio: np.ndarray, sample_rate: int) -> None:
    """audio: [channels, samples] -> interleaved little-endian float32 WAV at `path`."""
    channels, frames = audio.shape
    data = np.ascontiguousarray(audio.T, dtype="<f4")
    block = 4 * channels
    fmt = struct.pack("<HHIIHHH", WAVE_FORMAT_IEEE_FLOAT, channels, sample_rate,
                      sample_rate * block, block, 32, 0)
    chunks = [(b"fmt ", fmt), (b"fact", struct.pack("<I", frames))]
    header = b"".join(tag + struct.pack("<I", len(body)) + body for tag, body in chunks)
    size = 4 + len(header) + 8 + data.nbytes
    with open(path, "wb") as file:
        file.write(b"RIFF" + struct.pack("<I", size) + b"WAVE" + header)
        file.write(b"data" + struct.pack("<I", data.nbytes))
        data.tofile(file)
