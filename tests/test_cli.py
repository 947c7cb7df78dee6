"""`stemforge separate` end to end: layout, formats, stem selection, and bad input handling."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from stemforge import Separator
from stemforge.cli import main


SR = 44100
STEMS = ["vocals", "bass", "drums", "other"]


@pytest.fixture
def model_args(msst_ref):
    return ["--checkpoint", str(msst_ref / "mdx23c_tiny.ckpt"), "--config", str(msst_ref / "mdx23c_tiny.yaml")]


@pytest.fixture
def song(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "in" / "song.wav"
    path.parent.mkdir()
    sf.write(path, (0.3 * rng.standard_normal((SR // 2 + 123, 2))).astype(np.float32), SR, subtype="FLOAT")
    return path


def _run(*argv) -> int:
    return main([str(a) for a in argv])


def test_separate_writes_demucs_layout(tmp_path, song, model_args):
    assert _run("separate", song, "-o", tmp_path / "out", *model_args, "-q") == 0
    track = tmp_path / "out" / "mdx23c_tiny" / "song"
    assert sorted(p.name for p in track.iterdir()) == sorted(f"{s}.wav" for s in STEMS)
    info = sf.info(track / "vocals.wav")
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 2, SR // 2 + 123, "PCM_16")


def test_cli_output_equals_python_api(tmp_path, song, model_args, msst_ref):
    assert _run("separate", song, "-o", tmp_path / "out", *model_args, "--float32", "--precision", "fp32",
                "--clip-mode", "none", "-q") == 0
    sep = Separator(checkpoint=msst_ref / "mdx23c_tiny.ckpt", config=msst_ref / "mdx23c_tiny.yaml", precision="fp32")
    calls = []
    stems = sep.separate(song, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    for name in STEMS:
        written, _ = sf.read(tmp_path / "out" / "mdx23c_tiny" / "song" / f"{name}.wav", dtype="float32")
        assert np.abs(written.T - stems[name]).max() < 1e-6


def test_python_api_accepts_arrays_at_other_rates(msst_ref):
    sep = Separator(checkpoint=msst_ref / "mdx23c_tiny.ckpt", config=msst_ref / "mdx23c_tiny.yaml", precision="fp32")
    mono = np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1
    stems = sep.separate(mono, sample_rate=48000)
    assert set(stems) == set(STEMS) and stems["vocals"].shape == (2, 44100)


def test_two_stems_is_target_and_mixture_minus_target(tmp_path, song, model_args):
    assert _run("separate", song, "-o", tmp_path / "out", *model_args, "--two-stems", "vocals", "--float32",
                "--clip-mode", "none", "-q") == 0
    track = tmp_path / "out" / "mdx23c_tiny" / "song"
    assert sorted(p.name for p in track.iterdir()) == ["no_vocals.wav", "vocals.wav"]
    mix, _ = sf.read(song, dtype="float32")
    vocals, _ = sf.read(track / "vocals.wav", dtype="float32")
    rest, _ = sf.read(track / "no_vocals.wav", dtype="float32")
    assert np.abs(vocals + rest - mix).max() < 1e-6


def test_stems_selection_and_formats(tmp_path, song, model_args):
    assert _run("separate", song, "-o", tmp_path / "a", *model_args, "--stems", "drums,bass", "--format", "flac",
                "--int24", "-q") == 0
    track = tmp_path / "a" / "mdx23c_tiny" / "song"
    assert sorted(p.name for p in track.iterdir()) == ["bass.flac", "drums.flac"]
    assert sf.info(track / "bass.flac").subtype == "PCM_24"
    assert _run("separate", song, "-o", tmp_path / "b", *model_args, "--format", "mp3", "--bitrate", "192", "-q") == 0
    mp3 = tmp_path / "b" / "mdx23c_tiny" / "song" / "other.mp3"
    assert abs(sf.info(mp3).frames - (SR // 2 + 123)) <= 1152


def test_unknown_stem_fails_before_any_output(tmp_path, song, model_args, capsys):
    assert _run("separate", song, "-o", tmp_path / "out", *model_args, "--two-stems", "voice", "-q") == 1
    err = capsys.readouterr().err
    assert "unknown stem 'voice'" in err and "vocals" in err
    assert not (tmp_path / "out").exists()


def _bad_inputs(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "corrupt.mp3").write_bytes(b"ID3" + bytes(range(256)) * 20)
    sf.write(d / "empty.wav", np.zeros((0, 2), np.float32), SR)
    sf.write(d / "silence.wav", np.zeros((SR, 2), np.float32), SR)
    nan = np.zeros((SR, 2), np.float32)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
    return {"missing": d / "missing.wav", "corrupt": d / "corrupt.mp3", "empty": d / "empty.wav",
            "silence": d / "silence.wav", "nan": d / "nan.wav"}


@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty", "silence", "nan"])
def test_bad_input_names_file_and_writes_nothing(tmp_path, model_args, capsys, kind):
    path = _bad_inputs(tmp_path)[kind]
    assert _run("separate", path, "-o", tmp_path / "out", *model_args, "-q") == 1
    err = capsys.readouterr().err
    assert path.name in err and "error:" in err
    assert not (tmp_path / "out" / "mdx23c_tiny" / path.stem).exists()


def test_one_bad_file_does_not_stop_the_others(tmp_path, song, model_args, capsys):
    bad = _bad_inputs(tmp_path)
    code = _run("separate", bad["corrupt"], song, bad["missing"], "-o", tmp_path / "out", *model_args, "-q")
    assert code == 1
    assert len(list((tmp_path / "out" / "mdx23c_tiny" / "song").iterdir())) == 4
    err = capsys.readouterr().err
    assert "2 of 3 file(s) failed" in err and "corrupt.mp3" in err and "missing.wav" in err


def test_mismatched_checkpoint_is_a_clear_error(tmp_path, song, msst_ref, capsys):
    from .conftest import REPO

    code = _run("separate", song, "-o", tmp_path / "out", "--checkpoint", msst_ref / "mdx23c_tiny.ckpt",
                "--config", REPO / "configs" / "mdx23c_small.yaml", "-q")
    assert code == 1
    err = capsys.readouterr().err
    assert "mdx23c_tiny.ckpt" in err and "does not match" in err and "mdx23c_small.yaml" in err
    assert not (tmp_path / "out").exists()


def test_checkpoint_without_config_is_explained(tmp_path, song, msst_ref, capsys):
    assert _run("separate", song, "--checkpoint", msst_ref / "mdx23c_tiny.ckpt", "-q") == 1
    assert "--config" in capsys.readouterr().err


def test_msst_window_mode_via_cli_matches_msst(tmp_path, msst_ref, model_args):
    mix = np.load(msst_ref / "mdx23c_tiny_demix_input.npy")
    path = tmp_path / "demix.wav"
    sf.write(path, mix.T, SR, subtype="FLOAT")
    assert _run("separate", path, "-o", tmp_path / "out", *model_args, "--window", "msst", "--precision", "fp32",
                "--float32", "--clip-mode", "none", "-q") == 0
    expected = np.load(msst_ref / "mdx23c_tiny_demix_output.npz")
    for stem in STEMS:
        got, _ = sf.read(tmp_path / "out" / "mdx23c_tiny" / "demix" / f"{stem}.wav", dtype="float32")
        assert np.abs(got.T - expected[stem]).max() < 1e-5


def test_random_checkpoint_round_trips(tmp_path, song):
    from .conftest import REPO

    cfg = REPO / "configs" / "mdx23c_small.yaml"
    assert _run("random-checkpoint", "--config", cfg, "-o", tmp_path / "m.safetensors") == 0
    assert _run("separate", song, "-o", tmp_path / "out", "--checkpoint", tmp_path / "m.safetensors",
                "--config", cfg, "-q") == 0
    assert len(list((tmp_path / "out" / "m" / "song").glob("*.wav"))) == 4


def test_help_is_fast_and_imports_no_torch():
    code = "import sys, stemforge.cli as c; c.build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stemforge", "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.5


def test_no_model_and_no_shipped_default_explains_what_to_pass(tmp_path, song, capsys, monkeypatch):
    from stemforge import registry

    others = {k: v for k, v in registry.load_registry().items() if k != "default"}
    monkeypatch.setattr(registry, "load_registry", lambda path=None: others)  # a build without the default model
    assert _run("separate", song, "-o", tmp_path / "out", "-q") == 1
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "stemforge models" in err
    assert not (tmp_path / "out").exists()
