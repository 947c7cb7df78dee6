"""Audio I/O: decode files to float32 `[channels, samples]`, resample, and write atomically."""
from stemforge.audio.decode import (
    AudioError,
    AudioInfo,
    audio_info,
    convert_channels,
    load_audio,
    load_audio_with_rate,
)
from stemforge.audio.encode import apply_clip, atomic_write, save_audio
from stemforge.audio.resample import resample

__all__ = [
    "AudioError",
    "AudioInfo",
    "apply_clip",
    "atomic_write",
    "audio_info",
    "convert_channels",
    "load_audio",
    "load_audio_with_rate",
    "resample",
    "save_audio",
]
