"""Copies of a contour datalist's pairs whose CTs look as if another scanner or protocol made them: HU
calibration (scale and offset), more noise, blur, thicker slices, another voxel orientation. The models will
meet pelvis CTs made differently from the phantom they were trained on; scoring them on these copies
(``contour_benchmark.py --datalist OUT/datalist.json``) shows how far each kind of change moves them.

    .venv/bin/python Testing/benchmarks/changed_ct.py --datalist pelvis_full/all_test.json --out noisy \\
        --noise-hu 40 --which both

Only the CTs change. The contours stay where they were, on the daily CT's new grid when its slices are
resampled or its voxels reordered (an orientation changes the voxel order, not where anything is). Every pair
of the chosen split is written to the output's ``test`` split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab import volume
from synthlab.datalist import read_datalist, write_datalist
from synthlab.errors import InputError
from synthlab.labels import LabelMap, read_labels, write_labels

AIR_HU = -1024.0


def changed_ct(image: sitk.Image, scale: float, offset: float, noise_hu: float, blur_mm: float,
               slice_mm: float | None, rng: np.random.Generator) -> sitk.Image:
    """The CT after the changes, in that order: slices, blur, calibration, noise."""
    if slice_mm:
        image = with_slice_thickness(image, slice_mm)
    image = sitk.Cast(image, sitk.sitkFloat32)
    if blur_mm > 0:
        image = sitk.SmoothingRecursiveGaussian(image, blur_mm)
    values = volume.array_of(image) * scale + offset
    if noise_hu > 0:
        values = values + rng.normal(0.0, noise_hu, values.shape)
    return volume.image_like(np.maximum(values, AIR_HU).astype(np.float32), image)


def with_slice_thickness(image: sitk.Image, slice_mm: float) -> sitk.Image:
    """The image resampled to ``slice_mm`` between slices over the same extent; in-plane grid unchanged."""
    spacing = list(image.GetSpacing())
    size = list(image.GetSize())
    size[2] = max(1, int(round(size[2] * spacing[2] / slice_mm)))
    spacing[2] = slice_mm
    reference = sitk.Image(size, sitk.sitkUInt8)
    reference.SetSpacing(spacing)
    reference.SetOrigin(image.GetOrigin())
    reference.SetDirection(image.GetDirection())
    return volume.resample(image, reference)


def is_orientation(code: str) -> bool:
    """Three letters naming each axis once, one of L/R, one of P/A, one of I/S (as DICOMOrient takes)."""
    return len(code) == 3 and all(letter in "LRPAIS" for letter in code) and sorted(
        "LRPAIS".index(letter) // 2 for letter in code) == [0, 1, 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", required=True, help="contour datalist (JSON)")
    parser.add_argument("--split", default="test", help="the split whose pairs are copied")
    parser.add_argument("--out", required=True, help="new folder for the changed CTs and datalist.json")
    parser.add_argument("--scale", type=float, default=1.0, help="HU calibration: HU × scale + offset")
    parser.add_argument("--offset", type=float, default=0.0, help="HU calibration offset")
    parser.add_argument("--noise-hu", type=float, default=0.0, help="standard deviation of added Gaussian noise")
    parser.add_argument("--blur-mm", type=float, default=0.0, help="Gaussian blur, sigma in mm")
    parser.add_argument("--slice-mm", type=float, default=None, help="resample the daily CT to this slice spacing")
    parser.add_argument("--orientation", default=None,
                        help="store the daily CT and its contours in this voxel orientation (e.g. RAS)")
    parser.add_argument("--which", choices=["daily", "both"], default="daily",
                        help="change the daily CT only, or the planning CT too (slices: the daily CT only)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    arguments = parser.parse_args()
    out = Path(arguments.out).resolve()  # the datalist holds absolute paths
    if out.exists():
        parser.error(f"--out: {out} exists; give a new folder (nothing is overwritten)")
    try:
        entries = read_datalist(arguments.datalist).get(arguments.split)
    except InputError as error:
        parser.error(str(error))
    if not entries:
        parser.error(f"--split: {arguments.datalist} has no pairs in split {arguments.split!r}")
    missing = sorted({entry[key] for entry in entries for key in ("fixed", "moving", "fixed_labels")
                      if not Path(entry[key]).is_file()})
    if missing:  # checked before anything is written
        parser.error(f"--datalist: {len(missing)} file(s) not found, the first {missing[0]}")
    if arguments.orientation and not is_orientation(arguments.orientation.upper()):
        parser.error(f"--orientation: {arguments.orientation!r} is not three axis letters such as RAS or LPI")
    rng = np.random.default_rng(arguments.seed)
    written, planning_done = [], {}
    changes = (arguments.scale, arguments.offset, arguments.noise_hu, arguments.blur_mm)
    for number, entry in enumerate(entries):
        folder = out / f"pair_{number:03d}"
        folder.mkdir(parents=True)
        fixed = changed_ct(volume.read_image(entry["fixed"], "fixed"), *changes, arguments.slice_mm, rng)
        if arguments.orientation:
            fixed = sitk.DICOMOrient(fixed, arguments.orientation.upper())
        copy = {**entry, "fixed": str(volume.write_image(fixed, folder / "daily_ct.nii.gz"))}
        if arguments.slice_mm or arguments.orientation:
            labels = read_labels(entry["fixed_labels"], "fixed_labels")
            resampled = LabelMap(volume.resample(labels.image, fixed, is_label=True), labels.segments)
            copy["fixed_labels"] = str(write_labels(resampled, folder / "daily_contours.seg.nrrd"))
        if arguments.which == "both":
            if entry["moving"] not in planning_done:
                planning = changed_ct(volume.read_image(entry["moving"], "moving"), *changes, None, rng)
                planning_done[entry["moving"]] = str(volume.write_image(planning, folder / "planning_ct.nii.gz"))
            copy["moving"] = planning_done[entry["moving"]]
        written.append(copy)
        print(f"pair {number + 1}/{len(entries)} written", flush=True)
    write_datalist({"test": written}, out / "datalist.json")
    (out / "changes.json").write_text(json.dumps(vars(arguments), indent=1))
    print(f"{out / 'datalist.json'}: {len(written)} test pairs")


if __name__ == "__main__":
    main()
