"""Pseudo-label outlines moved to the half-contrast edge of the tumour on FLAIR.

Stage 1 labels a synthetic tumour out to where a tenth of its blurred edge is tumour (METHODS.md §2), so the
junior outlines a real tumour at the faint outer tail of its signal. A tumour whose border fades over several
millimetres is then outlined a voxel or more outside its half-contrast edge, the usual boundary of a blurred
object, and a senior trained on those labels learns the same outline. This moves each pseudo-labelled
component's outline, within one voxel of where the junior put it, to where the smoothed FLAIR crosses halfway
between the tumour just inside the outline and the brain just outside it. No label is read.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

INSIDE_RING = 2  # voxels inside the outline voxel that give the tumour's level
OUTSIDE_RING = (2, 4)  # from and to this many voxels outside the outline: the brain around it
SMOOTHING_VOXELS = 0.5  # Gaussian σ on FLAIR before the crossing is found (the noise of one voxel)


def half_contrast_edges(label: np.ndarray, flair: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``label`` (bool, z y x) with each component's outline moved to FLAIR's half-contrast edge, at most one voxel
    in or out; a component too small to have an inside, or not brighter than the brain around it, stays."""
    smoothed = ndimage.gaussian_filter(flair.astype(np.float32), SMOOTHING_VOXELS)
    components, _ = ndimage.label(label)
    refined = label.copy()
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        window = _widened(box, label.shape, OUTSIDE_RING[1] + 1)  # all the rings below reach, and no further
        component, labelled, inside_brain = components[window] == index, label[window], brain[window]
        core = ndimage.binary_erosion(component)  # all but the outline
        inside = core & ~ndimage.binary_erosion(core, iterations=INSIDE_RING)
        near = ndimage.binary_dilation(component, iterations=OUTSIDE_RING[0])
        around = ndimage.binary_dilation(component, iterations=OUTSIDE_RING[1]) & ~near & inside_brain & ~labelled
        if not inside.any() or not around.any():
            continue
        local = smoothed[window]
        tumour_level, brain_level = np.median(local[inside]), np.median(local[around])
        if tumour_level <= brain_level:
            continue
        other_components = labelled & ~component
        outline_and_next_layer = ndimage.binary_dilation(component) & ~core & inside_brain & ~other_components
        refined[window][outline_and_next_layer] = local[outline_and_next_layer] > (tumour_level + brain_level) / 2
    return refined


def _widened(box: tuple[slice, ...], shape: tuple[int, ...], margin: int) -> tuple[slice, ...]:
    """``box`` grown by ``margin`` voxels on every side, within an array of ``shape``."""
    return tuple(slice(max(0, side.start - margin), min(size, side.stop + margin)) for side, size in zip(box, shape, strict=True))
