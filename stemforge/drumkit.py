"""``--drum-kit``: separate a song, then split its drum stem into kit pieces.

A song model (``default``: vocals, drums, bass, other) runs first; its ``drums`` estimate,
kept in fp32 (never re-read from an encoded file), is the input of a kit model (``drums``:
kick, snare, toms, hihat, cymbals). Both run in memory, so memory grows with the track.
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
        first = second = None
        if progress is not None:
            first = lambda done, total: progress(done, 2 * total)  # noqa: E731
            second = lambda done, total: progress(total + done, 2 * total)  # noqa: E731
        stems = dict(zip(self.song.stems, self.song.separate_mix(mix, first)))
        pieces = self.kit.separate_mix(stems["drums"], second)
        stems.update(zip(self.kit.stems, pieces))
        return stems

    def separate_file(self, path: str | Path, outdir: str | Path, *, stems: list[str] | None = None,
                      format: str = "wav", subtype: str = "PCM_16", bitrate: int = 320, clip: str = "rescale",
                      progress: Progress | None = None) -> dict[str, Path]:
        """Separate ``path`` into ``outdir/<stem>.<format>`` for every song stem and kit piece; all files or none."""
        check_stems(self.stems, only=stems)  # before any work
        mix = self.song.load(path)
        out = select_stems(self.separate_mix(mix, progress), mix, only=stems)
        return save_stems(out, outdir, self.sample_rate, format=format, subtype=subtype, bitrate=bitrate, clip=clip)
