"""Copies of a contour datalist's pairs whose CTs look as if another scanner or protocol made them: HU
calibration (scale and offset), more noise, blur, thicker slices, another voxel orientation, the cupping of a
cone-beam CT and its short field of view, a contrast-filled bladder on the daily CT, a patient lying further off on
the couch. The models will
meet pelvis CTs made differently from the phantom they were trained on; scoring them on these copies
(``contour_benchmark.py --datalist OUT/datalist.json``) shows how far each kind of change moves them.

    .venv/bin/python Testing/benchmarks/changed_ct.py --datalist pelvis_full/all_test.json --out noisy \\
        --noise-hu 40 --which both

Only the CTs change. The contours stay where they were, on the daily CT's new grid when its slices are
resampled or its voxels reordered (an orientation changes the voxel order, not where anything is), except
after a set-up change: the daily CT and its contours then move together (their voxels are not resampled). A
field of view crops both. Every pair
of the chosen split is written to the output's ``test`` split.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from copies import checked_copy, copy_parser, with_slice_thickness
from scipy import ndimage

from synthlab import volume
from synthlab.crossstitch.setup import SetupCorrection
from synthlab.datalist import write_datalist
from synthlab.labels import LabelMap, read_labels, write_labels

AIR_HU = -1024.0
BODY_HU = -500.0  # above this: inside the patient (or the couch)
URINE_MARGIN_MM = 6.0  # the bladder's contrast fills its lumen, inside the wall


def changed_ct(image: sitk.Image, scale: float, offset: float, noise_hu: float, blur_mm: float, cupping_hu: float,
               slice_mm: float | None, rng: np.random.Generator) -> sitk.Image:
    """The CT after the changes, in that order: slices, blur, calibration, cupping, noise."""
    if slice_mm:
        image = with_slice_thickness(image, slice_mm)
    image = sitk.Cast(image, sitk.sitkFloat32)
    if blur_mm > 0:
        image = sitk.SmoothingRecursiveGaussian(image, blur_mm)
    values = volume.array_of(image) * scale + offset
    if cupping_hu > 0:
        values = values - cupping_hu * cupping_profile(values > BODY_HU, image.GetSpacing()[:2][::-1])
    if noise_hu > 0:
        values = values + rng.normal(0.0, noise_hu, values.shape)
    return volume.image_like(np.maximum(values, AIR_HU).astype(np.float32), image)


def cupping_profile(body: np.ndarray, pixel_mm) -> np.ndarray:
    """Per axial slice, 0 at the body's edge (or the image's, where the body fills it) rising to 1 at its deepest
    point, as ``1 − (1 − d / d_max)²`` of the depth d: the shape of the cone-beam CT's cupping artefact (scatter
    and beam hardening darken the centre)."""
    profile = np.zeros(body.shape, np.float32)
    for z, inside in enumerate(body):
        if inside.any():
            depth = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=pixel_mm)[1:-1, 1:-1]
            profile[z] = 1 - (1 - depth / depth.max()) ** 2
    return profile


def with_contrast_in_bladder(image: sitk.Image, labels: LabelMap, contrast_hu: float) -> sitk.Image:
    """The CT with ``contrast_hu`` added inside the bladder segment, more than ``URINE_MARGIN_MM`` from its edge
    (the urine, not the wall), smoothed over one voxel as a scanner would."""
    bladder = next(segment.value for segment in labels.segments if segment.name.lower() == "bladder")
    mask = volume.array_of(volume.resample(labels.image, image, is_label=True), np.uint16) == bladder
    depth = ndimage.distance_transform_edt(mask, sampling=image.GetSpacing()[::-1])
    urine = ndimage.gaussian_filter((depth > URINE_MARGIN_MM).astype(np.float32), 1.0)
    return volume.image_like((volume.array_of(image) + contrast_hu * urine).astype(np.float32), image)


def with_setup_error(image: sitk.Image, shift_mm: Sequence[float], rotation_deg: Sequence[float],
                     centre: Sequence[float]) -> sitk.Image:
    """The image as if the patient lay ``shift_mm`` (LPS) further and turned by ``rotation_deg`` about x, y, z
    around ``centre``: the same voxels, a new origin and direction."""
    patient = sitk.Euler3DTransform(list(centre), *np.radians(rotation_deg), list(shift_mm))
    return SetupCorrection(patient).moved(image)


def cropped_to_field_of_view(image: sitk.Image, labels: LabelMap, field_mm: Sequence[float]) -> sitk.Image:
    """The image cut to a box of ``field_mm`` (x, y, z) about the centre of the contours (a cone-beam CT's short
    field of view); the box stays inside the image."""
    inside = volume.array_of(volume.resample(labels.image, image, is_label=True), np.uint16) > 0
    centre = np.argwhere(inside).mean(axis=0)[::-1]  # x, y, z voxels
    size = np.array(image.GetSize())
    half = np.round(np.asarray(field_mm) / np.array(image.GetSpacing()) / 2).astype(int)
    low = np.clip(np.round(centre).astype(int) - half, 0, size)
    high = np.clip(np.round(centre).astype(int) + half, 0, size)
    return image[int(low[0]):int(high[0]), int(low[1]):int(high[1]), int(low[2]):int(high[2])]


def _three_numbers(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give three numbers separated by commas")
    return values


def main() -> None:
    parser = copy_parser(__doc__.splitlines()[0], "contour", "pairs")
    parser.add_argument("--scale", type=float, default=1.0, help="HU calibration: HU × scale + offset")
    parser.add_argument("--offset", type=float, default=0.0, help="HU calibration offset")
    parser.add_argument("--noise-hu", type=float, default=0.0, help="standard deviation of added Gaussian noise")
    parser.add_argument("--blur-mm", type=float, default=0.0, help="Gaussian blur, sigma in mm")
    parser.add_argument("--cupping-hu", type=float, default=0.0,
                        help="cone-beam CT cupping: HU lost at the body's centre, none at its edge")
    parser.add_argument("--bladder-contrast-hu", type=float, default=0.0,
                        help="HU added to the urine of the daily CT (contrast in the bladder; from its contours)")
    parser.add_argument("--slice-mm", type=float, default=None, help="resample the daily CT to this slice spacing")
    parser.add_argument("--orientation", default=None,
                        help="store the daily CT and its contours in this voxel orientation (e.g. RAS)")
    parser.add_argument("--setup-shift-mm", type=_three_numbers, default=None,
                        help="the patient lies this far off on the daily CT (x,y,z LPS mm): the daily CT and its "
                             "contours move")
    parser.add_argument("--setup-rotation-deg", type=_three_numbers, default=None,
                        help="and turned by these angles about x,y,z (degrees, about the daily CT's centre)")
    parser.add_argument("--field-of-view-mm", type=_three_numbers, default=None,
                        help="cut the daily CT and its contours to a box of x,y,z mm about the contours' centre "
                             "(a cone-beam CT's field of view)")
    parser.add_argument("--which", choices=["daily", "both"], default="daily",
                        help="change the daily CT only, or the planning CT too (slices: the daily CT only)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    arguments = parser.parse_args()
    out, splits = checked_copy(parser, arguments, ("fixed", "moving", "fixed_labels"), "pairs")
    entries = splits[arguments.split]
    if arguments.bladder_contrast_hu and not all(
            any(segment.name.lower() == "bladder" for segment in read_labels(entry["fixed_labels"]).segments)
            for entry in entries):
        parser.error("--bladder-contrast-hu: some daily contours have no segment named bladder")
    rng = np.random.default_rng(arguments.seed)
    setup_error = None
    if arguments.setup_shift_mm or arguments.setup_rotation_deg:
        setup_error = (arguments.setup_shift_mm or [0.0] * 3, arguments.setup_rotation_deg or [0.0] * 3)
    contours_change = bool(arguments.slice_mm or arguments.orientation or setup_error or arguments.field_of_view_mm)
    written, planning_done = [], {}
    changes = (arguments.scale, arguments.offset, arguments.noise_hu, arguments.blur_mm, arguments.cupping_hu)
    for number, entry in enumerate(entries):
        folder = out / f"pair_{number:03d}"
        folder.mkdir(parents=True)
        fixed = volume.read_image(entry["fixed"], "fixed")
        labels = read_labels(entry["fixed_labels"], "fixed_labels")
        if arguments.bladder_contrast_hu:
            fixed = with_contrast_in_bladder(fixed, labels, arguments.bladder_contrast_hu)
        fixed = changed_ct(fixed, *changes, arguments.slice_mm, rng)
        if arguments.orientation:
            fixed = sitk.DICOMOrient(fixed, arguments.orientation.upper())
        if arguments.slice_mm or arguments.orientation:
            labels = LabelMap(volume.resample(labels.image, fixed, is_label=True), labels.segments)
        if setup_error:
            centre = np.mean(volume.physical_bounds(fixed), axis=0)
            labels = LabelMap(with_setup_error(labels.image, *setup_error, centre), labels.segments)
            fixed = with_setup_error(fixed, *setup_error, centre)
        if arguments.field_of_view_mm:
            fixed = cropped_to_field_of_view(fixed, labels, arguments.field_of_view_mm)
            labels = LabelMap(volume.resample(labels.image, fixed, is_label=True), labels.segments)
        copy = {**entry, "fixed": str(volume.write_image(fixed, folder / "daily_ct.nii.gz"))}
        if contours_change:
            copy["fixed_labels"] = str(write_labels(labels, folder / "daily_contours.seg.nrrd"))
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
