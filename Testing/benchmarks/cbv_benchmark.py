"""CBV synthesis on held-out phantom cases: HierSynth against its baselines; full-volume inference time.

Every model is scored on the same test cases (PSNR, MAE, SSIM over the brain, SSIM in
the tumour ROI; see ``synthlab.hiersynth.evaluation``). Timing: one full-size phantom
brain (1 mm, 192^3) through ``synthlab cbv``'s pipeline (reading, canvas, slices,
mapping back), for the first model. ``--mirror`` scores the models with the left–right mirror average (``on``,
as ``synthlab cbv`` runs by default), without it or both.

Reference rows ``truth blurred σ=S`` (``--blurred-truth S ...``, voxels): the true CBV itself under a
Gaussian blur, scored the same way. They show which sharpness a model's scores correspond to.

    .venv/bin/python Testing/benchmarks/cbv_benchmark.py --datalist D/datalist.json \
        --model hiersynth=RUN/hiersynth.safetensors --model unet=RUN2/unet.safetensors ... --report R.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from cbv_models import load_models
from full_brain import time_full_brain
from mirroring import add_mirror_option, with_mirroring
from named_weights import add_named_weights_option
from scipy import ndimage

from synthlab.datalist import read_datalist
from synthlab.hiersynth.commands import evaluate_models
from synthlab.hiersynth.inference import CBVModel, synthesise_cbv


class BlurredTruth:
    """A reference row for ``evaluate_models``: the true CBV under a Gaussian blur of ``sigma`` voxels, read on
    the canvas of the model ``like`` (so it shares that model's reading of each case)."""

    def __init__(self, sigma: float, like: CBVModel):
        self.sigma, self.contrasts, self.spacing = sigma, like.contrasts, like.spacing

    def synthesise_canvas(self, case) -> np.ndarray:
        return ndimage.gaussian_filter(case.cbv, self.sigma) * case.brain.mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    add_named_weights_option(parser, "--model", "HierSynth models to score, each NAME=weights.safetensors")
    parser.add_argument("--split", default="test")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="full-brain timings (0: none)")
    parser.add_argument("--blurred-truth", type=float, nargs="*", default=[], metavar="SIGMA",
                        help="also score the true CBV blurred by these σ (voxels)")
    parser.add_argument("--report", type=Path)
    add_mirror_option(parser)
    args = parser.parse_args()
    models = load_models(parser, args.model, args.device)
    models = with_mirroring(models, args.mirror)
    first = next(iter(models.values()))
    steps = {name: model.card["training"] for name, model in models.items()}
    references = {f"truth blurred σ={sigma:g}": BlurredTruth(sigma, first) for sigma in args.blurred_truth}
    entries = [entry for entry in read_datalist(args.datalist)[args.split] if entry.get("cbv")]
    result = evaluate_models(models | references, entries, lambda fraction, message: print(message, flush=True))
    result.update(test_cases=len(entries), device=str(first.device), steps=steps, mirror=args.mirror,
                  full_brain_1mm_seconds=time_full_brain(
                      lambda paths, mask: synthesise_cbv(first, paths, mask, None, False, lambda *a, **k: None),
                      first.contrasts, args.repeats))
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))
    if args.report:
        args.report.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
