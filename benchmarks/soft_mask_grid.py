"""Score soft-mask post-filter settings (``stemforge.engine.soft_mask``) on validation songs, written into MODELS.md.

Each song of each ``--valid`` folder (MUSDB layout) is separated once with the filter off; every
setting ``POWER:N_FFT:MAX_GAIN`` (``MAX_GAIN`` ``none`` for no cap) is then applied to those stems,
which equals separating with it on (``tests/test_soft_mask.py``); ``:sBLOCK`` after a setting runs
the spatial (multichannel) filter over blocks of ``BLOCK`` frames, ``:sBLOCK@STEM,STEM`` on those
stems only; ``:kSHARE`` (every stem) or ``:kSTEM=SHARE,STEM=SHARE`` blends that share of the
network's own estimate back in (``inference.soft_mask_keep``). Global SDR per stem, mean over the
songs of a folder, then over the folders. This is how the shipped configs' settings were chosen: on
the validation songs only, never on the held-out ones.

    python benchmarks/soft_mask_grid.py --model drums --valid corpus/drums_valid corpus/drums_valid_quiet \
        --settings 1.5:4096:none 1.5:4096:1 1.5:4096:1.5 1.5:4096:2
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_setting(text: str, stems: tuple[str, ...]):
    """``POWER:N_FFT:MAX_GAIN``, then ``:sBLOCK`` for the spatial filter over blocks of ``BLOCK`` frames
    on every stem, or ``:sBLOCK@STEM,STEM`` on those stems only; then ``:kSHARE`` or
    ``:kSTEM=SHARE,...`` for the share of the network's estimate kept."""
    from stemforge.engine.soft_mask import SoftMask

    power, n_fft, cap, *rest = text.split(":")
    spatial, block, keep = False, SoftMask.spatial_block, None
    for part in rest:
        if part.startswith("s"):
            block_text, _, names = part[1:].partition("@")
            block, spatial = int(block_text), tuple(stems.index(n) for n in names.split(",")) if names else True
        elif part.startswith("k") and "=" in part:
            shares = dict(item.split("=") for item in part[1:].split(","))
            keep = tuple(float(shares.get(s, 0)) for s in stems)
        elif part.startswith("k"):
            keep = (float(part[1:]),) * len(stems)
        else:
            raise SystemExit(f"setting {text!r}: {part!r} is neither sBLOCK[@STEMS] nor kSHARE / kSTEM=SHARE,...")
    return SoftMask(float(power), int(n_fft), None if cap == "none" else float(cap), spatial, block, keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--valid", type=Path, nargs="+", required=True, help="validation folders (MUSDB layout)")
    p.add_argument("--settings", nargs="+", required=True, metavar="POWER:N_FFT:MAX_GAIN[:sBLOCK[@STEM,...]][:kSHARE|:kSTEM=SHARE,...]")
    p.add_argument("--threads", default="2")
    p.add_argument("--out", type=Path, default=REPO / "MODELS.md")
    args = p.parse_args()

    import torch

    from stemforge.audio import load_audio
    from stemforge.engine.device import set_threads
    from stemforge.engine.soft_mask import soft_mask
    from stemforge.eval.metrics import global_sdr, is_silent
    from stemforge.separator import Separator

    set_threads(args.threads)
    sep = Separator(args.model, precision="fp32", soft_mask=False)
    settings = {"off": None, **{s: parse_setting(s, sep.stems) for s in args.settings}}
    scores = {name: {} for name in settings}  # setting -> folder -> stem -> [sdr per song]
    for folder in args.valid:
        for track in sorted(t for t in folder.iterdir() if (t / "mixture.wav").exists()):
            mix = load_audio(track / "mixture.wav", sep.sample_rate)
            refs = {s: load_audio(track / f"{s}.wav", sep.sample_rate) for s in sep.stems}
            raw = torch.from_numpy(sep.separate_mix(mix))
            for name, setting in settings.items():
                est = raw if setting is None else soft_mask(torch.from_numpy(mix), raw, setting)
                for i, stem in enumerate(sep.stems):
                    if not is_silent(refs[stem], mix):
                        sdr = global_sdr(refs[stem], est[i].numpy())
                        scores[name].setdefault(folder.name, {}).setdefault(stem, []).append(sdr)
            print(track.name, flush=True)

    columns = [(f.name, s) for f in args.valid for s in sep.stems]
    lines = [f"<!-- soft_mask_{args.model}:begin -->",
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}. Command: "
             f"`python {' '.join([str(Path(__file__).relative_to(REPO))] + sys.argv[1:])}`.", "",
             f"**Soft mask on `{args.model}`: setting power:n_fft:max_gain[:s spatial block][:k shares kept], SDR (dB) on the "
             "validation songs**", "",
             "| setting | " + " | ".join(f"{f} {s}" for f, s in columns) + " | mean |",
             "|---" * (len(columns) + 2) + "|"]
    for name in settings:
        values = [float(np.mean(scores[name][f][s])) for f, s in columns]
        folder_means = [np.mean([float(np.mean(v)) for v in scores[name][f.name].values()]) for f in args.valid]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {np.mean(folder_means):.3f} |")
    lines += ["", f"<!-- soft_mask_{args.model}:end -->"]
    body = "\n".join(lines)
    replace_section(args.out, f"soft_mask_{args.model}", body)
    print(body)


if __name__ == "__main__":
    main()
