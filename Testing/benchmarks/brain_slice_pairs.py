"""2D training pairs for the unsupervised registration core, from axial slices of 3D head images.

The heads are the T2 images of a brain phantom datalist (``--datalist``, skull-stripped) or whole
3D images (``--image``, e.g. nilearn's MNI152 T1 template, skull on). Each pair is two axial slices
near the middle of the head: half from one slice (the moving copy rigidly moved), half from two
different slices or heads (different anatomy, also rigidly moved). Rotations up to ±12° and shifts
up to ±20 mm, so that a network trained on them has seen displacements as large as the BrainWeb
benchmark's. No labels: the registration core trains on image similarity.

    .venv/bin/python Testing/benchmarks/brain_slice_pairs.py --image mni152_t1.nii.gz \
        --out brain_pairs --pairs 240
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab import volume
from synthlab.datalist import read_datalist

MAX_DEGREES, MAX_SHIFT_MM, HEIGHT_RANGE_MM = 12.0, 20.0, 12.0


def axial_slice(image: sitk.Image, z: int) -> sitk.Image:
    return sitk.Extract(image, [image.GetSize()[0], image.GetSize()[1], 0], [0, 0, z])


def random_height(image: sitk.Image, rng: np.random.Generator) -> int:
    """An axial slice index within ±HEIGHT_RANGE_MM of the middle of the image."""
    reach = int(HEIGHT_RANGE_MM / image.GetSpacing()[2])
    return image.GetSize()[2] // 2 + int(rng.integers(-reach, reach + 1))


def rigidly_moved(image: sitk.Image, rng: np.random.Generator) -> sitk.Image:
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    transform = sitk.Euler2DTransform(centre, np.deg2rad(rng.uniform(-MAX_DEGREES, MAX_DEGREES)),
                                      tuple(rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, 2)))
    return sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--datalist", type=Path, help="brain phantom datalist (its training T2 images)")
    sources.add_argument("--image", type=Path, action="append", help="a 3D head image (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=240)
    parser.add_argument("--validation-pairs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    paths = ([case["t2"] for case in read_datalist(arguments.datalist)["training"]] if arguments.datalist
             else arguments.image)
    images = [sitk.Cast(volume.read_image(path), sitk.sitkFloat32) for path in paths]
    arguments.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(arguments.pairs + arguments.validation_pairs):
        first = second = int(rng.integers(len(images)))
        heights = [random_height(images[first], rng)] * 2
        if index % 2:  # different anatomy: another head, or another slice of the only one
            second = int(rng.choice([i for i in range(len(images)) if i != first] or [first]))
            heights[1] = random_height(images[second], rng)
        fixed = axial_slice(images[first], heights[0])
        moving = rigidly_moved(axial_slice(images[second], heights[1]), rng)
        entry = {}
        for role, image in (("fixed", fixed), ("moving", moving)):
            entry[role] = str(arguments.out / f"pair_{index:03d}_{role}.nii.gz")
            sitk.WriteImage(image, entry[role])
        entries.append(entry)
    datalist = {"training": entries[:arguments.pairs], "validation": entries[arguments.pairs:]}
    (arguments.out / "datalist.json").write_text(json.dumps(datalist, indent=1) + "\n")
    print(f"wrote {len(entries)} pairs to {arguments.out / 'datalist.json'}")


if __name__ == "__main__":
    main()
