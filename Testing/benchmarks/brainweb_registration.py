"""Registration error on ITK's BrainWeb slices against their known transforms.

Fixed: BrainProtonDensitySliceBorder20.png. Moving: the same slice shifted by (13, 17) mm,
rotated 10° about the centre, and both. B-spline row: fixed BrainProtonDensitySliceBSplined10.png,
moving Border20; the known transform is ITK's BSplineWarping1 example (BSplineDisplacements1.txt on a
7 × 7 cubic grid over the image), which reproduces BSplined10 from Border20. Error = |field − known
displacement| over the head (fixed intensity > 30), in mm (1 mm pixels). A given 2D register model (--model, exported
safetensors) or, without one, ``synthlab register --model optimisation-only``: instance
optimisation (--iterations per pyramid level) alone from zero displacement.

    .venv/bin/python Testing/benchmarks/brainweb_registration.py --iterations 100
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from synthlab import volume
from synthlab.crossstitch.inference import LoadedModel, register_by_optimisation, register_images

warnings.filterwarnings("ignore")
DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
BORDER20 = "BrainProtonDensitySliceBorder20.png"
RIGID_CASES = {"shift (13, 17) mm": ("BrainProtonDensitySliceShifted13x17y.png", 0.0, (13.0, 17.0)),
               "rotation 10°": ("BrainProtonDensitySliceRotated10.png", 10.0, (0.0, 0.0)),
               "rotation 10° + shift (13, 17) mm": ("BrainProtonDensitySliceR10X13Y17.png", 10.0, (13.0, 17.0))}


def rigid_case(file: str, degrees: float, shift: tuple[float, float]):
    fixed = volume.read_image(DATA / BORDER20, dimension=2)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
    return fixed, volume.read_image(DATA / file, dimension=2), sitk.Euler2DTransform(centre, np.deg2rad(degrees), shift)


def bspline_case():
    """ITK's BSplineWarping1 example: mesh 4 × 4 (7 nodes a side), cubic, node (x, y) displacements in a file."""
    fixed = volume.read_image(DATA / "BrainProtonDensitySliceBSplined10.png", dimension=2)
    nodes = np.loadtxt(DATA / "BSplineDisplacements1.txt").reshape(-1, 2)
    known = sitk.BSplineTransformInitializer(fixed, [4, 4], 3)
    known.SetParameters(np.concatenate([nodes[:, 0], nodes[:, 1]]).tolist())
    return fixed, volume.read_image(DATA / BORDER20, dimension=2), known


def cases():
    """(name, fixed, moving, known fixed-to-moving transform) of every scored pair."""
    for name, arguments in RIGID_CASES.items():
        yield name, *rigid_case(*arguments)
    yield "B-spline (ITK BSplineWarping1, up to 6.9 mm)", *bspline_case()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--iterations", type=int, default=100)
    arguments = parser.parse_args()
    model = LoadedModel.from_files(arguments.model, "cpu") if arguments.model else None
    print("| moving | median error (mm) | 90th percentile (mm) | before (median, mm) | seconds |")
    print("|---|---|---|---|---|")
    for name, fixed, moving, known in cases():
        head = volume.array_of(fixed) > 30
        truth = sitk.GetArrayFromImage(sitk.TransformToDisplacementField(
            known, sitk.sitkVectorFloat64, fixed.GetSize(), fixed.GetOrigin(), fixed.GetSpacing(),
            fixed.GetDirection()))[head]
        started = time.perf_counter()
        result = (register_images(model, fixed, moving, arguments.iterations) if model else
                  register_by_optimisation(fixed, moving, arguments.iterations, "cpu"))
        seconds = time.perf_counter() - started
        error = np.linalg.norm(sitk.GetArrayFromImage(result.field)[head] - truth, axis=1)
        before = np.linalg.norm(truth, axis=1)
        print(f"| {name} | {np.median(error):.2f} | {np.percentile(error, 90):.2f} | {np.median(before):.2f} | "
              f"{seconds:.1f} |")


if __name__ == "__main__":
    main()
