"""Rebuild BENCHMARKS.md: the intro, the sections scripts write in place (<!-- key:begin/end -->)
and the reading notes between them, then every table file of benchmarks/results/ in a fixed order.
Scripts that write a section with a new key append it at the end; it moves up here.

    python benchmarks/assemble.py
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# results/<name>.md, in this order (files that do not exist are skipped)
RESULTS = ["backends_default", "stages_default", "plain_default", "backends", "batch_cpu", "memory", "memory_drumkit", "memory_drumkit_1thread", "memory_drumkit_bags", "stemforge_bench", "gpu", "cmx",
           "overlap_default_synth/overlap", "overlap_drums_synth/overlap", "overlap_default_musdb/overlap",
           "overlap_drums_stemgmd/overlap", "tta_default_synth/overlap", "tta_drums_synth/overlap",
           "overlap_tiny_demo"]


def main() -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    head, _, tail = text.partition("<!-- results/")  # intro + in-place sections + notes | results
    # a section a script appended after the results (replace_section on a new key) moves up
    moved = [m.group(0) for m in re.finditer(r"<!-- (\w+):begin -->.*?<!-- \1:end -->", tail, re.S)]
    parts = [head.rstrip(), ""] + [block + "\n" for block in moved]
    for name in RESULTS:
        file = REPO / "benchmarks" / "results" / f"{name}.md"
        if file.exists():
            body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", file.read_text().strip(), flags=re.M)
            parts += [f"<!-- results/{name}.md -->", body, ""]
    path.write_text("\n".join(parts).rstrip() + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
