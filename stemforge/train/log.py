"""The run log: one JSON object per line, ``{"step", "epoch", "loss", "lr"}`` per optimizer step
and ``{"kind": "valid", "step", "epoch", "sdr": {stem: dB}, "mean_sdr", "full"}`` per validation."""

from __future__ import annotations

import json
from pathlib import Path


class JsonlLog:
    def __init__(self, path: Path):
        self.path = path

    def write(self, **record) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records after ``step`` (written by a run killed before its next save)."""
        if self.path.is_file():
            kept = [r for r in read_log(self.path) if r["step"] <= step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def read_log(path: Path) -> list[dict]:
    """All complete records (a line torn by a kill is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
