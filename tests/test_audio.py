"""Tests for stemforge.audio: decoding, resampling, encoding, errors, atomic writes."""
from __future__ import annotations

import fractions
import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from stemforge.audio import (
    AudioInfo,
    apply_clip,
    audio_info,
    load_audio,
    load_audio_with_rate,
    resample,
    save_audio,
)
from stemforge.audio.encode import mp3_roundtrip
from stemforge.errors import StemforgeError

SR = 44100
MUSDB_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev" / "Music Delta - 80s Rock.stem.mp4"


# --- helpers -----------------------------------------------------------------


def music(seconds: float = 1.0, sr: int = SR, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A deterministic music-like test signal: [channels, samples], peak ~0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = []
    for c in range(channels):
        tones = sum(
            np.sin(2 * np.pi * f * (1 + 0.01 * c) * t + rng.uniform(0, 2 * np.pi)) / (k + 1)
            for k, f in enumerate((110, 220, 330, 587, 880, 1760, 3520))
        )
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t + c)
        out.append(envelope * tones + 0.02 * rng.standard_normal(t.size))
    audio = np.stack(out)
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def lag(reference: np.ndarray, estimate: np.ndarray) -> int:
    """Lag (samples) at which `estimate` best matches `reference` (1-D signals)."""
    n = len(reference) + len(estimate)
    corr = np.fft.irfft(np.fft.rfft(estimate, n) * np.conj(np.fft.rfft(reference, n)), n)
    k = int(np.argmax(corr))
    return k if k < n // 2 else k - n


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def peak_freq(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


def write_aac(path: Path, streams: list[np.ndarray], sr: int = SR, format: str | None = None) -> None:
    """Write each `[2, samples]` array as one AAC stream of `path` (PyAV's native 'aac' encoder)."""
    container = av.open(str(path), "w", format=format)
    outs = [container.add_stream("aac", rate=sr, layout="stereo") for _ in streams]
    for out, audio in zip(outs, streams):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout="stereo")
        frame.sample_rate = sr
        frame.pts = 0  # lets the muxer record the encoder priming in an edit list
        frame.time_base = fractions.Fraction(1, sr)
        for packet in [*out.encode(frame), *out.encode(None)]:
            container.mux(packet)
    container.close()


# --- lossless round trips ------------------------------------------------------


@pytest.mark.parametrize(
    "suffix,subtype,tolerance",
    [
        (".wav", "PCM_16", 1.5 / 2**15),
        (".wav", "PCM_24", 1.5 / 2**23),
        (".wav", "FLOAT", 0.0),
        (".flac", "PCM_16", 1.5 / 2**15),
        (".flac", "PCM_24", 1.5 / 2**23),
    ],
)
def test_lossless_round_trip(tmp_path, suffix, subtype, tolerance):
    audio = music()
    path = save_audio(tmp_path / f"x{suffix}", audio, SR, subtype=subtype)
    assert path == tmp_path / f"x{suffix}"
    loaded, rate = load_audio_with_rate(path)
    assert rate == SR
    assert loaded.dtype == np.float32 and loaded.flags.c_contiguous
    assert loaded.shape == audio.shape
    assert np.abs(loaded - audio).max() <= tolerance
    assert sf.info(str(path)).subtype == subtype


def test_save_creates_parent_dirs_and_accepts_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    audio = music(0.1)
    path = save_audio(tmp_path / "a" / "b" / "x.wav", torch.from_numpy(audio), SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), audio)


# --- mp3 ---------------------------------------------------------------------------


@pytest.mark.parametrize("bitrate,min_snr", [(128, 21.0), (192, 25.0), (320, 33.0)])
def test_mp3_round_trip_aligned_same_length(tmp_path, bitrate, min_snr):
    audio = music(1.3)  # not a multiple of the 1152-sample mp3 frame
    path = save_audio(tmp_path / "x.mp3", audio, SR, bitrate=bitrate)
    loaded = load_audio(path, sample_rate=SR)
    assert loaded.shape == audio.shape
    for c in range(2):
        assert abs(lag(audio[c], loaded[c])) <= 2
    assert snr_db(audio, loaded) >= min_snr
    with av.open(str(path)) as container:
        assert container.streams.audio[0].bit_rate == bitrate * 1000


