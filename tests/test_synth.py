"""stemforge.synth: procedural multitrack corpus (FluidSynth + espeak-ng)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from stemforge.synth import missing_tools
from stemforge.synth.music import Feel, Key, diatonic_chord

MISSING = missing_tools()
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason=f"synth needs {', '.join(MISSING)} (see .ci/apt-packages.txt)")

SECONDS = 6.0
SR = 44100
STEMS = ("vocals", "drums", "bass", "other")
PIECES = ("kick", "snare", "toms", "hihat", "cymbals")
WAVS = ("mixture", *STEMS, *PIECES)


def _read(folder: Path, name: str) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
    assert rate == SR
    return audio.T  # [channels, samples]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    if MISSING:
        pytest.skip(f"synth needs {', '.join(MISSING)}")
    from stemforge.synth import generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("synth"), songs=2, seconds=SECONDS, seed=3, jobs=1)


@needs_tools
def test_song_folder_has_all_files_with_right_format(corpus):
    import soundfile as sf

    for folder in corpus:
        names = {p.name for p in folder.iterdir()}
        assert names == {f"{w}.wav" for w in WAVS} | {"song.mid", "meta.json"}
        for name in WAVS:
            info = sf.info(folder / f"{name}.wav")
            assert (info.samplerate, info.channels, info.frames) == (SR, 2, int(SECONDS * SR))
            assert info.subtype == "FLOAT"
        meta = json.loads((folder / "meta.json").read_text())
        assert {"tempo", "key", "meter", "parts", "seed"} <= set(meta)


@needs_tools
def test_stems_sum_exactly_and_mixture_does_not_clip(corpus):
    for folder in corpus:
        audio = {name: _read(folder, name).astype(np.float64) for name in WAVS}
        assert np.abs(audio["mixture"] - sum(audio[s] for s in STEMS)).max() < 1e-6
        assert np.abs(audio["drums"] - sum(audio[p] for p in PIECES)).max() < 1e-6
        assert 0.85 < np.abs(audio["mixture"]).max() <= 0.9 + 1e-6


@needs_tools
def test_drums_vocals_and_every_drum_piece_sound(corpus):
    heard = set()
    for folder in corpus:
        for stem in ("drums", "vocals", "bass"):
            assert np.sqrt(np.mean(_read(folder, stem) ** 2)) > 1e-3, (folder.name, stem)
        heard |= {p for p in PIECES if np.abs(_read(folder, p)).max() > 1e-3}
    assert heard == set(PIECES)


@needs_tools
def test_kick_onsets_in_midi_line_up_with_kick_audio(corpus):
    import mido

    for folder in corpus:
        midi = mido.MidiFile(folder / "song.mid")
        tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
        kick = next(t for t in midi.tracks if t.name == "kick")
        ticks, onsets = 0, []
        for message in kick:
            ticks += message.time
            if message.type == "note_on" and message.velocity > 0:
                onsets.append(mido.tick2second(ticks, midi.ticks_per_beat, tempo))
        audio = _read(folder, "kick").mean(axis=0)
        pre, post = int(0.02 * SR), int(0.03 * SR)
        checked = 0
        for onset in onsets:
            i = int(onset * SR)
            if i < pre or i + post > len(audio):
                continue
            before = np.sqrt(np.mean(audio[i - pre:i] ** 2)) + 1e-9
            after = np.sqrt(np.mean(audio[i:i + post] ** 2))
            assert after > 1.5 * before, (folder.name, onset)
            checked += 1
        assert checked >= 4


@needs_tools
def test_same_seed_same_audio_other_seed_other_audio():
    from stemforge.synth import generate_song

    a = generate_song(11, 0, 3.0).audio
    b = generate_song(12, 0, 3.0).audio
    c = generate_song(11, 0, 3.0).audio  # after another song in the same process
    for name in WAVS:
        np.testing.assert_array_equal(a[name], c[name])
    assert not np.array_equal(a["mixture"], b["mixture"])


KITS = [Path("/usr/share/sounds/sf2") / name for name in ("Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2")]
needs_kits = pytest.mark.skipif(not all(k.is_file() for k in KITS),
                                reason="needs Debian's avldrums.lv2-soundfont (see .ci/apt-packages.txt)")


@needs_tools
@needs_kits
def test_kit_soundfonts_change_the_drums_not_the_music():
    from stemforge.errors import StemforgeError
    from stemforge.synth import generate_song

    def music(song):  # what every part but the drums plays
        return [(p.name, p.program, p.notes) for p in song.score.parts if not p.is_drum]

    drawn = []
    for index in range(4):
        plain, kit = generate_song(3, index, 3.0), generate_song(3, index, 3.0, kits=KITS)
        drawn.append(kit.meta["drum_soundfont"])
        assert music(kit) == music(plain)
        assert not np.allclose(kit.audio["drums"], plain.audio["drums"], atol=1e-3)  # drawn anew
        if drawn[-1] != plain.meta["drum_soundfont"]:  # every piece the groove plays sounds on the kit
            for piece in PIECES:
                notes = sum(p["notes"] for p in kit.meta["parts"] if p["name"] == piece)
                assert (np.abs(kit.audio[piece]).max() > 1e-3) == (notes > 0), piece
    assert set(drawn) & {k.name for k in KITS} and set(drawn) - {k.name for k in KITS}
    with pytest.raises(StemforgeError, match="does not exist"):
        generate_song(21, 0, 1.0, kits=["/no/such/kit.sf2"])


@needs_tools
def test_parallel_jobs_and_prefix_give_identical_bytes(corpus, tmp_path):
    from stemforge.synth import generate_corpus

    (folder,) = generate_corpus(tmp_path, songs=1, seconds=SECONDS, seed=3, jobs=2)
    assert folder.name == corpus[0].name
    for name in [f"{w}.wav" for w in WAVS] + ["song.mid"]:
        assert (folder / name).read_bytes() == (corpus[0] / name).read_bytes(), name


@needs_tools
def test_cli_and_render_example(tmp_path, capsys):
    from stemforge.synth import cli, render_example

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path / "c"), "--songs", "1",
                              "--seconds", "2", "--seed", "5", "--jobs", "1"])
    assert cli.run(args) == 0
    assert "1 songs" in capsys.readouterr().out
    assert len(list((tmp_path / "c").iterdir())) == 1
    path = render_example(tmp_path / "example.flac", seconds=2.0, seed=1)
    assert path.stat().st_size > 1000


def test_music_theory_basics():
    c_major = Key(0, "major")
    assert diatonic_chord(c_major, 4).pitch_classes == (7, 11, 2)  # G major
    assert diatonic_chord(Key(9, "minor"), 0).name == "Am"
    assert diatonic_chord(c_major, 1, seventh=True).name == "Dm7"
    swing = Feel("swing", 2 / 3)
    assert swing.warp(1.0) == 1.0 and abs(swing.warp(1.5) - (1 + 2 / 3)) < 1e-9
    assert Feel().warp(2.75) == 2.75


def test_note_events_never_cut_a_repeated_note_short():
    from stemforge.synth.render import note_events
    from stemforge.synth.score import Note, Part

    part = Part("x", "other", 0, notes=[Note(0.0, 2.0, 60, 100), Note(1.0, 1.0, 60, 100)])
    events = sorted(note_events(part, 22050.0), key=lambda e: (e.sample, e.kind == "on"))
    assert [(e.sample, e.kind) for e in events] == [(0, "on"), (22050, "off"), (22050, "on"), (44100, "off")]
