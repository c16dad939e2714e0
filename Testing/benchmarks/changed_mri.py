"""Copies of a brain datalist's cases whose MRI look as if another scanner or protocol made them: thicker slices,
another voxel orientation, a stronger receive bias field, more noise. The tumour and CBV models will meet brains
made differently from the phantom they were trained on; scoring them on these copies (``synthlab evaluate tumour``
or ``evaluate cbv`` with ``--datalist OUT/datalist.json``) shows how far each kind of change moves them.

    .venv/bin/python Testing/benchmarks/changed_mri.py --datalist brain/datalist.json --out thick --slice-mm 5

The bias field and the noise change the MR contrasts (T1w, T2w, FLAIR; ADC is a computed map and keeps its
values). Thicker slices and another orientation change every image of a case, its brain mask, tumour labels and
CBV included, so that each case stays on one grid. The chosen split is copied with the changes; the other splits
are kept as they were (the intensity baseline's threshold is still chosen on unchanged validation cases).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from copies import checked_copy, copy_parser, with_slice_thickness

from synthlab import volume
from synthlab.datalist import write_datalist
from synthlab.phantoms.fields import bias_field

MR_CONTRASTS = ("t1", "t2", "flair")
IMAGES = (*MR_CONTRASTS, "adc", "cbv")
MASKS = ("mask", "label")  # resampled as labels
BIAS_SCALE_MM = 80.0  # correlation length of the added bias field


def changed_contrast(image: sitk.Image, mask: np.ndarray, bias: float, noise: float,
                     rng: np.random.Generator) -> sitk.Image:
    """An MR contrast times a smooth field of about ±``bias``, plus Gaussian noise of SD ``noise`` × the brain's
    median signal, zero outside the brain as before."""
    values = volume.array_of(image).astype(np.float32)
    if bias > 0:
        scale = [BIAS_SCALE_MM / s for s in image.GetSpacing()[::-1]]
        values = values * bias_field(values.shape, scale, bias, rng)
    if noise > 0:
        values = values + rng.normal(0.0, noise * float(np.median(values[mask])), values.shape)
    return volume.image_like(np.where(mask, np.maximum(values, 0), 0).astype(np.float32), image)


def regridded(image: sitk.Image, slice_mm: float | None, orientation: str | None, is_label: bool) -> sitk.Image:
    """The image with thicker slices (label images by nearest neighbour) and/or in another voxel order."""
    if slice_mm:
        image = with_slice_thickness(image, slice_mm, is_label)
    if orientation:
        image = sitk.DICOMOrient(image, orientation)
    return image


def main() -> None:
    parser = copy_parser(__doc__.splitlines()[0], "brain", "cases")
    parser.add_argument("--slice-mm", type=float, default=None, help="resample every image to this slice spacing")
    parser.add_argument("--orientation", default=None, help="store every image in this voxel orientation (e.g. RAS)")
    parser.add_argument("--bias", type=float, default=0.0,
                        help="an extra receive bias field on the MR contrasts, about ± this fraction")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="Gaussian noise on the MR contrasts, SD as a fraction of the brain's median signal")
    parser.add_argument("--seed", type=int, default=0, help="bias and noise seed")
    arguments = parser.parse_args()
    out, splits = checked_copy(parser, arguments, (*IMAGES, *MASKS), "cases")
    entries = splits[arguments.split]
    orientation = arguments.orientation.upper() if arguments.orientation else None
    if (arguments.bias or arguments.noise) and not all("mask" in entry for entry in entries):
        parser.error("--bias/--noise: every case needs its brain mask in the datalist")
    rng = np.random.default_rng(arguments.seed)
    written = []
    for number, entry in enumerate(entries):
        folder = out / f"{number:03d}_{entry.get('case', 'case')}"  # case names may repeat across sources
        folder.mkdir(parents=True)
        # read as stored: a healthy case's tumour labels are empty
        stored = {key: sitk.ReadImage(entry[key]) for key in (*IMAGES, *MASKS) if key in entry}
        mask = volume.array_of(stored["mask"]) > 0 if "mask" in stored else None
        copy = dict(entry)
        for key, image in stored.items():
            if key in MR_CONTRASTS and (arguments.bias or arguments.noise):
                image = changed_contrast(image, mask, arguments.bias, arguments.noise, rng)
            image = regridded(image, arguments.slice_mm, orientation, is_label=key in MASKS)
            copy[key] = str(volume.write_image(image, folder / Path(entry[key]).name))
        written.append(copy)
        print(f"case {number + 1}/{len(entries)} written", flush=True)
    write_datalist({**splits, arguments.split: written}, out / "datalist.json")
    (out / "changes.json").write_text(json.dumps(vars(arguments), indent=1))
    print(f"{out / 'datalist.json'}: {len(written)} {arguments.split} cases changed")


if __name__ == "__main__":
    main()
