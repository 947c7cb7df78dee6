"""Find a General MIDI soundfont on this machine and list the presets it holds.

Debian ships two GM soundfonts: ``fluid-soundfont-gm`` (FluidR3_GM.sf2, 142 MiB,
better sounding) and ``timgm6mb-soundfont`` (TimGM6mb.sf2, 6 MiB, small and fast
to load). We prefer FluidR3 when both are installed; ``--soundfont`` overrides.
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache
from pathlib import Path

from stemforge.errors import StemforgeError

SEARCH_DIRS = ("/usr/share/sounds/sf2", "/usr/share/soundfonts", "/usr/local/share/soundfonts")
PREFERRED = ("FluidR3_GM.sf2", "TimGM6mb.sf2", "default-GM.sf2")
ENV_VAR = "STEMFORGE_SOUNDFONT"
INSTALL_HINT = "apt-get install --no-install-recommends fluidsynth timgm6mb-soundfont espeak-ng"


def find_soundfont(override: str | os.PathLike | None = None) -> Path:
    """Return the soundfont to use: `override`, then $STEMFORGE_SOUNDFONT, then the
    best GM soundfont installed in the usual Debian folders."""
    explicit = override or os.environ.get(ENV_VAR)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise StemforgeError(f"soundfont {path} does not exist; pass an existing .sf2 file")
        return path
    for name in PREFERRED:
        for folder in SEARCH_DIRS:
            path = Path(folder) / name
            if path.is_file():
                return path.resolve()
    for folder in SEARCH_DIRS:
        found = sorted(Path(folder).glob("*.sf2")) if Path(folder).is_dir() else []
        if found:
            return found[0]
    raise StemforgeError(f"no General MIDI soundfont found in {', '.join(SEARCH_DIRS)}; "
                         f"install one ({INSTALL_HINT}) or pass --soundfont FILE.sf2")


@lru_cache(maxsize=4)
def list_presets(path: Path) -> frozenset[tuple[int, int]]:
    """All (bank, program) pairs defined in the soundfont's preset headers (phdr chunk)."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise StemforgeError(f"{path} is not a SoundFont 2 file")
    phdr = _find_chunk(data, b"phdr")
    records = [phdr[i:i + 38] for i in range(0, len(phdr) - 38, 38)]  # last record is EOP
    return frozenset((struct.unpack("<HH", r[20:24])[::-1]) for r in records)


def _find_chunk(data: bytes, wanted: bytes, start: int = 12, end: int | None = None) -> bytes:
    """Walk the RIFF chunks in data[start:end], descending into LIST chunks."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        cid = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == wanted:
            return data[pos + 8:pos + 8 + size]
        if cid == b"LIST":
            try:
                return _find_chunk(data, wanted, pos + 12, pos + 8 + size)
            except StemforgeError:
                pass
        pos += 8 + size + (size & 1)
    raise StemforgeError(f"soundfont has no {wanted.decode()} chunk")
