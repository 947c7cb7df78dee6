"""Streaming separation equals the in-memory engine, holds constant memory and writes atomically."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge import Separator
from stemforge.audio import load_audio, save_audio
from stemforge.audio.stream import AudioReader, StemWriter
from stemforge.cli import main
from stemforge.engine import separate_tensor
from stemforge.engine.background import Prefetch, Sink
from stemforge.engine.streaming import OverlapAddStream, separate_stream
from stemforge.errors import StemforgeError

SR = 44100
STEMS = ["vocals", "bass", "drums", "other"]


@pytest.fixture(scope="module")
def tiny():
    from .conftest import MSST_REF

    if not MSST_REF.is_dir():
        pytest.skip("MSST reference missing")
    return Separator(checkpoint=MSST_REF / "mdx23c_tiny.ckpt", config=MSST_REF / "mdx23c_tiny.yaml",
                     precision="fp32", batch_size=1)


def _mix(length: int, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal((2, length))).astype(np.float32)


def _blocks(mix: np.ndarray, size: int) -> list[np.ndarray]:
    return [mix[:, i : i + size] for i in range(0, mix.shape[-1], size)]


def _stream(run, mix, block, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    pieces = list(separate_stream(run, _blocks(mix, block), channels=2, **kw))
    return torch.cat([m for m, _ in pieces], -1), torch.cat([s for _, s in pieces], -1)


@pytest.mark.parametrize("length", [3000, 8064, 8064 * 5 + 1234], ids=["short", "one-chunk", "ragged"])
@pytest.mark.parametrize("overlap,batch,block", [(4, 3, 1000), (2, 1, 8064), (1, 2, 777)])
def test_stream_equals_in_memory_engine(tiny, length, overlap, batch, block):
    mix = _mix(length)
    kw = dict(chunk=tiny.config.chunk_size, overlap=overlap, batch_size=batch, num_stems=4)
    ref = separate_tensor(tiny.runner, mix, **kw)
    got_mix, got = _stream(tiny.runner, mix, block, **kw)
    assert got.shape == ref.shape == (4, 2, length)
    assert (got - ref).abs().max() <= 1e-5
    assert np.array_equal(got_mix.numpy(), mix)  # the pieces carry the matching mixture


def _linear_run(chunks: torch.Tensor) -> torch.Tensor:
    """A cheap stand-in network: 3 stems, each a different gain of the input."""
    return chunks[:, None] * torch.tensor([0.5, 1.0, 2.0])[None, :, None, None]


def test_stream_memory_does_not_grow_with_length():
    chunk, overlap, batch, block = 1000, 4, 2, 300
    stream = OverlapAddStream(_linear_run, chunk=chunk, overlap=overlap, batch_size=batch, num_stems=3, channels=2)
    held, out = [], 0
    for b in _blocks(_mix(200_000), block):
        out += sum(p[1].shape[-1] for p in stream.push(b))
        held.append((stream.buf.shape[-1] if stream.buf is not None else 0) + sum(p.shape[-1] for p in stream.pending))
        held.append(stream.acc.shape[-1])
    out += sum(p[1].shape[-1] for p in stream.finish())
    assert out == 200_000
    assert max(held) <= chunk + batch * chunk // overlap + 2 * block


def test_progress_totals_are_exact_at_the_end(tiny):
    seen = []
    mix = _mix(8064 * 4)
    _stream(tiny.runner, mix, 5000, chunk=8064, overlap=4, batch_size=2, num_stems=4,
            progress=lambda d, t: seen.append((d, t)), length_hint=8064 * 3)
    assert seen[-1][0] == seen[-1][1] and all(d <= t for d, t in seen)


def test_reader_equals_load_audio(tmp_path):
    audio = _mix(48000 + 321).T
    sf.write(tmp_path / "a.wav", audio, 48000, subtype="FLOAT")
    sf.write(tmp_path / "m.flac", audio[:, :1], SR)
    for name, rate in [("a.wav", SR), ("m.flac", SR), ("a.wav", None)]:
        ref = load_audio(tmp_path / name, rate, 2)
        got = np.concatenate(list(AudioReader(tmp_path / name, rate, 2, block=4096)), 1)
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-6


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, _mix(8064 * 6 + 999, seed=3).T, 48000, subtype="FLOAT")  # resampled to 44.1 kHz
    return path


def _read(folder, name):
    return sf.read(folder / name, dtype="float32")[0].T


@pytest.mark.parametrize("extra", [[], ["--two-stems", "vocals"], ["--stems", "bass,other"]], ids=["all", "two", "some"])
def test_cli_streaming_equals_in_memory(tmp_path, song, msst_ref, extra):
    model = ["--checkpoint", str(msst_ref / "mdx23c_tiny.ckpt"), "--config", str(msst_ref / "mdx23c_tiny.yaml")]
    common = [str(song), *model, "--float32", "--precision", "fp32", "--batch-size", "2", "-q", *extra]
    assert main(["separate", "-o", str(tmp_path / "s"), *common]) == 0
    assert main(["separate", "-o", str(tmp_path / "m"), "--in-memory", *common]) == 0
    streamed, memory = tmp_path / "s" / "mdx23c_tiny" / "song", tmp_path / "m" / "mdx23c_tiny" / "song"
    names = sorted(p.name for p in memory.iterdir())
    assert sorted(p.name for p in streamed.iterdir()) == names
    for name in names:
        assert np.abs(_read(streamed, name) - _read(memory, name)).max() <= 1e-5
    assert not list((tmp_path / "s" / "mdx23c_tiny").glob(".*tmp*"))


def test_writer_rescale_equals_save_audio(tmp_path):
    audio = 1.7 * _mix(10_000)  # peak > 1: the whole stem is rescaled at the end
    with StemWriter(tmp_path / "out", ["x"], SR, 2, subtype="PCM_16", clip="rescale") as writer:
        for block in _blocks(audio, 3000):
            writer.write({"x": block})
        writer.commit()
    save_audio(tmp_path / "ref.wav", audio, SR, subtype="PCM_16", clip="rescale")
    assert np.array_equal(_read(tmp_path / "out", "x.wav"), _read(tmp_path, "ref.wav"))


def test_failure_midway_leaves_no_output(tmp_path, song, tiny, monkeypatch):
    calls, runner = [], tiny.run

    def failing(chunks):
        calls.append(len(chunks))
        if len(calls) == 4:
            raise RuntimeError("boom")
        return runner(chunks)

    monkeypatch.setattr(tiny, "run", failing)
    with pytest.raises(RuntimeError, match="boom"):
        tiny.separate_file(song, tmp_path / "out" / "m" / "song")
    assert not (tmp_path / "out").exists()  # no stems, no temp folder, no empty parents


def test_silent_file_is_refused_after_streaming(tmp_path, tiny):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((20_000, 2), np.float32), SR)
    with pytest.raises(StemforgeError, match="digital silence"):
        tiny.separate_file(path, tmp_path / "out" / "silence")
    assert not (tmp_path / "out").exists()


def test_background_threads_pass_errors_on():
    def items():
        yield 1
        raise ValueError("decode failed")

    with Prefetch(items()) as it, pytest.raises(ValueError, match="decode failed"):
        list(it)
    seen = []
    sink = Sink(lambda x: seen.append(1 / x))
    sink.put(1)
    sink.put(0)
    with pytest.raises(ZeroDivisionError):
        sink.close()
    assert seen == [1.0]


def test_normalizing_config_streams_like_in_memory(tmp_path, song, msst_ref):
    config = tmp_path / "normalized.yaml"
    config.write_text((msst_ref / "mdx23c_tiny.yaml").read_text().replace("inference:", "inference:\n  normalize: true"))
    sep = Separator(checkpoint=msst_ref / "mdx23c_tiny.ckpt", config=config, precision="fp32", batch_size=2)
    assert sep.config.inference.normalize
    for stream in (True, False):
        sep.separate_file(song, tmp_path / str(stream), two_stems="vocals", subtype="FLOAT", clip="none", stream=stream)
    for name in ("vocals.wav", "no_vocals.wav"):
        assert np.abs(_read(tmp_path / "True", name) - _read(tmp_path / "False", name)).max() <= 1e-5
