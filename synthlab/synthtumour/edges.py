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
    components, count = ndimage.label(label)
    refined = label.copy()
    for index in range(1, count + 1):
        component = components == index
        core = ndimage.binary_erosion(component)  # all but the outline
        inside = core & ~ndimage.binary_erosion(core, iterations=INSIDE_RING)
        near = ndimage.binary_dilation(component, iterations=OUTSIDE_RING[0])
        around = ndimage.binary_dilation(component, iterations=OUTSIDE_RING[1]) & ~near & brain & ~label
        if not inside.any() or not around.any():
            continue
        tumour_level, brain_level = np.median(smoothed[inside]), np.median(smoothed[around])
        if tumour_level <= brain_level:
            continue
        other_components = label & ~component
        outline_and_next_layer = ndimage.binary_dilation(component) & ~core & brain & ~other_components
        refined[outline_and_next_layer] = smoothed[outline_and_next_layer] > (tumour_level + brain_level) / 2
    return refined
