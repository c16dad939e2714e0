"""Where the tumour models' outlines lie against the phantom's: is what a senior misses a shifted boundary?

For every test tumour and model (and the FLAIR intensity baseline), on the model canvas as
``tumour_benchmark.py`` scores them: the volume ratio (found / true), the signed boundary offset (the mean,
over the found outline's voxels, of their signed distance to the true outline in mm: positive outside the
tumour) and the Dice of the found mask grown or shrunk by one voxel. If shrinking or growing by one voxel
lifts every model's Dice by the same amount, the models share a boundary convention that differs from the
phantom's label, which no pseudo label made by a model can teach away. Means are also given by tumour size
(thirds of the true volume).

    .venv/bin/python Testing/benchmarks/tumour_boundary.py --datalist bench.json \
        --model junior=OUT/junior/junior.safetensors --model senior=OUT/senior/senior.safetensors --report R.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from named_weights import add_named_weights_option, named_weights
from scipy import ndimage
from tumour_benchmark import labelled_tumours, require_one_preparation

from synthlab.datalist import read_datalist
from synthlab.metrics import dice
from synthlab.synthtumour.evaluation import baseline_mask, choose_threshold, model_mask
from synthlab.synthtumour.inference import TumourModel

BASELINE = "intensity baseline"


def signed_offset_mm(found: np.ndarray, truth: np.ndarray, spacing: float) -> float:
    """Mean signed distance (mm) of the found outline's voxels to the true outline: positive outside the truth."""
    outline = found & ~ndimage.binary_erosion(found)
    if not outline.any():
        return float("nan")
    outside = ndimage.distance_transform_edt(~truth, sampling=spacing)
    inside = ndimage.distance_transform_edt(truth, sampling=spacing)
    return float((outside - inside)[outline].mean())


def boundary_row(found: np.ndarray, truth: np.ndarray, spacing: float) -> dict[str, float]:
    return {"dice": dice(found, truth), "volume_ratio": float(found.sum() / truth.sum()),
            "offset_mm": signed_offset_mm(found, truth, spacing),
            "dice_shrunk": dice(ndimage.binary_erosion(found), truth),
            "dice_grown": dice(ndimage.binary_dilation(found), truth)}


def summary(rows: list[dict], sizes: np.ndarray) -> dict:
    """Means over all tumours and per third of the true volume (small, middle, large)."""
    edges = np.quantile(sizes, [1 / 3, 2 / 3])
    thirds = np.digitize(sizes, edges)
    out = {}
    for name, chosen in (("all", np.ones(len(rows), bool)), ("small", thirds == 0), ("middle", thirds == 1),
                         ("large", thirds == 2)):
        picked = [row for row, keep in zip(rows, chosen, strict=True) if keep]
        out[name] = {key: float(np.nanmedian([row[key] for row in picked])) if key == "volume_ratio"
                     else float(np.nanmean([row[key] for row in picked])) for key in picked[0]}
        out[name]["tumours"] = len(picked)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    add_named_weights_option(parser, "--model", "tumour models, each NAME=weights.safetensors")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    models = {name: TumourModel.from_files(path, args.device)
              for name, path in named_weights(parser, args.model).items()}
    first = next(iter(models.values()))
    require_one_preparation(parser, models.values())
    spacing, splits = first.spacing, read_datalist(args.datalist)
    test = labelled_tumours(splits["test"], first)
    threshold = choose_threshold(labelled_tumours(splits["validation"], first), spacing)
    rows = {name: [] for name in [*models, BASELINE]}
    for index, case in enumerate(test):
        print(f"case {index + 1}/{len(test)}", flush=True)
        for name, model in models.items():
            rows[name].append(boundary_row(model_mask(model, case, spacing), case.label, spacing))
        rows[BASELINE].append(boundary_row(baseline_mask(case, threshold, spacing), case.label, spacing))
    sizes = np.array([case.label.sum() for case in test])
    result = {"spacing_mm": spacing, "baseline_threshold": threshold, "true_voxels": sizes.tolist(),
              "summary": {name: summary(found, sizes) for name, found in rows.items()}, "cases": rows}
    print(json.dumps(result["summary"], indent=2))
    if args.report:
        args.report.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
