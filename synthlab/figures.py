"""Figures people look at: orthogonal slices of volumes with label outlines (a result solid, its reference dashed)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from synthlab import volume  # noqa: E402
from synthlab.volume import atomic_output  # noqa: E402

VIEWS = ("axial", "coronal", "sagittal")
TITLE_WIDTH = 48  # characters a line over one view; longer titles wrap
LABEL_COLOURS = plt.get_cmap("tab10").colors  # label value v is outlined in colour v - 1, in every view


@dataclass
class Row:
    """One montage row: an image shown in three views, label maps outlined on it (solid), reference label maps
    to compare them with (dashed, the same colour per label value), and its colour map."""

    title: str
    image: sitk.Image
    overlays: Sequence[sitk.Image] = field(default_factory=list)
    cmap: str = "gray"
    window: tuple[float, float] | None = None  # display range; default: 1st–99.5th percentile
    references: Sequence[sitk.Image] = field(default_factory=list)


def orthogonal_slices(canonical: sitk.Image, centre: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Display-ready axial, coronal and sagittal slices through ``centre`` (z, y, x; default the middle).

    The image must be on LPS axes (see :func:`synthlab.volume.to_canonical`). Radiological convention:
    the patient's right on the left; anterior at the top of axial views, superior at the top of the others.
    """
    array = volume.array_of(canonical)  # (z=S, y=P, x=L)
    z, y, x = centre if centre is not None else (s // 2 for s in array.shape)
    return {"axial": array[z, :, :], "coronal": array[::-1, y, :], "sagittal": array[::-1, :, x]}


def _aspect(canonical: sitk.Image) -> dict[str, float]:
    sx, sy, sz = canonical.GetSpacing()
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}


def _labelled_centre(overlays: list[sitk.Image]) -> tuple[int, ...] | None:
    """The centre of the labelled voxels of the first non-empty overlay, so that slices cut through them."""
    for overlay in overlays:
        labelled = np.argwhere(volume.array_of(overlay) > 0)
        if len(labelled):
            return tuple(int(v) for v in np.round(labelled.mean(axis=0)))
    return None


def outline(axis, labels: np.ndarray, linestyle: str) -> None:
    """Outline each label value of a 2D label slice in its own colour."""
    for value in np.unique(labels[labels > 0]).astype(int):
        axis.contour(labels == value, levels=[0.5], linewidths=0.8, linestyles=linestyle,
                     colors=[LABEL_COLOURS[(value - 1) % len(LABEL_COLOURS)]])


def row_views(row: Row) -> tuple[sitk.Image, dict[str, np.ndarray], list[tuple[dict[str, np.ndarray], str]]]:
    """A row's image on LPS axes, its slices, and its label outlines' slices with their line style. On LPS axes
    views are upright whatever the file's orientation; slices cut through the labelled structures if any."""
    canonical = volume.to_canonical(sitk.Cast(row.image, sitk.sitkFloat32))
    overlays, references = ([volume.to_canonical(labels, is_label=True) for labels in maps
                             if volume.same_grid(labels, row.image)] for maps in (row.overlays, row.references))
    centre = _labelled_centre(overlays + references)
    outlines = [(orthogonal_slices(labels, centre), "solid") for labels in overlays]
    outlines += [(orthogonal_slices(labels, centre), "dashed") for labels in references]
    return canonical, orthogonal_slices(canonical, centre), outlines


def montage(rows: Sequence[Row], path: Path, title: str | None = None) -> Path:
    """Write a PNG with one row per image (axial, coronal, sagittal), label maps outlined in colour."""
    figure, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for index, row in enumerate(rows):
        canonical, slices, outlines = row_views(row)
        aspect = _aspect(canonical)
        low, high = row.window or np.percentile(volume.array_of(canonical), [1, 99.5])
        for column, view in enumerate(VIEWS):
            axis = axes[index, column]
            axis.imshow(slices[view], cmap=row.cmap, vmin=low, vmax=high, aspect=aspect[view])
            for labels, linestyle in outlines:
                outline(axis, labels[view], linestyle)
            axis.set_axis_off()
            axis.set_title(textwrap.fill(f"{row.title} ({view})", TITLE_WIDTH) if column == 0 else view, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    return path


def overview_rows(outputs: dict) -> list[Row]:
    """One row per volume of every step, with the step's label maps outlined and its references (the truth)
    dashed, titled by step and volume with the volume's caption (its scores) when the step gives one."""
    rows = []
    for step, output in outputs.items():
        overlays = [sitk.ReadImage(str(f)) for f in output.overlays.values()]
        references = [sitk.ReadImage(str(f)) for f in output.references.values()]
        legend = f", dashed: {', '.join(output.references)}" if references else ""
        rows += [Row(f"{step}: {name}" + (f" ({output.captions[name]})" if name in output.captions else "") + legend,
                     sitk.ReadImage(str(file), sitk.sitkFloat32), overlays, output.colormaps.get(name, "gray"),
                     output.windows.get(name), references)
                 for name, file in output.volumes.items()]
    return rows


def overview(outputs: dict, path: Path) -> Path:
    """The demo's montage (see :func:`overview_rows`)."""
    return montage(overview_rows(outputs), path)
