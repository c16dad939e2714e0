"""Figures people look at: orthogonal mid-slices of volumes with label outlines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from synthlab import volume  # noqa: E402
from synthlab.volume import atomic_output  # noqa: E402

VIEWS = ("axial", "coronal", "sagittal")


def orthogonal_slices(canonical: sitk.Image) -> dict[str, np.ndarray]:
    """Display-ready axial, coronal and sagittal middle slices of an image on LPS axes (see to_canonical)."""
    array = volume.array_of(canonical)  # (z=S, y=P, x=L)
    z, y, x = (s // 2 for s in array.shape)
    return {"axial": array[z, ::-1, :], "coronal": array[::-1, y, :], "sagittal": array[::-1, :, x]}


def _aspect(canonical: sitk.Image) -> dict[str, float]:
    sx, sy, sz = canonical.GetSpacing()
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}


def overview(outputs: dict, path: Path) -> Path:
    """One row per volume of every demo step: three views, with the step's label maps outlined.

    Every image is brought to LPS axes once, so each view is upright whatever the file's orientation.
    """
    rows = [(f"{step}: {name}", file, list(output.overlays.values()))
            for step, output in outputs.items() for name, file in output.volumes.items()]
    figure, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for row, (title, file, overlay_files) in enumerate(rows):
        image = sitk.ReadImage(str(file), sitk.sitkFloat32)
        canonical = volume.to_canonical(image)
        slices, aspect = orthogonal_slices(canonical), _aspect(canonical)
        overlay_images = [sitk.ReadImage(str(f), sitk.sitkFloat32) for f in overlay_files]
        overlays = [orthogonal_slices(volume.to_canonical(o, is_label=True)) for o in overlay_images
                    if volume.same_grid(o, image)]
        low, high = np.percentile(volume.array_of(canonical), [1, 99.5])
        for column, view in enumerate(VIEWS):
            axis = axes[row, column]
            axis.imshow(slices[view], cmap="gray", vmin=low, vmax=high, aspect=aspect[view])
            for overlay in overlays:
                if overlay[view].max() > 0:
                    axis.contour(overlay[view], levels=np.arange(0.5, overlay[view].max() + 1), linewidths=0.8,
                                 cmap="tab10")
            axis.set_axis_off()
            axis.set_title(f"{title} ({view})" if column == 0 else view, fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    return path