def test_mp3_click_is_not_delayed(tmp_path):
    """LAME adds ~1105 samples of encoder delay; the gapless header must remove it."""
    audio = np.zeros((2, SR), np.float32)
    audio[:, 30000] = 0.9
    loaded = load_audio(save_audio(tmp_path / "click.mp3", audio, SR), sample_rate=SR)
    assert loaded.shape == audio.shape
    assert abs(int(np.argmax(np.abs(loaded[0]))) - 30000) <= 2


@pytest.mark.parametrize("bitrate", [32, 48, 64, 128, 320])
def test_mp3_roundtrip_in_memory_is_aligned_at_every_bitrate(bitrate):
    """Below 64 kbps LAME writes no gapless header, so the roundtrip drops the encoder delay itself."""
    audio = np.zeros((2, SR), np.float32)
    audio[:, 30000] = 0.9
    out = mp3_roundtrip(audio, SR, bitrate)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert abs(int(np.argmax(np.abs(out[0]))) - 30000) <= 2


def test_mp3_roundtrip_adds_codec_noise_that_shrinks_with_bitrate_and_never_clips():
    audio = 3.0 * music(1.3)  # a peak far above full scale
    noise = {kbps: snr_db(audio, mp3_roundtrip(audio, SR, kbps)) for kbps in (64, 128, 320)}
    assert 8.0 < noise[64] < noise[128] < noise[320] < 60.0  # lossy, and less so at a higher bitrate
    peak = np.abs(audio).max()
    assert peak > 1.2 and np.abs(mp3_roundtrip(audio, SR, 128)).max() > 0.9 * peak  # scaled down and up, not clipped


# --- other decoders ---------------------------------------------------------------


def test_ogg_read(tmp_path):
    audio = music()
    sf.write(str(tmp_path / "x.ogg"), audio.T, SR, format="OGG", subtype="VORBIS")
    loaded = load_audio(tmp_path / "x.ogg")
    assert loaded.shape == audio.shape
    assert np.corrcoef(audio.ravel(), loaded.ravel())[0, 1] > 0.99


def test_m4a_read(tmp_path):
    audio = music()
    write_aac(tmp_path / "x.m4a", [audio])
    loaded, rate = load_audio_with_rate(tmp_path / "x.m4a")
    assert rate == SR and loaded.shape[0] == 2
    assert audio.shape[1] <= loaded.shape[1] < audio.shape[1] + 1024  # AAC pads to whole frames
    assert abs(lag(audio[0], loaded[0])) <= 2  # priming removed via the edit list
    n = audio.shape[1]
    assert np.corrcoef(audio.ravel(), loaded[:, :n].ravel())[0, 1] > 0.99
    info = audio_info(tmp_path / "x.m4a")
    assert (info.sample_rate, info.channels) == (SR, 2)
    assert abs(info.duration_s - 1.0) < 0.05


def test_raw_aac_read(tmp_path):
    audio = music()
    write_aac(tmp_path / "x.aac", [audio], format="adts")
    loaded = load_audio(tmp_path / "x.aac")
    assert loaded.shape[0] == 2 and abs(loaded.shape[1] - audio.shape[1]) < 2048
    assert np.abs(loaded).max() > 0.2


def test_multistream_file_reads_each_stream(tmp_path):
    freqs = (220.0, 440.0, 880.0)
    streams = [np.stack([sine(f, 1.0, SR)] * 2) for f in freqs]
    path = tmp_path / "x.stem.mp4"
    write_aac(path, streams)
    for index, freq in enumerate(freqs):
        loaded = load_audio(path, stream=index)
        assert abs(peak_freq(loaded[0, 2048:SR - 2048], SR) - freq) < 3
    with pytest.raises(StemforgeError, match=r"x\.stem\.mp4.*3 audio stream"):
        load_audio(path, stream=3)


def test_soundfile_failure_falls_back_to_pyav(tmp_path):
    """An m4a misnamed .wav: soundfile cannot read it, PyAV can."""
    audio = music()
    write_aac(tmp_path / "x.m4a", [audio])
    (tmp_path / "x.m4a").rename(tmp_path / "misnamed.wav")
    loaded = load_audio(tmp_path / "misnamed.wav")
    assert loaded.shape[0] == 2 and loaded.shape[1] >= audio.shape[1]


