"""What storing a shipped network in fp16 or int8, and running it in bf16, costs in SDR; written into MODELS.md.

Each ``--variants`` entry is a file written from the registered weights of ``--model`` (``stored``: the
shipped file itself; ``fp32``, ``fp16``; ``int8:G``: ``stemforge.quantize`` with a scale per ``G``
weights), loaded the way users load it (``Separator``, soft mask off: the network alone) and run in
each ``--precisions``. Global SDR per stem, mean over the songs of each ``--valid`` folder (MUSDB
layout; ``--songs`` takes the first N), then over the folders; the file size beside it. A bag
(``default``, ``drums``) takes only ``stored``, and is run as users run it, soft mask on.

    python benchmarks/weight_storage.py --model default-drums --valid corpus/valid \
        --variants stored fp16 int8:32 int8:16 --section weight_storage_default_drums
    python benchmarks/weight_storage.py --model drums --valid corpus/drums_test --songs 6 \
        --precisions fp32 bf16 --section precision_drums
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_variant(variant: str, shipped: Path, out: Path) -> Path:
    """The file of ``variant`` (stored, fp32, fp16, int8:G) made from the ``shipped`` weights."""
    from safetensors.torch import save_file

    from stemforge.checkpoint import read_state_dict
    from stemforge.quantize import GROUP, stored_state

    if variant == "stored":
        return shipped
    store, _, group = variant.partition(":")
    tensors = stored_state(read_state_dict(shipped), store, int(group or GROUP))
    path = out / f"{variant.replace(':', '_')}.safetensors"
    save_file(tensors, str(path))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--valid", type=Path, nargs="+", required=True, help="song folders (MUSDB layout)")
    p.add_argument("--songs", type=int, help="only the first N songs of each folder")
    p.add_argument("--variants", nargs="+", default=["stored"], metavar="stored|fp32|fp16|int8:G")
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "bf16", "fp16"))
    p.add_argument("--threads", default="2")
    p.add_argument("--section", required=True, help="name of the MODELS.md section to write")
    p.add_argument("--out", type=Path, default=REPO / "MODELS.md")
    args = p.parse_args()

    import torch

    from stemforge import registry
    from stemforge.audio import load_audio
    from stemforge.engine.device import set_threads
    from stemforge.eval.metrics import global_sdr, is_silent
    from stemforge.separator import Separator

    set_threads(args.threads)
    entry = registry.load_registry()[args.model]
    if entry.is_bag and args.variants != ["stored"]:
        p.error(f"{args.model} is a bag: only --variants stored")
    songs = {f: sorted(t for t in f.iterdir() if (t / "mixture.wav").exists())[: args.songs] for f in args.valid}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for precision in args.precisions:
                if entry.is_bag:
                    sep = Separator(args.model, precision=precision)
                    size = sum(m.size for m in registry.bag_members(entry))
                else:
                    ckpt, config = registry.fetch_model(args.model, progress=False)
                    path = write_variant(variant, ckpt, Path(tmp))
                    sep = Separator(checkpoint=path, config=config, precision=precision, soft_mask=False)
                    size = path.stat().st_size
                per_folder, seconds = [], 0.0
                for folder, tracks in songs.items():
                    sdr = {}
                    for track in tracks:
                        mix = load_audio(track / "mixture.wav", sep.sample_rate)
                        start = time.perf_counter()
                        est = sep.separate_mix(mix)
                        seconds += time.perf_counter() - start
                        for i, stem in enumerate(sep.stems):
                            ref = load_audio(track / f"{stem}.wav", sep.sample_rate)
                            if not is_silent(ref, mix):
                                sdr.setdefault(stem, []).append(global_sdr(ref, est[i]))
                    per_folder.append({s: float(np.mean(v)) for s, v in sdr.items()})
                stems = {s: float(np.mean([f[s] for f in per_folder if s in f])) for s in sep.stems}
                rows.append((variant, precision, size, seconds, stems))
                print(variant, precision, " ".join(f"{s} {v:.4f}" for s, v in stems.items()), flush=True)

    stems = list(rows[0][4])
    n = sum(len(t) for t in songs.values())
    lines = [f"<!-- {args.section}:begin -->",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}. Command: "
             f"`python {' '.join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])}`.", "",
             f"**`{args.model}` stored and run in other precisions: SDR (dB), mean over {n} songs of "
             f"{', '.join(f'`{f}`' for f in args.valid)}**", "",
             "| file | precision | MB | " + " | ".join(stems) + " | mean | separation s |",
             "|---" * (len(stems) + 5) + "|"]
    for variant, precision, size, seconds, scores in rows:
        lines.append(f"| {variant} | {precision} | {size / 1e6:.2f} | " + " | ".join(f"{scores[s]:.3f}" for s in stems)
                     + f" | {np.mean(list(scores.values())):.3f} | {seconds:.1f} |")
    lines += ["", f"<!-- {args.section}:end -->"]
    body = "\n".join(lines)
    replace_section(args.out, args.section, body)
    print(body)


if __name__ == "__main__":
    main()
