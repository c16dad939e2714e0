"""Where in the tumour a CBV model goes wrong: per tumour compartment, the true and predicted mean CBV,
their correlation and the mean local SSIM (the benchmark's SSIM map), on the first N test tumours.

    .venv/bin/python Testing/benchmarks/cbv_compartments.py --datalist cbv_bench55.json \
        --model RUN/model.safetensors [--cases 14] [--mirror on]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from mirroring import add_mirror_option, with_mirroring

from synthlab import volume
from synthlab.datalist import read_datalist
from synthlab.hiersynth.data import read_entry
from synthlab.hiersynth.evaluation import ssim_map, tumour_roi
from synthlab.hiersynth.inference import CBVModel
from synthlab.labels import read_labels

COMPARTMENTS = {1: "core", 2: "oedema", 3: "rim"}  # BraTS order, as the brain phantom writes them
MIN_VOXELS = 20


def compartment_rows(model: CBVModel, entry: dict) -> tuple[float, list[str]]:
    """The tumour-ROI SSIM and one 'name true/predicted/correlation sSSIM' cell per compartment."""
    case = read_entry(entry, model.contrasts, model.spacing)
    predicted, truth, brain = model.synthesise_canvas(case), case.cbv, case.brain.mask.astype(bool)
    labels = volume.array_of(volume.resample(read_labels(entry["label"], "--tumour").image, case.brain.canvas,
                                             is_label=True))
    local = ssim_map(np.where(brain, predicted, 0), np.where(brain, truth, 0), max(float(truth[brain].max()), 1e-6))
    cells = []
    for value, name in COMPARTMENTS.items():
        inside = (labels == value) & brain
        if inside.sum() >= MIN_VOXELS:
            correlation = np.corrcoef(truth[inside], predicted[inside])[0, 1]
            cells.append(f"{name} {truth[inside].mean():.2f}/{predicted[inside].mean():.2f}/{correlation:+.2f} "
                         f"s{np.nanmean(local[inside]):.2f}")
    return float(np.nanmean(local[tumour_roi(case.tumour, brain)])), cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--cases", type=int, default=14)
    add_mirror_option(parser)
    arguments = parser.parse_args()
    model = with_mirroring({"model": CBVModel.from_files(arguments.model, "cpu")}, arguments.mirror)["model"]
    tumours = [entry for entry in read_datalist(arguments.datalist)[arguments.split] if entry.get("tumour")]
    print("case | tumour-ROI SSIM | per compartment: true / predicted mean CBV / correlation, sSSIM inside")
    for entry in tumours[:arguments.cases]:
        roi_ssim, cells = compartment_rows(model, entry)
        print(f"{entry.get('case', '?')} | {roi_ssim:.3f} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