# --- resampling and channels ---------------------------------------------------------


def test_resample_48k_to_44k_keeps_duration_and_frequency(tmp_path):
    x = np.stack([sine(1000.0, 2.0, 48000)] * 2)
    y = resample(x, 48000, 44100)
    assert y.shape == (2, 88200) and y.dtype == np.float32 and y.flags.c_contiguous
    assert abs(peak_freq(y[0], 44100) - 1000.0) < 1.0
    save_audio(tmp_path / "x48.wav", x, 48000, subtype="FLOAT")
    loaded = load_audio(tmp_path / "x48.wav", sample_rate=44100)
    np.testing.assert_allclose(loaded, y, atol=1e-6)


def test_resample_identity_returns_input():
    x = music(0.1)
    assert resample(x, SR, SR) is x


def test_mono_is_duplicated(tmp_path):
    mono = sine(440.0, 0.5, SR)
    sf.write(str(tmp_path / "mono.wav"), mono, SR, subtype="FLOAT")
    loaded = load_audio(tmp_path / "mono.wav")
    assert loaded.shape == (2, mono.size) and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded[0], mono)
    np.testing.assert_array_equal(loaded[1], mono)
    assert load_audio(tmp_path / "mono.wav", channels=1).shape == (1, mono.size)


def test_six_channels_downmixed_with_warning(tmp_path):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (6, 1000)).astype(np.float32)
    sf.write(str(tmp_path / "surround.wav"), audio.T, SR, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"surround\.wav.*6 channels"):
        loaded = load_audio(tmp_path / "surround.wav")
    assert loaded.shape == (2, 1000)
    np.testing.assert_allclose(loaded[0], audio.mean(axis=0), atol=1e-6)
    np.testing.assert_array_equal(loaded[0], loaded[1])


