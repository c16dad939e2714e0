"""2D training pairs for the unsupervised registration core, from the brain phantom's T2 images.

Each pair is two axial T2 slices at the same height of the brain: half from one subject (the moving
slice rigidly moved), half from two subjects (inter-subject anatomy, also rigidly moved). Rotations
up to ±12° and shifts up to ±20 mm, so that a network trained on them has seen displacements as
large as the BrainWeb benchmark's. No labels: the registration core trains on image similarity.

    .venv/bin/python Testing/benchmarks/brain_slice_pairs.py --datalist brain60/datalist.json \
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

MAX_DEGREES, MAX_SHIFT_MM, HEIGHT_RANGE = 12.0, 20.0, 6


def axial_slice(image: sitk.Image, z: int) -> sitk.Image:
    return sitk.Extract(image, [image.GetSize()[0], image.GetSize()[1], 0], [0, 0, z])


def rigidly_moved(image: sitk.Image, rng: np.random.Generator) -> sitk.Image:
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    transform = sitk.Euler2DTransform(centre, np.deg2rad(rng.uniform(-MAX_DEGREES, MAX_DEGREES)),
                                      tuple(rng.uniform(-MAX_SHIFT_MM, MAX_SHIFT_MM, 2)))
    return sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=240)
    parser.add_argument("--validation-pairs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    cases = read_datalist(arguments.datalist)["training"]
    images = [sitk.Cast(volume.read_image(case["t2"]), sitk.sitkFloat32) for case in cases]
    centre_z = images[0].GetSize()[2] // 2
    arguments.out.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(arguments.pairs + arguments.validation_pairs):
        first = int(rng.integers(len(images)))
        second = first if index % 2 == 0 else int(rng.choice([i for i in range(len(images)) if i != first]))
        z = centre_z + int(rng.integers(-HEIGHT_RANGE, HEIGHT_RANGE + 1))
        fixed, moving = axial_slice(images[first], z), rigidly_moved(axial_slice(images[second], z), rng)
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
