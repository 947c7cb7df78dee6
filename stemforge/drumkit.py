"""``--drum-kit``: separate a song, then split its drum stem into kit pieces.

A song model (``default``: vocals, drums, bass, other) runs first; its ``drums`` estimate,
kept in fp32 (never re-read from an encoded file), is the input of a kit model (``drums``:
kick, snare, toms, hihat, cymbals). Files are streamed through both: every finished piece of
the drum stem is pushed into the kit model's overlap-add stream at once, so memory does not
grow with the track (:meth:`DrumKitSeparator.separate_file`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import StemforgeError
from .separator import Progress, Separator, check_stems, save_stems, select_stems


class DrumKitSeparator:
    """Chains ``song`` (must output ``drums``) and ``kit`` (input: a drum stem) at one sample rate."""

    def __init__(self, song: Separator, kit: Separator):
        if "drums" not in song.stems:
            raise StemforgeError(f"--drum-kit needs a model with a 'drums' stem; '{song.name}' outputs "
                                 f"{', '.join(song.stems)}")
        if song.sample_rate != kit.sample_rate:
            raise StemforgeError(f"'{song.name}' runs at {song.sample_rate} Hz and '{kit.name}' at "
                                 f"{kit.sample_rate} Hz; --drum-kit needs both at one rate")
        clash = set(song.stems) & set(kit.stems)
        if clash:
            raise StemforgeError(f"'{song.name}' and '{kit.name}' both output {', '.join(sorted(clash))}")
        self.song, self.kit = song, kit

    @property
    def name(self) -> str:
        """``default+drums``: the output folder name."""
        return f"{self.song.name}+{self.kit.name}"

    @property
    def stems(self) -> tuple[str, ...]:
        """The song's stems, then the kit pieces."""
        return self.song.stems + self.kit.stems

    @property
    def sample_rate(self) -> int:
        return self.song.sample_rate

    def separate_mix(self, mix: np.ndarray, progress: Progress | None = None) -> dict[str, np.ndarray]:
        """``mix: [channels, samples]`` at the model rate -> ``{stem: [channels, samples]}``, song stems then pieces.

        ``progress(done, total)`` counts the chunks of both passes (the kit pass has as many as the song pass).
        """
        first, second = _two_passes(progress)
        stems = dict(zip(self.song.stems, self.song.separate_mix(mix, first)))
        pieces = self.kit.separate_mix(stems["drums"], second)
        stems.update(zip(self.kit.stems, pieces))
        return stems

    def separate_file(self, path: str | Path, outdir: str | Path, *, stems: list[str] | None = None,
                      format: str = "wav", subtype: str = "PCM_16", bitrate: int = 320, clip: str = "rescale",
                      stream: bool = True, progress: Progress | None = None) -> dict[str, Path]:
        """Separate ``path`` into ``outdir/<stem>.<format>`` for every song stem and kit piece; all files or none.

        With ``stream`` (default) the file is decoded, separated by both models and encoded block by
        block (same result as in memory). A kit model with ``inference.normalize`` or an ``msst``
        window needs the whole drum stem first, and runs in memory.
        """
        check_stems(self.stems, only=stems)  # before any work
        write = dict(format=format, subtype=subtype, bitrate=bitrate, clip=clip)
        streamable = "msst" not in (self.song.window, self.kit.window) and not self.kit.config.inference.normalize
        if stream and streamable:
            return self._separate_streaming(path, outdir, list(stems or self.stems), write, progress)
        mix = self.song.load(path)
        out = select_stems(self.separate_mix(mix, progress), mix, only=stems)
        return save_stems(out, outdir, self.sample_rate, **write)

    def _separate_streaming(self, path, outdir, names: list[str], write: dict,
                            progress: Progress | None) -> dict[str, Path]:
        """decode thread -> song stream -> (its drum stem) -> kit stream -> encode thread."""
        from .audio.stream import AudioReader
        from .separator import write_streamed

        song, kit = self.song, self.kit
        reader = AudioReader(path, song.sample_rate, song.config.audio.num_channels)
        norm = song.file_normalization(path)
        first, second = _two_passes(progress)
        song_stream, kit_stream = song.stream(first, reader.frames_hint), kit.stream(second, reader.frames_hint)
        drums = song.stems.index("drums")

        def kit_pieces(pieces) -> list[dict[str, np.ndarray]]:
            """Song pieces -> their stems to write, followed by the kit pieces they finish."""
            out = []
            for _, estimate in pieces:
                estimate = norm.undo(estimate.numpy())
                out.append(dict(zip(song.stems, estimate)))
                out += [dict(zip(kit.stems, k.numpy())) for _, k in kit_stream.push(estimate[drums])]
            return out

        def finish() -> list[dict[str, np.ndarray]]:
            out = kit_pieces(song_stream.finish())  # the last drum pieces enter the kit stream first
            return out + [dict(zip(kit.stems, k.numpy())) for _, k in kit_stream.finish()]

        def encode(stems: dict[str, np.ndarray], writer) -> None:
            writer.write({n: a for n, a in stems.items() if n in names})

        return write_streamed(reader, path, outdir, names, write,
                              lambda block: kit_pieces(song_stream.push(norm.apply(block))), finish, encode)


def _two_passes(progress: Progress | None) -> tuple[Progress | None, Progress | None]:
    """Split ``progress(done, total)`` over the song and kit passes, which have as many chunks each.

    The passes may interleave (streaming) or run one after the other (in memory).
    """
    if progress is None:
        return None, None
    done = [0, 0]

    def pass_progress(i: int) -> Progress:
        def report(d: int, total: int) -> None:
            done[i] = d
            progress(sum(done), 2 * total)
        return report

    return pass_progress(0), pass_progress(1)