def test_audio_info_is_header_only(tmp_path):
    save_audio(tmp_path / "x.flac", music(0.5), SR)
    assert audio_info(tmp_path / "x.flac") == AudioInfo(SR, 2, SR // 2, 0.5)


# --- decode errors ---------------------------------------------------------------------


def _nan_wav(path: Path) -> Path:
    audio = music(0.1)
    audio[1, 2205] = np.nan
    sf.write(str(path), audio.T, SR, subtype="FLOAT")
    return path


def _zero_length_wav(path: Path) -> Path:
    sf.write(str(path), np.zeros((0, 2), np.float32), SR)
    return path


@pytest.mark.parametrize(
    "make,pattern",
    [
        (lambda d: d / "missing.wav", r"not found: '.*missing\.wav'"),
        (lambda d: (d / "notes.mp3").write_text("not audio\n" * 100) and d / "notes.mp3",
         r"could not decode '.*notes\.mp3'.*is it an audio file\? supported: wav, flac, mp3"),
        (lambda d: (d / "noise.m4a").write_bytes(np.random.default_rng(0).bytes(4000)) and d / "noise.m4a",
         r"could not decode '.*noise\.m4a'"),
        (lambda d: (d / "empty.flac").write_bytes(b"") or d / "empty.flac", r"empty\.flac' is empty"),
        (lambda d: _zero_length_wav(d / "silent.wav"), r"silent\.wav' contains no audio"),
        (lambda d: _nan_wav(d / "nan.wav"), r"nan\.wav' contains NaN/inf samples at 0\.050 s.*re-export"),
        (lambda d: d, r"is a directory"),
    ],
)
def test_decode_errors_name_the_file(tmp_path, make, pattern):
    path = make(tmp_path)
    with pytest.raises(StemforgeError, match=pattern):
        load_audio(path)


def test_stream_out_of_range_on_single_stream_file(tmp_path):
    save_audio(tmp_path / "one.wav", music(0.1), SR)
    with pytest.raises(StemforgeError, match=r"one\.wav' has 1 audio stream"):
        load_audio(tmp_path / "one.wav", stream=1)


# --- encode options and errors ---------------------------------------------------------


@pytest.mark.parametrize(
    "name,kwargs,pattern",
    [
        ("x.flac", {"subtype": "FLOAT"}, r"x\.flac.*no FLOAT"),
        ("x.mp3", {"bitrate": 256}, r"x\.mp3.*256.*128, 192, 320"),
        ("x.ogg", {}, r"x\.ogg.*unsupported output format"),
        ("x.wav", {"subtype": "PCM_8"}, r"x\.wav.*PCM_8"),
        ("x.wav", {"clip": "soft"}, r"x\.wav.*clip"),
    ],
)
def test_encode_rejects_bad_options(tmp_path, name, kwargs, pattern):
    with pytest.raises(StemforgeError, match=pattern):
        save_audio(tmp_path / name, music(0.1), SR, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_format_argument_overrides_suffix(tmp_path):
    path = save_audio(tmp_path / "x.out", music(0.1), SR, format="flac")
    assert sf.info(str(path)).format == "FLAC"


def test_clip_rescale_keeps_shape():
    quiet = music(0.2)
    assert apply_clip(quiet, "rescale") is quiet  # peak below 1: untouched
    loud = 4 * quiet  # peak 2
    out = apply_clip(loud, "rescale")
    np.testing.assert_allclose(out, loud / (1.01 * 2.0), rtol=1e-6)
    assert np.abs(out).max() < 1


def test_clip_clamp_clips():
    loud = 4 * music(0.2)
    out = apply_clip(loud, "clamp")
    assert np.abs(out).max() == pytest.approx(0.99)
    small = np.abs(loud) < 0.99
    np.testing.assert_array_equal(out[small], loud[small])


def test_clip_none(tmp_path):
    loud = 4 * music(0.2)
    path = save_audio(tmp_path / "loud.wav", loud, SR, subtype="FLOAT", clip="none")
    np.testing.assert_array_equal(load_audio(path), loud)  # float wav keeps > 1
    with pytest.warns(UserWarning, match=r"loud16\.wav.*clip"):
        save_audio(tmp_path / "loud16.wav", loud, SR, clip="none")
    assert np.abs(load_audio(tmp_path / "loud16.wav")).max() <= 1.0


# --- atomic writes -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.wav", "x.flac", "x.mp3"])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, name):
    real_write = sf.SoundFile.write

    def write_half_then_crash(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", write_half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save_audio(tmp_path / "out" / name, music(), SR)
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_overwrite_keeps_previous_file(tmp_path, monkeypatch):
    path = save_audio(tmp_path / "x.wav", music(0.1), SR)
    before = path.read_bytes()

    def crash(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(sf.SoundFile, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        save_audio(path, music(0.2, seed=1), SR)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_write_gives_the_umask_mode(tmp_path, umask):
    """A weights file saved through atomic_write is readable as any new file is (safetensors alone
    writes 0o600), and a private umask is kept."""
    from safetensors.torch import save_file
    import torch

    from stemforge.audio import atomic_write

    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "w.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, str(tmp))
        save_audio(tmp_path / "x.wav", music(0.1), SR)
    finally:
        os.umask(old)
    for name in ("w.safetensors", "x.wav"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


# --- real MUSDB sample ---------------------------------------------------------------------


@pytest.mark.skipif(not MUSDB_SAMPLE.exists(), reason="MUSDB sample not present")
def test_musdb_stem_file():
    info = audio_info(MUSDB_SAMPLE)
    assert info.sample_rate == SR and info.channels == 2
    assert info.duration_s == pytest.approx(6.8, abs=0.1)
    stems = [load_audio(MUSDB_SAMPLE, stream=i) for i in range(5)]
    assert all(s.shape == stems[0].shape for s in stems)
    assert stems[0].shape[1] / SR == pytest.approx(6.8, abs=0.1)
    mixture, sources = stems[0], stems[1:]  # mixture, drums, bass, other, vocals
    assert np.corrcoef(mixture.ravel(), sum(sources).ravel())[0, 1] > 0.9
    # each stem alone explains the mixture worse than their sum does
    assert all(np.corrcoef(mixture.ravel(), s.ravel())[0, 1] < 0.9 for s in sources)
    with pytest.raises(StemforgeError, match=r"80s Rock\.stem\.mp4' has 5 audio stream"):
        load_audio(MUSDB_SAMPLE, stream=5)
