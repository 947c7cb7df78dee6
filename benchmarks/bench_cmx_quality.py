"""CMX quality: validation SDR of runs trained for the same wall-clock budget with different r.

    # train both arms at the same time, for the same budget (here 20 minutes each, 1 thread each):
    for r in 1 2; do OMP_NUM_THREADS=1 timeout 1200 stemforge train --config configs/cmx_quality_r$r.yaml \
        --data corpus/train --results runs/cmx_r$r & done; wait
    python benchmarks/bench_cmx_quality.py --runs runs/cmx_r1 runs/cmx_r2 --valid corpus/valid

Each run's ``last.ckpt`` (EMA weights) is scored with global SDR on every track of ``--valid``;
the table goes to the CMX quality section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import replace_section  # benchmarks/common.py (this folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def steps_done(run: Path) -> int:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return max((r.get("step", 0) for r in lines), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, required=True)
    parser.add_argument("--valid", type=Path, required=True)
    parser.add_argument("--budget", default="", help="text describing the training budget, for the table")
    parser.add_argument("--write", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()

    from stemforge.config import load_config
    from stemforge.eval.evaluate import evaluate_folder
    from stemforge.separator import Separator

    rows = []
    for run in args.runs:
        cfg = load_config(run / "config.yaml")
        sep = Separator(checkpoint=run / "last.ckpt", config=run / "config.yaml", precision="fp32", overlap=2)
        _, stems, mean = evaluate_folder(sep, args.valid)
        r = cfg.audio.cmx_reduction if cfg.audio.use_cmx else 1
        rows.append((run.name, r, steps_done(run), stems, mean))
        print(run.name, r, steps_done(run), {k: round(v, 2) for k, v in stems.items()}, round(mean, 2), flush=True)

    names = list(rows[0][3])
    header = "| run | r | steps in budget | " + " | ".join(f"{n} SDR" for n in names) + " | mean SDR |"
    lines = [header, "|" + "|".join(["---"] * (header.count("|") - 1)) + "|"]
    for name, r, steps, stems, mean in rows:
        lines.append(f"| {name} | {r} | {steps} | " + " | ".join(f"{stems[n]:.2f}" for n in names) + f" | {mean:.2f} |")
    verdict = _verdict(rows)
    command = "python " + " ".join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])
    body = "\n".join(["<!-- bench_cmx_quality:begin -->", "## CMX quality at equal wall-clock training budget", "",
                      f"Command: `{command}`. {args.budget}", "Global SDR (dB) on the held-out synthetic songs, "
                      "overlap 2, fp32, last checkpoint (EMA weights).", "", *lines, "", verdict,
                      "<!-- bench_cmx_quality:end -->"])
    replace_section(args.write, "bench_cmx_quality", body)
    print("\n".join(lines + ["", verdict]))


def _verdict(rows) -> str:
    """Say which r scored best, and whether the gap or the models are too weak to call it quality."""
    ranked = sorted(rows, key=lambda row: row[4], reverse=True)
    best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else ranked[0]
    text = (f"r = {best[1]} scored highest ({best[4]:.2f} dB mean vs {runner_up[4]:.2f} dB for r = {runner_up[1]}), "
            f"after {best[2]} steps vs {runner_up[2]} in the same time.")
    if best[4] < 3.0:
        text += (" Both models are barely trained at this budget (a mean SDR near 0 dB is what an untrained model "
                 "gets), so this measures how many more steps CMX fits into the budget, not final quality.")
    return text


if __name__ == "__main__":
    main()
